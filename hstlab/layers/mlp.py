"""MLPs: spiking ``BN(fc2(SN(BN(fc1 x))))`` or standard ``fc2(GELU(fc1 x))``.

Spiking MLP halves are chosen by ``mlp_kind`` from the ``MLPS`` registry (``"mlp"`` here, ``"emsp"``
in :mod:`hstlab.layers.emsp`); every entry is called as ``entry(cfg, layer)``.
"""

from __future__ import annotations

import torch
from torch import nn

from hstlab.config import MLP_KINDS, HSTConfig, ResolvedLayer
from hstlab.layers.norm import TokenBatchNorm
from hstlab.layers.quant import QuantLinear
from hstlab.neurons import build_neuron
from hstlab.registry import Registry

MLPS: Registry = Registry("mlp kind", declared=MLP_KINDS)


class SpikingMLP(nn.Module):
    """Spikformer's MLP without its output neuron (the block adds it, or the membrane shortcut).

    Example:
        >>> from hstlab import HSTConfig
        >>> SpikingMLP(HSTConfig.from_preset("tiny"))(torch.rand(2, 1, 4, 32)).shape
        torch.Size([2, 1, 4, 32])
    """

    def __init__(self, cfg: HSTConfig) -> None:
        super().__init__()
        hidden = int(cfg.n_embd * cfg.mlp_ratio)
        self.fc1 = QuantLinear(cfg.n_embd, hidden, bias=True, weight_bits=cfg.weight_bits)
        self.norm1 = TokenBatchNorm(hidden)
        self.neuron1 = build_neuron(cfg)
        self.fc2 = QuantLinear(hidden, cfg.n_embd, bias=True, weight_bits=cfg.weight_bits)
        self.norm2 = TokenBatchNorm(cfg.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, N, D]
        return self.norm2(self.fc2(self.neuron1(self.norm1(self.fc1(x)))))


@MLPS.register("mlp")
def spiking_mlp(cfg: HSTConfig, layer: ResolvedLayer) -> SpikingMLP:
    """The ``"mlp"`` entry of ``MLPS``: Spikformer's MLP."""
    return SpikingMLP(cfg)


class StandardMLP(nn.Module):
    """Transformer MLP with GELU."""

    def __init__(self, cfg: HSTConfig) -> None:
        super().__init__()
        hidden = int(cfg.n_embd * cfg.mlp_ratio)
        self.fc1 = QuantLinear(cfg.n_embd, hidden, bias=True, weight_bits=cfg.weight_bits)
        self.act = nn.GELU()
        self.fc2 = QuantLinear(hidden, cfg.n_embd, bias=True, weight_bits=cfg.weight_bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, N, D]
        return self.fc2(self.act(self.fc1(x)))
