"""QKFormer's Q-K attention: a binary token (or channel) mask from Q applied to K; no V, linear in N."""

from __future__ import annotations

import torch

from hstlab.config import HSTConfig, ResolvedLayer
from hstlab.layers.attention.base import ATTENTION, SpikingAttention, event_total
from hstlab.neurons import build_neuron


@ATTENTION.register("qk")
class TokenQKAttention(SpikingAttention):
    """Token attention: ``A = SN(Σ_channels-in-head Q)`` (``[T, B, H, N, 1]``), ``out = A ⊙ K``.

    Example:
        >>> from hstlab import HSTConfig
        >>> cfg = HSTConfig.from_preset("tiny", attention="qk")
        >>> TokenQKAttention(cfg, cfg.layer(0))(torch.rand(2, 1, 16, 32)).shape
        torch.Size([2, 1, 16, 32])
    """

    attention_kind = "qk"
    uses_v = False
    reduce_dim = -1  # sum over channels: one gate per token

    def __init__(self, cfg: HSTConfig, layer: ResolvedLayer) -> None:
        super().__init__(cfg, layer)
        self.mask_neuron = build_neuron(cfg, threshold=cfg.attn_threshold)

    def gate_input(self, q: torch.Tensor) -> torch.Tensor:
        if self.reduce_dim == -2 and self.causal:
            return q.cumsum(dim=-2)  # channel gate from tokens up to each position
        return q.sum(dim=self.reduce_dim, keepdim=True)

    def core(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None) -> torch.Tensor:
        return self.mask_neuron(self.gate_input(q)) * k  # [T, B, H, N, d]

    def attention_map(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Token attention only gates each token by itself: the map is diagonal (the gate's input)."""
        return torch.diag_embed(q.sum(dim=-1))  # [T, B, H, N, N]

    def matmul_ops(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None) -> tuple[float, float]:
        return 0.0, event_total(q) + event_total(k)  # the Q sums, then one masked add per K event


@ATTENTION.register("qk_channel")
class ChannelQKAttention(TokenQKAttention):
    """Channel attention: ``A = SN(Σ_tokens Q)`` (``[T, B, H, 1, d]``), ``out = A ⊙ K``."""

    attention_kind = "qk_channel"
    reduce_dim = -2

    def attention_map(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Diagonal: each token's count of K spikes in the channels Q switches on."""
        gated = k * (self.gate_input(q) > 0)  # [T, B, H, N, d]
        return torch.diag_embed(gated.sum(dim=-1))
