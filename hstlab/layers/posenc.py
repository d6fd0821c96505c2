"""Positional encodings: CPG-PE (spike-form, from coupled oscillators), sinusoidal, learned, none.

CPG-PE (design.md §3): oscillator pair i has angular frequency ``ω_i = w_max ** (-2i / N_n)``;
its spike code at position p is ``Θ(sin(ω_i p) - θ)`` and ``Θ(cos(ω_i p) - θ)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hstlab.config import POS_ENCODINGS as POS_ENCODING_NAMES
from hstlab.config import HSTConfig
from hstlab.layers.norm import TokenNorm
from hstlab.layers.quant import QuantLinear
from hstlab.neurons import build_neuron
from hstlab.registry import Registry

POS_ENCODINGS: Registry = Registry("pos_encoding", declared=POS_ENCODING_NAMES)


def cpg_frequencies(n_neurons: int, w_max: float = 10000.0) -> torch.Tensor:
    """``ω_i = w_max ** (-2i / N_n)`` for the ``n_neurons // 2`` oscillator pairs.  # [N_n / 2]"""
    i = torch.arange(n_neurons // 2, dtype=torch.float64)
    return w_max ** (-2.0 * i / n_neurons)


def cpg_phases(num_positions: int, n_neurons: int, w_max: float = 10000.0) -> torch.Tensor:
    """Continuous oscillator states ``x_2i = sin(ω_i p)``, ``x_2i+1 = cos(ω_i p)``.  # [P, N_n]

    They solve ``ẋ_2i = ω_i x_2i+1, ẋ_2i+1 = -ω_i x_2i`` with ``x(0) = (0, 1)``.
    """
    positions = torch.arange(num_positions, dtype=torch.float64)[:, None]  # [P, 1]
    angles = positions * cpg_frequencies(n_neurons, w_max)[None, :]  # [P, N_n/2]
    out = torch.empty(num_positions, n_neurons, dtype=torch.float64)
    out[:, 0::2] = torch.sin(angles)
    out[:, 1::2] = torch.cos(angles)
    return out.float()


def cpg_code(num_positions: int, n_neurons: int, w_max: float = 10000.0, threshold: float = 0.8) -> torch.Tensor:
    """Binary CPG-PE spike code ``Θ(phase - θ)``.  # [P, N_n]

    Example:
        >>> cpg_code(4, 2)[0].tolist()  # position 0: sin 0 = 0 -> 0, cos 0 = 1 -> 1
        [0.0, 1.0]
    """
    return (cpg_phases(num_positions, n_neurons, w_max) - threshold >= 0).float()


def sincos_code(num_positions: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """The Transformer's sinusoidal encoding (sin on even, cos on odd channels).  # [P, dim]"""
    return cpg_phases(num_positions, dim + dim % 2, base)[:, :dim]


def _rows(table: torch.Tensor, offset: int, n: int) -> torch.Tensor:
    """Rows ``offset .. offset + n`` of a position table ``[P, ...]``; ``ValueError`` past its end."""
    if offset < 0 or offset + n > table.shape[0]:
        raise ValueError(f"positions {offset}..{offset + n - 1} are outside the positional encoding's "
                         f"{table.shape[0]} positions (seq_len / num_tokens)")
    return table[offset: offset + n]


class CPGPositionalEncoding(nn.Module):
    """Concatenate the CPG spike code to each token and project back: ``W_x x + W_c PE``.

    In a spiking stem the projection is followed by BN and a spiking neuron, so the blocks
    receive spikes (as in the CPG-PE paper); in a standard stem by LayerNorm.

    Example:
        >>> pe = CPGPositionalEncoding(num_tokens=16, dim=32, n_neurons=8)  # standard stem: no neuron
        >>> pe(torch.zeros(2, 3, 16, 32)).shape
        torch.Size([2, 3, 16, 32])
    """

    def __init__(self, num_tokens: int, dim: int, n_neurons: int = 32, w_max: float = 10000.0,
                 threshold: float = 0.8, weight_bits: int = 32, neuron: nn.Module | None = None) -> None:
        super().__init__()
        self.register_buffer("code", cpg_code(num_tokens, n_neurons, w_max, threshold), persistent=False)
        self.proj = QuantLinear(dim + n_neurons, dim, bias=False, weight_bits=weight_bits)
        self.norm = TokenNorm(dim, spiking=neuron is not None)
        self.neuron = neuron if neuron is not None else nn.Identity()

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:  # x: [T, B, N, D]
        """``offset``: position of the first token (a streamed sequence continues at its end)."""
        code = _rows(self.code, offset, x.shape[2]).expand(*x.shape[:2], -1, -1)  # [T, B, N, N_n]
        return self.neuron(self.norm(self.proj(torch.cat([x, code], dim=-1))))  # [T, B, N, D]


class AddedPositionalEncoding(nn.Module):
    """Add a fixed (sincos) or learned table to the tokens."""

    def __init__(self, table: torch.Tensor, learned: bool) -> None:
        super().__init__()
        if learned:
            self.table = nn.Parameter(table)
        else:
            self.register_buffer("table", table, persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:  # x: [T, B, N, D]
        return x + _rows(self.table, offset, x.shape[2])  # table rows [N, D]


@POS_ENCODINGS.register("cpg")
def _make_cpg(cfg: HSTConfig, spiking: bool) -> nn.Module:
    return CPGPositionalEncoding(cfg.num_tokens, cfg.n_embd, cfg.cpg_neurons, cfg.cpg_wmax, cfg.cpg_threshold,
                                 cfg.weight_bits, build_neuron(cfg) if spiking else None)


@POS_ENCODINGS.register("sincos")
def _make_sincos(cfg: HSTConfig, spiking: bool) -> nn.Module:
    return AddedPositionalEncoding(sincos_code(cfg.num_tokens, cfg.n_embd), learned=False)


@POS_ENCODINGS.register("learned")
def _make_learned(cfg: HSTConfig, spiking: bool) -> nn.Module:
    table = torch.randn(cfg.num_tokens, cfg.n_embd) * (0.02 if not spiking else 1.0 / math.sqrt(cfg.n_embd))
    return AddedPositionalEncoding(table, learned=True)


@POS_ENCODINGS.register("none")
def _make_none(cfg: HSTConfig, spiking: bool) -> nn.Module:
    return nn.Identity()
