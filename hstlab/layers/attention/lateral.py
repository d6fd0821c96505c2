"""Lateral-inhibition attention (SpiLiFormer, feed-forward form): excitation minus inhibition.

Two spiking query-key pairs form an excitatory and an inhibitory map; the inhibitory map, scaled
by a learned per-head strength λ_h >= 0, is subtracted before the spiking neuron, so tokens that
both pairs pick cancel out and only the contrast drives the output:

    Q_E, K_E, Q_I, K_I, V = SN(BN(x W))           # [T, B, H, N, d] each (one fused GEMM, 5 parts)
    A = Q_E K_Eᵀ - λ_h · Q_I K_Iᵀ                 # [T, B, H, N, N] (formed only when causal or inspected)
    out = SN_θa(s · A V)                          # [T, B, H, N, d]
        = SN_θa(s · (Q_E (K_Eᵀ V) - λ_h · Q_I (K_Iᵀ V)))   # linear order, [T, B, H, d, d] inside

The probes see the two pairs stacked on the head axis: ``q_probe`` gets ``[T, B, 2H, N, d]`` with
the excitatory heads first (``k_probe`` likewise), so a Recorder or the energy engine reads both.
Energy: each pair costs SSA's adds; ``λ_h ·`` is one MAC per inhibitory entry, the subtraction one
add per entry, and ``s ·`` one MAC per output entry.
"""

from __future__ import annotations

import torch
from torch import nn

from hstlab.config import HSTConfig, ResolvedLayer
from hstlab.layers.attention.base import (
    ATTENTION,
    SpikingAttention,
    SpikingProjection,
    binary_qk_overlap,
    event_total,
)
from hstlab.neurons import build_neuron

INHIBITION_INIT = 0.5  # λ_h at initialisation


class LateralProjection(SpikingProjection):
    """Five spiking parts in one GEMM, returned as ``(Q_E|Q_I, K_E|K_I, V)`` (``[T, B, N, 2D]`` twice,
    then ``[T, B, N, D]``)."""

    def __init__(self, cfg: HSTConfig) -> None:
        super().__init__(cfg, parts=5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # [T, B, N, D]
        qe, ke, qi, ki, v = super().forward(x)  # [T, B, N, D] each
        return torch.cat([qe, qi], dim=-1), torch.cat([ke, ki], dim=-1), v


@ATTENTION.register("lateral")
class LateralInhibitionAttention(SpikingAttention):
    """SpiLiFormer's feed-forward lateral inhibition on SSA (module docstring).

    Example:
        >>> from hstlab import HSTConfig
        >>> cfg = HSTConfig.from_preset("tiny", attention="lateral")
        >>> LateralInhibitionAttention(cfg, cfg.layer(0))(torch.rand(2, 1, 16, 32)).shape
        torch.Size([2, 1, 16, 32])
    """

    attention_kind = "lateral"

    def __init__(self, cfg: HSTConfig, layer: ResolvedLayer) -> None:
        super().__init__(cfg, layer)
        self.attn_neuron = build_neuron(cfg, threshold=cfg.attn_threshold)
        self.inhibition = nn.Parameter(torch.full((cfg.n_head,), INHIBITION_INIT))  # λ_h, [H]

    def make_qkv(self, cfg: HSTConfig, parts: int) -> nn.Module:
        return LateralProjection(cfg)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, N, kD] -> [T, B, kH, N, d]
        t, b, n, width = x.shape
        return x.view(t, b, n, width // self.head_dim, self.head_dim).transpose(2, 3)

    def strength(self) -> torch.Tensor:
        """λ_h >= 0 shaped ``[H, 1, 1]`` to broadcast over ``[T, B, H, N, ·]``."""
        return self.inhibition.clamp(min=0.0)[:, None, None]

    def core(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None) -> torch.Tensor:
        qe, qi = q.chunk(2, dim=2)  # [T, B, H, N, d] each
        ke, ki = k.chunk(2, dim=2)  # [T, B, H, N, d] each
        if self.causal:
            excite = binary_qk_overlap(qe, ke, causal=True) @ v  # [T, B, H, N, d]
            inhibit = binary_qk_overlap(qi, ki, causal=True) @ v
        else:
            excite = qe @ (ke.transpose(-1, -2) @ v)  # [T, B, H, N, d] via [T, B, H, d, d]
            inhibit = qi @ (ki.transpose(-1, -2) @ v)
        return self.attn_neuron((excite - self.strength() * inhibit) * self.scale)  # [T, B, H, N, d]

    def attention_map(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The net map ``s · (Q_E K_Eᵀ - λ_h Q_I K_Iᵀ)``, ``[T, B, H, N, N]`` (can be negative)."""
        qe, qi = q.chunk(2, dim=2)  # [T, B, H, N, d] each
        ke, ki = k.chunk(2, dim=2)  # [T, B, H, N, d] each
        excite = binary_qk_overlap(qe, ke, self.causal)  # [T, B, H, N, N]
        inhibit = binary_qk_overlap(qi, ki, self.causal)
        return (excite - self.strength().detach() * inhibit) * self.scale  # [T, B, H, N, N]

    def inhibition_map(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The inhibitory map alone, ``s · λ_h Q_I K_Iᵀ`` (``[T, B, H, N, N]``)."""
        qi, ki = q.chunk(2, dim=2)[1], k.chunk(2, dim=2)[1]  # [T, B, H, N, d] each
        return self.strength().detach() * binary_qk_overlap(qi, ki, self.causal) * self.scale  # [T, B, H, N, N]

    def matmul_ops(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None) -> tuple[float, float]:
        """Each pair as SSA prices it on event tensors (causal: the count map times V as MACs, like SSA), plus
        ``λ_h ·`` (one MAC per inhibitory entry), the subtraction (one add) and ``s ·`` (one MAC)."""
        out_entries = float(v.numel())  # [T, B, H, N, d]
        macs, adds = 2.0 * out_entries, out_entries
        for qp, kp in zip(q.chunk(2, dim=2), k.chunk(2, dim=2)):
            if self.causal:
                scores = binary_qk_overlap(qp, kp, causal=True)  # [T, B, H, N, N]: one add per overlapping pair
                v_events = v.sum(-1, keepdim=True).to(scores.dtype)  # [T, B, H, N, 1]
                macs += float(((scores != 0).to(scores.dtype) @ v_events).sum())
                adds += float(scores.sum())
            else:
                k_events = kp.sum(-1).to(qp.dtype)  # [T, B, H, N]
                v_events = v.sum(-1).to(qp.dtype)  # [T, B, H, N]
                adds += float((k_events * v_events).sum()) + event_total(qp) * qp.shape[-1]
        return macs, adds
