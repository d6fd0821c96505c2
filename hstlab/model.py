"""HST-Net: tokenizer -> positional encoding -> blocks -> head, all chosen by one config."""

from __future__ import annotations

import torch
from torch import nn

from hstlab.config import HSTConfig
from hstlab.layers.block import HSTBlock
from hstlab.layers.posenc import POS_ENCODINGS
from hstlab.layers.quant import QuantLinear
from hstlab.layers.tokenizers import TOKENIZERS
from hstlab.neurons import build_neuron, reset_state


class HSTNet(nn.Module):
    """A hybrid spiking transformer whose layers are each spiking or standard.

    Example:
        >>> from hstlab import HSTConfig, example_input
        >>> cfg = HSTConfig.from_preset("tiny").with_modes("ST")
        >>> model = HSTNet(cfg)
        >>> model(example_input(cfg)).shape
        torch.Size([2, 10])
    """

    def __init__(self, cfg: HSTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        spiking_stem = cfg.stem_mode == "spiking"
        self.tokenizer = TOKENIZERS.get(cfg.tokenizer)(cfg, spiking_stem)
        self.pos_encoding = POS_ENCODINGS.get(cfg.pos_encoding)(cfg, spiking_stem)
        self.blocks = nn.ModuleList(HSTBlock(cfg, layer) for layer in cfg.resolved_layers())
        self.head = QuantLinear(cfg.n_embd, cfg.num_classes, bias=True, weight_bits=cfg.weight_bits)
        # With the membrane shortcut the stream is real-valued and every weight layer reads spikes
        # through its own neuron; so does the classifier (SDT: LIF on the token mean, per step).
        last = cfg.layer(cfg.n_layer - 1)
        membrane_out = cfg.head == "classify" and last.residual == "membrane" and last.mlp_mode == "spiking"
        self.head_neuron = build_neuron(cfg) if membrane_out else None

    def reset_state(self) -> None:
        """Zero every neuron's membrane (call between independent inputs)."""
        reset_state(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, C, H, W]`` frames or ``[L, B, C]`` sequences -> ``[B, classes]`` or ``[L, B, classes]``."""
        check_input(self.cfg, x)
        tokens = self.pos_encoding(self.tokenizer(x))  # [T, B, N, D]
        for block in self.blocks:
            tokens = block(tokens)
        if self.head_neuron is not None:  # spike the token mean per step, classify, average over T
            return self.head(self.head_neuron(tokens.mean(dim=2))).mean(dim=0)  # [T, B, D] -> [B, classes]
        if self.cfg.head == "classify":
            return self.head(tokens.mean(dim=(0, 2)))  # [B, classes]
        return self.head(tokens.mean(dim=0)).transpose(0, 1)  # [L, B, classes]


def expected_input(cfg: HSTConfig) -> str:
    if cfg.tokenizer == "linear":
        return f"[L, B, {cfg.input_shape[0]}] with L <= seq_len={cfg.seq_len}"
    steps = f"T*{cfg.event_subbins}" if cfg.tokenizer == "events" else "T"
    return f"[{steps}, B, {', '.join(map(str, cfg.input_shape))}]"


def check_input(cfg: HSTConfig, x: torch.Tensor) -> None:
    """Raise ``ValueError`` when ``x`` does not fit the config's tokenizer and input shape."""
    rank = 3 if cfg.tokenizer == "linear" else 5
    problem = None
    if x.dim() != rank:
        problem = f"rank {x.dim()}"
    elif cfg.tokenizer == "linear" and (x.shape[2] != cfg.input_shape[0] or x.shape[0] > cfg.seq_len):
        problem = f"channels {x.shape[2]} / length {x.shape[0]}"
    elif cfg.tokenizer != "linear" and tuple(x.shape[2:]) != cfg.input_shape:
        problem = f"per-step shape {tuple(x.shape[2:])} (channel count {x.shape[2]})"
    elif cfg.tokenizer == "events" and x.shape[0] % cfg.event_subbins:
        problem = f"{x.shape[0]} steps, not a multiple of event_subbins={cfg.event_subbins}"
    elif x.shape[0] < 1 or x.shape[1] < 1:
        problem = "an empty time or batch axis"
    if problem:
        raise ValueError(
            f"input of shape {tuple(x.shape)} has {problem}; tokenizer={cfg.tokenizer!r} with "
            f"input_shape={cfg.input_shape} expects {expected_input(cfg)}"
        )


def build_model(cfg: HSTConfig) -> HSTNet:
    """Build the HST-Net described by ``cfg``."""
    if not isinstance(cfg, HSTConfig):
        raise ValueError(f"cfg must be an HSTConfig, got {type(cfg).__name__}")
    return HSTNet(cfg)


def example_input(cfg: HSTConfig, batch_size: int = 2, seed: int = 0, rate: float = 0.1) -> torch.Tensor:
    """A random spike input of the right shape and kind for ``cfg`` (binary events / counts)."""
    generator = torch.Generator().manual_seed(seed)
    if cfg.tokenizer == "linear":
        shape = (cfg.seq_len, batch_size, cfg.input_shape[0])
    else:
        shape = (cfg.input_steps, batch_size, *cfg.input_shape)
    return (torch.rand(shape, generator=generator) < rate).float()
