"""HST-Net: tokenizer -> positional encoding -> blocks -> head, all chosen by one config."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hstlab.config import HSTConfig
from hstlab.layers.block import HSTBlock
from hstlab.layers.posenc import POS_ENCODINGS
from hstlab.layers.quant import QuantLinear
from hstlab.layers.tokenizers import TOKENIZERS
from hstlab.neurons import build_neuron, reset_state
from hstlab.sizing import check_size

# largest integer each float dtype holds exactly: integer inputs up to this convert without loss
_EXACT_INT = {torch.float16: 2**11, torch.bfloat16: 2**8, torch.float32: 2**24, torch.float64: 2**53}


class HSTNet(nn.Module):
    """A hybrid spiking transformer whose layers are each spiking or standard.

    Example:
        >>> from hstlab import HSTConfig, example_input
        >>> cfg = HSTConfig.from_preset("tiny").with_modes("ST")
        >>> model = HSTNet(cfg)
        >>> model(example_input(cfg)).shape
        torch.Size([2, 10])

    The size of the model is checked from the config before anything is allocated
    (:func:`hstlab.sizing.check_size`; ``max_params`` / ``max_activation_bytes`` override the
    limits, 0 switches one off). Each forward checks the input (see :func:`prepare_input`):
    set ``model.check_finite_input = False`` to skip its NaN/inf scan (one pass over the input).
    """

    check_finite_input: bool = True

    def __init__(self, cfg: HSTConfig, *, max_params: float | None = None,
                 max_activation_bytes: float | None = None) -> None:
        super().__init__()
        if not isinstance(cfg, HSTConfig):
            raise ValueError(f"cfg must be an HSTConfig, got {type(cfg).__name__}")
        cfg.validate()
        check_size(cfg, max_params=max_params, max_activation_bytes=max_activation_bytes)
        self.cfg = cfg
        spiking_stem = cfg.stem_mode == "spiking"
        self.embeds: nn.ModuleList | None = None  # staged configs: one patch embedding per stage
        if cfg.stages:  # hstlab.staged: the stages' patch embeddings replace tokenizer and encoding
            from hstlab.staged import build_stages, stage_bounds

            self.tokenizer, self.pos_encoding = nn.Identity(), nn.Identity()
            self.embeds, self.blocks = build_stages(cfg)
            self.stage_bounds = stage_bounds(cfg)
        else:
            self.tokenizer = TOKENIZERS.get(cfg.tokenizer)(cfg, spiking_stem)
            self.pos_encoding = POS_ENCODINGS.get(cfg.pos_encoding)(cfg, spiking_stem)
            self.blocks = nn.ModuleList(HSTBlock(cfg, layer) for layer in cfg.resolved_layers())
        self.head = QuantLinear(cfg.n_embd, cfg.num_classes, bias=True, weight_bits=cfg.weight_bits)
        # With the membrane shortcut the stream is real-valued and every weight layer reads spikes
        # through its own neuron; so does the classifier (SDT: LIF on the token mean, per step).
        last = cfg.layer(cfg.n_layer - 1)
        membrane_out = cfg.head != "sequence" and last.residual == "membrane" and last.mlp_mode == "spiking"
        self.head_neuron = build_neuron(cfg) if membrane_out else None

    def reset_state(self) -> None:
        """Zero every neuron's membrane (call between independent inputs)."""
        reset_state(self)

    def generate(self, prompt: str, steps: int, temperature: float = 1.0, top_k: int | None = None, *,
                 vocab: Sequence[str] | None = None, seed: int | None = None) -> str:
        """The ``steps`` characters a character model writes after ``prompt`` (see
        :func:`hstlab.generate.generate`: recurrent state for SpikeGPT-style models, a re-run of
        the last ``seq_len`` characters otherwise)."""
        from hstlab.generate import generate

        return generate(self, prompt, steps, temperature, top_k, vocab=vocab, seed=seed)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """``[T, B, C, H, W]`` frames or ``[L, B, C]`` sequences -> ``[B, classes]`` or ``[L, B, classes]``.

        ``head="classify_steps"`` returns the per-step logits ``[T, B, classes]`` in training mode
        (for TET) and their mean ``[B, classes]`` in eval mode (the head is linear, so the mean
        equals ``head="classify"``'s output). ``offset``: position of the first bin of a sequence
        that continues an earlier call (streamed generation, :mod:`hstlab.generate`); it moves the
        positional encoding only.
        """
        weight = self.head.weight
        x = prepare_input(self.cfg, x, weight.dtype, weight.device, check_finite=self.check_finite_input)
        if self.embeds is not None:  # staged: embed (downsample), then the stage's blocks
            tokens = x
            for embed, (start, end) in zip(self.embeds, self.stage_bounds):
                tokens = embed(tokens)  # [T, B, N_i, D_i]
                for block in self.blocks[start:end]:
                    tokens = block(tokens)
        else:
            tokens = self.tokenizer(x)  # [T, B, N, D]
            if offset and self.cfg.pos_encoding != "none":
                tokens = self.pos_encoding(tokens, offset=offset)  # [T, B, N, D]
            else:
                tokens = self.pos_encoding(tokens)  # [T, B, N, D]
            for block in self.blocks:
                tokens = block(tokens)
        per_step = self.cfg.head == "classify_steps" and self.training  # TET: [T, B, classes]
        if self.head_neuron is not None:  # spike the token mean per step, classify, average over T
            steps = self.head(self.head_neuron(tokens.mean(dim=2)))  # [T, B, D] -> [T, B, classes]
            return steps if per_step else steps.mean(dim=0)  # [B, classes]
        if per_step:
            return self.head(tokens.mean(dim=2))  # [T, B, classes]; their mean is the eval output
        if self.cfg.head != "sequence":
            return self.head(tokens.mean(dim=(0, 2)))  # [B, classes]
        return self.head(tokens.mean(dim=0)).transpose(0, 1)  # [L, B, classes]


def expected_input(cfg: HSTConfig) -> str:
    """The input shape ``cfg`` takes, in words: ``[T, B, 2, 34, 34] ([T, B, C, H, W])``."""
    if cfg.tokenizer == "linear":
        return f"[L, B, {cfg.input_shape[0]}] ([L, B, C]) with L <= seq_len={cfg.seq_len}"
    steps = f"T*{cfg.event_subbins}" if cfg.tokenizer == "events" else "T"
    return f"[{steps}, B, {', '.join(map(str, cfg.input_shape))}] ([{steps}, B, C, H, W])"


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


def prepare_input(cfg: HSTConfig, x: torch.Tensor, dtype: torch.dtype = torch.float32,
                  device: torch.device | str | None = None, check_finite: bool = True) -> torch.Tensor:
    """``x`` checked for the model of ``cfg`` and converted to its ``dtype``; raises ``ValueError``.

    Checks, in order: a ``torch.Tensor`` (numpy arrays and lists are refused, not guessed at),
    the shape (:func:`check_input`), the device, the dtype and (``check_finite``) that every
    value is finite: a spiking neuron never fires on NaN, so a NaN input would give finite,
    meaningless logits. Conversions: bool and integer inputs become ``dtype`` when every value is
    exact in it (up to 2**24 for float32); float16/bfloat16 widen exactly; float64 rounds to
    float32 as any float32 model rounds its inputs (overflow to inf is then caught). The
    finiteness check is one sum over ``x`` (0.04-0.17 % of an hst-small CPU forward; on a GPU
    one host sync) and is skipped while tracing or compiling.

    Example:
        >>> cfg = HSTConfig.from_preset("tiny")
        >>> prepare_input(cfg, torch.zeros(2, 1, 2, 16, 16, dtype=torch.bool)).dtype
        torch.float32
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(
            f"input must be a torch.Tensor of shape {expected_input(cfg)} and dtype {dtype}, got a "
            f"{type(x).__module__}.{type(x).__name__}; convert it with torch.as_tensor(x, dtype={dtype})")
    check_input(cfg, x)
    if device is not None and x.device != torch.device(device):
        raise ValueError(f"input is on {x.device} but the model is on {device}; move it with x.to({str(device)!r})")
    if x.dtype != dtype:
        if x.is_complex():
            raise ValueError(f"input dtype {x.dtype} is not supported; the model takes {dtype} of shape "
                             f"{expected_input(cfg)} (bool, integer and real float inputs are converted)")
        if not (x.dtype == torch.bool or x.is_floating_point()):
            limit = _EXACT_INT.get(dtype, 0)
            if torch.iinfo(x.dtype).max > limit and x.numel() and max(int(x.max()), -int(x.min())) > limit:
                raise ValueError(f"input of dtype {x.dtype} has values beyond +-{limit}, which {dtype} "
                                 f"cannot hold exactly; scale it and pass a {dtype} tensor")
        x = x.to(dtype)
    # a finite sum proves every value finite (NaN and inf propagate) and costs 1/25 of
    # isfinite(x).all(); only a non-finite sum (possibly an overflow of finite values) takes the exact scan
    tracing = torch.jit.is_tracing() or torch.compiler.is_compiling()  # no data-dependent branch in a graph
    if check_finite and not tracing and not bool(torch.isfinite(x.detach().sum())) and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(
            f"input of shape {tuple(x.shape)} has {bad} non-finite value(s) (NaN or inf) in {dtype}; a "
            "spiking model would silently ignore them. Clean the data, or set "
            "model.check_finite_input = False to skip this check")
    return x


def build_model(cfg: HSTConfig, *, max_params: float | None = None,
                max_activation_bytes: float | None = None) -> HSTNet:
    """Build the HST-Net described by ``cfg``, refusing one beyond the size limits
    (:func:`hstlab.sizing.check_size`: ``max_params`` parameters, ``max_activation_bytes`` per
    training sample; ``None``: ``HSTLAB_MAX_PARAMS`` / ``HSTLAB_MAX_ACTIVATION_BYTES`` or the
    defaults; 0: no limit)."""
    if not isinstance(cfg, HSTConfig):
        raise ValueError(f"cfg must be an HSTConfig, got {type(cfg).__name__}")
    return HSTNet(cfg, max_params=max_params, max_activation_bytes=max_activation_bytes)


def example_input(cfg: HSTConfig, batch_size: int = 2, seed: int = 0, rate: float = 0.1) -> torch.Tensor:
    """A random spike input of the right shape and kind for ``cfg`` (binary events / counts)."""
    generator = torch.Generator().manual_seed(seed)
    if cfg.tokenizer == "linear":
        shape = (cfg.seq_len, batch_size, cfg.input_shape[0])
    else:
        shape = (cfg.input_steps, batch_size, *cfg.input_shape)
    return (torch.rand(shape, generator=generator) < rate).float()
