"""One HST-Net encoder block: an attention half and an MLP half, each spiking or standard.

Spiking halves follow Spikformer with a SEW residual (``x = g(x, SN(BN(Linear(core(x)))))``),
Spiking ResNet with ``residual="add"`` (``x = SN(x + BN(Linear(core(x))))``: the sum spikes, so
the stream stays binary) or, with the membrane residual, SDT (``x = x + BN(Linear(core(SN(x))))``:
neurons before the weights and a real-valued shortcut). Standard halves are pre-LayerNorm Transformer halves with softmax
attention, a GELU MLP and a plain residual add.
"""

from __future__ import annotations

import torch
from torch import nn

from hstlab.config import HSTConfig, ResolvedLayer
from hstlab.layers import emsp  # noqa: F401  (registers the "emsp" MLP kind)
from hstlab.layers.attention import ATTENTION
from hstlab.layers.mlp import MLPS, StandardMLP
from hstlab.layers.residual import RESIDUALS
from hstlab.neurons import build_neuron


class ResidualHalf(nn.Module):
    """``x -> after(residual(x, post(branch(pre(x)))))``; ``pre``/``post``/``after`` are neurons,
    norms or identities."""

    def __init__(self, pre: nn.Module, branch: nn.Module, post: nn.Module, residual: str,
                 after: nn.Module | None = None) -> None:
        super().__init__()
        self.pre, self.branch, self.post = pre, branch, post
        self.after = after if after is not None else nn.Identity()
        self.residual_kind = residual
        self.residual = RESIDUALS.get(residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, N, D]
        return self.after(self.residual(x, self.post(self.branch(self.pre(x)))))


def _spiking_half(cfg: HSTConfig, branch: nn.Module, residual: str) -> ResidualHalf:
    if residual == "membrane":  # SDT: spike first, add real values
        return ResidualHalf(build_neuron(cfg), branch, nn.Identity(), residual)
    if residual == "add":  # Spiking ResNet: add the real branch, then spike
        return ResidualHalf(nn.Identity(), branch, nn.Identity(), residual, after=build_neuron(cfg))
    return ResidualHalf(nn.Identity(), branch, build_neuron(cfg), residual)  # SEW: g(x, spikes)


def _standard_half(cfg: HSTConfig, branch: nn.Module) -> ResidualHalf:
    return ResidualHalf(nn.LayerNorm(cfg.n_embd), branch, nn.Identity(), "add")


class HSTBlock(nn.Module):
    """Encoder block built from the resolved settings of one layer.

    Example:
        >>> from hstlab import HSTConfig
        >>> cfg = HSTConfig.from_preset("tiny").with_modes("ST")
        >>> HSTBlock(cfg, cfg.layer(1))(torch.rand(2, 1, 16, 32)).shape
        torch.Size([2, 1, 16, 32])
    """

    def __init__(self, cfg: HSTConfig, layer: ResolvedLayer) -> None:
        super().__init__()
        self.layer = layer
        attention_cls = ATTENTION.get(layer.attention_kind)
        attention = attention_cls(cfg, layer)
        if layer.attn_mode == "spiking":
            self.attn = _spiking_half(cfg, attention, layer.residual)
        else:
            self.attn = _standard_half(cfg, attention)
        if layer.mlp_mode == "spiking":
            own_mlp = getattr(attention_cls, "spiking_mlp", None)  # e.g. SpikeGPT's channel mix
            mlp = own_mlp(cfg) if own_mlp is not None else MLPS.get(layer.mlp_built)(cfg, layer)
            self.mlp = _spiking_half(cfg, mlp, layer.residual)
        else:
            self.mlp = _standard_half(cfg, StandardMLP(cfg))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, N, D]
        return self.mlp(self.attn(x))
