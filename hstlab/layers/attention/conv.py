"""Convolutional self-attention: Q, K, V from a depth-wise convolution over the token axis.

The convolution makes attention locality-aware; with ``cfg.causal`` it is left-padded, so for
sequence data (tokens = time bins) it is the causal 1-D convolution over time. The spike
core is SSA's ``SN_θa(s · Q Kᵀ V)``.
"""

from __future__ import annotations

import torch
from torch import nn

from hstlab.config import HSTConfig
from hstlab.layers.attention.base import ATTENTION, SpikingProjection
from hstlab.layers.attention.ssa import SpikingSelfAttention
from hstlab.layers.quant import QuantConv1d


class TokenDepthwiseConv(nn.Module):
    """Depth-wise ``Conv1d`` over the token axis of ``[T, B, N, D]`` (causal: left padding only)."""

    def __init__(self, dim: int, kernel: int, causal: bool, weight_bits: int) -> None:
        super().__init__()
        self.left = kernel - 1 if causal else (kernel - 1) // 2
        self.right = 0 if causal else kernel - 1 - self.left
        self.conv = QuantConv1d(dim, dim, kernel, groups=dim, bias=False, weight_bits=weight_bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, N, D]
        t, b, n, d = x.shape
        seq = x.reshape(t * b, n, d).transpose(1, 2)  # [TB, D, N]
        seq = nn.functional.pad(seq, (self.left, self.right))
        return self.conv(seq).transpose(1, 2).reshape(t, b, n, d)


class ConvProjection(SpikingProjection):
    """``SN(BN(Linear(DWConv_N(x))))`` for one of Q, K, V."""

    def __init__(self, cfg: HSTConfig) -> None:
        super().__init__(cfg, parts=1)
        self.token_conv = TokenDepthwiseConv(cfg.n_embd, cfg.conv_kernel, cfg.causal, cfg.weight_bits)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return super().forward(self.token_conv(x))


class ConvQKV(nn.Module):
    """Separate depth-wise-conv projections for Q, K[, V] (each has its own token kernel)."""

    def __init__(self, cfg: HSTConfig, parts: int) -> None:
        super().__init__()
        self.projections = nn.ModuleList(ConvProjection(cfg) for _ in range(parts))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(proj(x)[0] for proj in self.projections)


@ATTENTION.register("conv")
class ConvSelfAttention(SpikingSelfAttention):
    """SSA whose Q/K/V come from depth-wise token convolutions.

    Example:
        >>> from hstlab import HSTConfig
        >>> cfg = HSTConfig.from_preset("tiny", attention="conv")
        >>> ConvSelfAttention(cfg, cfg.layer(0))(torch.rand(2, 1, 16, 32)).shape
        torch.Size([2, 1, 16, 32])
    """

    attention_kind = "conv"

    def make_qkv(self, cfg: HSTConfig, parts: int) -> nn.Module:
        return ConvQKV(cfg, parts)
