"""Spikformer's spiking self-attention: ``SN_θa(s · Q Kᵀ V)``, no softmax, computed as ``Q (Kᵀ V)``."""

from __future__ import annotations

import torch

from hstlab.config import HSTConfig, ResolvedLayer
from hstlab.layers.attention.base import ATTENTION, SpikingAttention, binary_qk_overlap, event_total
from hstlab.neurons import build_neuron


@ATTENTION.register("ssa")
class SpikingSelfAttention(SpikingAttention):
    """SSA (Spikformer). Linear in N: the N×N map is formed only when causal or inspected.

    Example:
        >>> from hstlab import HSTConfig
        >>> cfg = HSTConfig.from_preset("tiny")
        >>> SpikingSelfAttention(cfg, cfg.layer(0))(torch.rand(2, 1, 16, 32)).shape
        torch.Size([2, 1, 16, 32])
    """

    attention_kind = "ssa"

    def __init__(self, cfg: HSTConfig, layer: ResolvedLayer) -> None:
        super().__init__(cfg, layer)
        self.attn_neuron = build_neuron(cfg, threshold=cfg.attn_threshold)

    def core(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None) -> torch.Tensor:
        if self.causal:
            mixed = binary_qk_overlap(q, k, causal=True) @ v  # [T, B, H, N, d]
        else:
            mixed = q @ (k.transpose(-1, -2) @ v)  # [T, B, H, N, d] via [T, B, H, d, d]
        return self.attn_neuron(mixed * self.scale)

    def attention_map(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return binary_qk_overlap(q, k, self.causal) * self.scale

    def matmul_ops(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None) -> tuple[float, float]:
        """On event tensors (:meth:`AttentionBase.matmul_ops`): ``s ·`` one MAC per entry; ``Kᵀ V`` one
        add per (k, v) event pair of a token; ``Q (Kᵀ V)`` a row of d values per query event. Causal:
        one add per (q, k) event pair of the masked map, one MAC per (non-zero score, v event)."""
        scale_macs = float(q.numel())  # the multiply by s on [T, B, H, N, d]
        if self.causal:
            scores = binary_qk_overlap(q, k, causal=True)  # [T, B, H, N, N] event pairs: one add each
            v_events = v.sum(-1, keepdim=True).to(scores.dtype)  # [T, B, H, N, 1]
            return scale_macs + float(((scores != 0).to(scores.dtype) @ v_events).sum()), float(scores.sum())
        k_events = k.sum(-1).to(q.dtype)  # [T, B, H, N]
        v_events = v.sum(-1).to(q.dtype)  # [T, B, H, N]
        kv_adds = float((k_events * v_events).sum())  # Kᵀ V: one add per (k, v) event pair
        qkv_adds = event_total(q) * q.shape[-1]  # Q (Kᵀ V): each query event adds a row of d values
        return scale_macs, kv_adds + qkv_adds
