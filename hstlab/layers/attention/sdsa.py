"""Spike-driven self-attention (SDT V1): ``out = Q ⊙ SN_θa(Σ_N K ⊙ V)``, per head."""

from __future__ import annotations

import torch

from hstlab.config import HSTConfig, ResolvedLayer
from hstlab.layers.attention.base import ATTENTION, SpikingAttention, binary_qk_overlap, event_total
from hstlab.neurons import build_neuron


@ATTENTION.register("sdsa")
class SpikeDrivenSelfAttention(SpikingAttention):
    """SDSA: only masks and additions; linear in N (causal: a running sum over tokens).

    Example:
        >>> from hstlab import HSTConfig
        >>> cfg = HSTConfig.from_preset("tiny", attention="sdsa")
        >>> SpikeDrivenSelfAttention(cfg, cfg.layer(0))(torch.rand(2, 1, 16, 32)).shape
        torch.Size([2, 1, 16, 32])
    """

    attention_kind = "sdsa"

    def __init__(self, cfg: HSTConfig, layer: ResolvedLayer) -> None:
        super().__init__(cfg, layer)
        self.kv_neuron = build_neuron(cfg, threshold=cfg.attn_threshold)

    def core(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None) -> torch.Tensor:
        kv = k * v  # [T, B, H, N, d]
        summed = kv.cumsum(dim=-2) if self.causal else kv.sum(dim=-2, keepdim=True)  # [T, B, H, N|1, d]
        return q * self.kv_neuron(summed)

    def attention_map(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """SDSA has no token-to-token weights; the map shows the Q–K channel overlap that gates it."""
        return binary_qk_overlap(q, k, self.causal)

    def matmul_ops(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None) -> tuple[float, float]:
        """On event tensors: ``Σ_N K ⊙ V`` one add per (k, v) event pair of an entry, then one masked
        add per query event."""
        return 0.0, event_total(k * v) + event_total(q)
