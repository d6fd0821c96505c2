"""Bipolar self-attention: ternary Q and K in {-1, 0, 1}, rows normalised by Shiftmax.

A binary Q Kᵀ only counts the channels where both spike; with ternary spikes the negative-negative
(agreeing) and positive-negative (disagreeing) pairs count too. Shiftmax is the base-2 softmax
with integer exponents and a power-of-two denominator, so both its exponentials and its division
are bit shifts:

    U     = BN(x W)                                # [T, B, N, 3D] -> U_q, U_k, U_v
    Q, K  = SN(U) - SN'(-U)                        # [T, B, H, N, d] each, values in {-1, 0, 1}
    V     = SN(U_v)                                # [T, B, H, N, d] binary spikes
    S     = c · Q Kᵀ,  c = log2(e) / √d            # [T, B, H, N, N] (2^S = e^{Q Kᵀ/√d})
    z     = round(S) - max_j round(S)              # [T, B, H, N, N] integer exponents <= 0
    A     = 2^z / 2^ceil(log2 Σ_j 2^z)             # [T, B, H, N, N] Shiftmax, rows sum to (1/2, 1]
    out   = SN_θa(A V)                             # [T, B, H, N, d]

Rounding passes gradients straight through, so training sees the base-2 softmax ``2^S / Σ 2^S``.
Energy: ``Q Kᵀ`` of ternary operands is signed accumulates, priced as accumulates (one per pair
of non-zero entries that meet); ``c ·`` is one MAC per score; Shiftmax ``SHIFTMAX_ACS`` per score
(:data:`hstlab.energy.constants.ELEMENTWISE_ACS`); ``A V`` adds a shifted ``A`` entry per
(non-zero A, V spike) pair. Q and K are read as signed spikes: 2 bits (event, sign) per non-zero.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hstlab.config import HSTConfig, ResolvedLayer
from hstlab.energy.constants import ELEMENTWISE_ACS
from hstlab.layers.attention.base import ATTENTION, SpikingAttention, causal_mask
from hstlab.layers.norm import TokenBatchNorm
from hstlab.layers.quant import QuantLinear
from hstlab.neurons import build_neuron

SHIFTMAX_ACS = ELEMENTWISE_ACS["shiftmax"]


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` forward, identity gradient (straight-through)."""
    return x + (torch.round(x) - x).detach()  # same shape as x


def shiftmax(scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # [..., N, M]
    """Base-2 softmax with integer exponents and a power-of-two denominator (module docstring).

    ``mask`` (bool, broadcast to ``scores``) marks the entries that take part; the rest get 0.

    Example:
        >>> shiftmax(torch.tensor([[0.0, 1.0, 2.1]]))  # exponents -2, -1, 0; sum 1.75 -> 2
        tensor([[0.1250, 0.2500, 0.5000]])
    """
    z = round_ste(scores)  # [..., N, M]
    if mask is not None:
        z = z.masked_fill(~mask, float("-inf"))  # [..., N, M], left-out entries give 2^-inf = 0
    z = z - z.detach().amax(dim=-1, keepdim=True)  # [..., N, M], max 0 per row
    powers = torch.exp2(z)  # [..., N, M]: 2^z, a shift of 1
    total = powers.sum(dim=-1, keepdim=True)  # [..., N, 1] in [1, M]
    shift = torch.ceil(torch.log2(total))  # [..., N, 1] integer
    denominator = total + (torch.exp2(shift) - total).detach()  # [..., N, 1]: 2^shift, gradient of total
    return powers / denominator  # [..., N, M]


class TernarySpikes(nn.Module):
    """``SN(u) - SN'(-u)``: a positive and a negative spiking neuron on the same input, {-1, 0, 1}."""

    def __init__(self, cfg: HSTConfig) -> None:
        super().__init__()
        self.positive, self.negative = build_neuron(cfg), build_neuron(cfg)

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # [T, ...] -> [T, ...] in {-1, 0, 1}
        return self.positive(u) - self.negative(-u)  # [T, ...]


class BipolarProjection(nn.Module):
    """``BN(x W)`` for Q, K, V in one GEMM; Q and K ternary spikes, V binary spikes."""

    def __init__(self, cfg: HSTConfig) -> None:
        super().__init__()
        self.linear = QuantLinear(cfg.n_embd, 3 * cfg.n_embd, bias=False, weight_bits=cfg.weight_bits)
        self.norm = TokenBatchNorm(3 * cfg.n_embd)
        self.ternary = TernarySpikes(cfg)
        self.neuron = build_neuron(cfg)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # [T, B, N, D] -> 3 × [T, B, N, D]
        u = self.norm(self.linear(x))  # [T, B, N, 3D]
        d = u.shape[-1] // 3
        qk = self.ternary(u[..., : 2 * d])  # [T, B, N, 2D] in {-1, 0, 1}
        return (*qk.chunk(2, dim=-1), self.neuron(u[..., 2 * d:]))  # Q, K ternary, V binary: [T, B, N, D]


@ATTENTION.register("bipolar")
class BipolarSelfAttention(SpikingAttention):
    """Ternary Q, K; Shiftmax rows; binary V (module docstring). Forms the N×N map (quadratic in N).

    Example:
        >>> from hstlab import HSTConfig
        >>> cfg = HSTConfig.from_preset("tiny", attention="bipolar")
        >>> BipolarSelfAttention(cfg, cfg.layer(0))(torch.rand(2, 1, 16, 32)).shape
        torch.Size([2, 1, 16, 32])
    """

    attention_kind = "bipolar"
    signed_operands = ("q", "k")  # the energy engine reads them as signed spikes (2 bits per non-zero)

    def __init__(self, cfg: HSTConfig, layer: ResolvedLayer) -> None:
        super().__init__(cfg, layer)
        self.attn_neuron = build_neuron(cfg, threshold=cfg.attn_threshold)
        self.score_scale = math.log2(math.e) / math.sqrt(cfg.head_dim)

    def make_qkv(self, cfg: HSTConfig, parts: int) -> nn.Module:
        return BipolarProjection(cfg)

    def _mask(self, n: int, device: torch.device) -> torch.Tensor | None:
        return causal_mask(n, device) if self.causal else None  # [N, N] bool, or None

    def core(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None) -> torch.Tensor:
        return self.attn_neuron(self.attention_map(q, k) @ v)  # [T, B, H, N, d]

    def attention_map(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The Shiftmax weights ``[T, B, H, N, N]`` (rows sum to (1/2, 1])."""
        scores = q @ k.transpose(-1, -2) * self.score_scale  # [T, B, H, N, N]
        return shiftmax(scores, self._mask(q.shape[-2], q.device))  # [T, B, H, N, N]

    def matmul_ops(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None) -> tuple[float, float]:
        n = q.shape[-2]
        mask = self._mask(n, q.device)  # [N, N] or None
        pairs = q.abs() @ k.abs().transpose(-1, -2)  # [T, B, H, N, N]: non-zero (q, k) pairs that meet
        live = torch.ones_like(pairs) if mask is None else mask.to(pairs.dtype).expand_as(pairs)  # scores used
        scores = float(live.sum())
        v_events = v.abs().sum(-1, keepdim=True).to(pairs.dtype)  # [T, B, H, N, 1]
        av_adds = float((live @ v_events).sum())  # every used A entry is non-zero: one add per V event
        qk_adds = float((pairs * live).sum())
        return scores, qk_adds + SHIFTMAX_ACS * scores + av_adds
