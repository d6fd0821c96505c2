"""Staged (hierarchical) HST-Nets: per stage, a downsampling patch embedding, then its blocks.

A config with ``stages`` (:class:`hstlab.config.StageSpec`) builds, for stage ``i``, the patch
embedding ``embeds[i]`` and the blocks ``blocks[a:b]`` (the stage's layers, numbered across
stages as in a flat model, so per-layer overrides and mode letters address them the same way).
Tokens stay ``[T, B, N, D]`` between modules, ``N = h * w`` row-major over the stage's grid;
modules that convolve view them as a channels-last ``[T*B, D, h, w]`` map (no copy).

Stage kinds:

- ``transformer``: :class:`hstlab.layers.block.HSTBlock` built from the stage's flat config
  (:func:`stage_config`: its width, heads, MLP ratio, attention kind and token count), so every
  attention kind, residual, TIM and masking works per stage. ``projection="repconv"`` swaps the
  linear Q/K/V and output projections for Meta-SpikeFormer's re-parameterisable convs
  (:class:`RepConv`); with ``attention="ssa"`` the core is its spike-driven ``SN(s · Q (Kᵀ V))``.
- ``conv``: :class:`ConvBlock`, Meta-SpikeFormer's conv block: a separable-conv token mixer
  ``x + BN(pw(DW7x7(SN(BN(pw(SN x))))))`` and a 3x3-conv MLP ``x + BN(C3(SN(BN(C3(SN x)))))``
  (shown with the membrane shortcut; any residual of the config works as in a transformer half).

Patch embeddings (``StageSpec.embed``), each dividing the grid by ``stride``:

- ``conv`` (Meta-SpikeFormer's downsampling): ``BN(Conv_k,stride(SN(x)))`` with bias; the first
  stage reads the frames directly (no neuron);
- ``speds`` (QKFormer's spiking patch embedding with deformed shortcut): first stage: four
  conv3x3-BN-[maxpool]-SN stages of widths D/8, D/4, D/2, D (the last ``log2(stride)`` pooled)
  plus a shortcut ``SN(BN(Conv1x1,s(.)))`` from the second stage's spikes; later stages:
  conv3x3-BN-SN, conv3x3-BN-[maxpool]-SN plus the shortcut from the stage input. Outputs add.

A spiking embedding uses the config's neuron, a standard one ReLU: the first follows
``cfg.stem_mode``, a later one the attention mode of its stage's first layer.

Example:
    >>> from hstlab import HSTConfig, build_model, example_input
    >>> cfg = HSTConfig(input_shape=(2, 16, 16), num_steps=2).with_stages(
    ...     [{"depth": 1, "n_embd": 16, "n_head": 2, "kind": "conv", "stride": 2},
    ...      {"depth": 1, "n_embd": 32, "n_head": 4, "attention": "qk", "stride": 2}])
    >>> model = build_model(cfg)
    >>> model(example_input(cfg)).shape, [tuple(g) for g in cfg.stage_grids()]
    (torch.Size([2, 10]), [(8, 8), (4, 4)])
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

from hstlab.config import REPCONV_KINDS, STAGE_EMBEDS, HSTConfig, ResolvedLayer
from hstlab.layers.attention.base import SpikingAttention, SpikingProjection
from hstlab.layers.block import HSTBlock, ResidualHalf, _spiking_half
from hstlab.layers.norm import TokenBatchNorm
from hstlab.layers.quant import QuantConv2d, QuantLinear
from hstlab.layers.tokenizers import _stepwise, activation
from hstlab.neurons import build_neuron
from hstlab.registry import Registry

EMBEDS: Registry = Registry("stage embed", declared=STAGE_EMBEDS)
SEPCONV_EXPANSION = 2  # Meta-SpikeFormer's separable conv: pointwise 2x expansion, 7x7 depthwise
SEPCONV_KERNEL = 7


def to_map(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``[T, B, N, D]`` tokens -> ``[T*B, D, h, w]`` map (a channels-last view, no copy)."""
    t, b, n, d = x.shape
    return x.reshape(t * b, h, w, d).permute(0, 3, 1, 2)


def to_tokens(y: torch.Tensor, steps: int) -> torch.Tensor:
    """``[T*B, D, h, w]`` map -> ``[T, B, N, D]`` tokens (free for a channels-last map)."""
    tb, d, h, w = y.shape
    return y.permute(0, 2, 3, 1).reshape(steps, tb // steps, h * w, d)


def stage_bounds(cfg: HSTConfig) -> list[tuple[int, int]]:
    """``[(first layer, end layer), ...]`` of every stage."""
    bounds, start = [], 0
    for stage in cfg.stages:
        bounds.append((start, start + stage.depth))
        start += stage.depth
    return bounds


def stage_config(cfg: HSTConfig, index: int) -> HSTConfig:
    """The flat config the blocks of stage ``index`` are built from: the stage's width, heads,
    MLP ratio, attention kind, layers and token grid (``input_shape=(C, h, w)``, no pooling, so
    ``num_tokens`` is the stage's ``h * w``)."""
    stage, (start, end) = cfg.stages[index], stage_bounds(cfg)[index]
    h, w = cfg.stage_grids()[index]
    return dataclasses.replace(
        cfg, name=f"{cfg.name}/stages[{index}]", stages=(), n_layer=stage.depth, n_embd=stage.n_embd,
        n_head=stage.n_head, mlp_ratio=cfg.mlp_ratio if stage.mlp_ratio is None else stage.mlp_ratio,
        attention=stage.attention or cfg.attention, layers=cfg.layers[start:end], mode_schedule=(),
        input_shape=(cfg.input_shape[0], h, w), sps_pools=(False,) * 4, tokenizer="sps",
        pos_encoding="none")


def stage_lines(cfg: HSTConfig) -> list[str]:
    """One line per stage, for summaries and cards (``[]`` for a flat config).

    Example:
        >>> stage_lines(HSTConfig.from_preset("qkformer-dvs"))[0]
        'stage 0: speds /8 -> 16x16 tokens, 1 transformer block (qk), width 128, 16 heads (layer 0)'
    """
    lines = []
    for i, (stage, (h, w), (start, end)) in enumerate(zip(cfg.stages, cfg.stage_grids(), stage_bounds(cfg))):
        kinds = sorted({cfg.layer(j).attention_kind for j in range(start, end)})
        blocks = "block" if stage.depth == 1 else "blocks"
        heads = f", {stage.n_head} heads" if stage.kind == "transformer" else ""
        extra = ", repconv projections" if stage.projection == "repconv" else ""
        layers = f"layer {start}" if stage.depth == 1 else f"layers {start}-{end - 1}"
        lines.append(f"stage {i}: {stage.embed} /{stage.stride} -> {h}x{w} tokens, {stage.depth} {stage.kind} "
                     f"{blocks} ({', '.join(kinds)}), width {stage.n_embd}{heads}{extra} ({layers})")
    return lines


def embed_spiking(cfg: HSTConfig, index: int) -> bool:
    """Whether the patch embedding entering stage ``index`` spikes (else it uses ReLU)."""
    if index == 0:
        return cfg.stem_mode == "spiking"
    return cfg.layer(stage_bounds(cfg)[index][0]).attn_mode == "spiking"


class StageEmbed(nn.Module):
    """Base of the patch embeddings: frames ``[T, B, C, H, W]`` (first stage) or tokens
    ``[T, B, N, C]`` of the previous grid in, tokens ``[T, B, N', D]`` out.

    ``grid_in`` and ``c_in``: the grid and channels stage ``index`` reads (the frames' for the
    first stage, the previous stage's tokens otherwise)."""

    def __init__(self, cfg: HSTConfig, index: int) -> None:
        super().__init__()
        first = index == 0
        self.grid_in = tuple(cfg.input_shape[1:]) if first else cfg.stage_grids()[index - 1]
        self.c_in = cfg.input_shape[0] if first else cfg.stages[index - 1].n_embd

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[0]
        if x.dim() == 5:  # frames: channels-last as the SPS stem (faster convs and pools on CPU)
            y = x.flatten(0, 1).contiguous(memory_format=torch.channels_last)  # [TB, C, H, W]
        else:
            y = to_map(x, *self.grid_in)  # [TB, C, h, w]
        return to_tokens(self.embed(y, t), t)  # [T, B, N', D]

    def embed(self, y: torch.Tensor, steps: int) -> torch.Tensor:  # [TB, C, h, w] -> [TB, D, h', w']
        raise NotImplementedError


@EMBEDS.register("conv")
class ConvEmbed(StageEmbed):
    """Meta-SpikeFormer's downsampling ``BN(Conv(SN(x)))`` (conv with bias, padding k // 2); the
    first stage has no neuron (it reads the frames).

    Example:
        >>> from hstlab import HSTConfig
        >>> cfg = HSTConfig(input_shape=(2, 8, 8)).with_stages([{"n_embd": 4, "n_head": 1}])
        >>> ConvEmbed(cfg, 0)(torch.rand(2, 1, 2, 8, 8)).shape
        torch.Size([2, 1, 16, 4])
    """

    def __init__(self, cfg: HSTConfig, index: int) -> None:
        super().__init__(cfg, index)
        stage = cfg.stages[index]
        k = stage.embed_kernel
        self.act = activation(cfg, embed_spiking(cfg, index)) if index > 0 else None
        self.conv = QuantConv2d(self.c_in, stage.n_embd, k, stage.stride, k // 2, bias=True, weight_bits=cfg.weight_bits)
        self.norm = nn.BatchNorm2d(stage.n_embd)

    def embed(self, y: torch.Tensor, steps: int) -> torch.Tensor:
        if self.act is not None:
            y = _stepwise(self.act, y, steps)
        return self.norm(self.conv(y))


@EMBEDS.register("speds")
class SPEDSEmbed(StageEmbed):
    """QKFormer's spiking patch embedding with deformed shortcut (see the module docstring).

    Example:
        >>> from hstlab import HSTConfig
        >>> cfg = HSTConfig(input_shape=(2, 16, 16)).with_stages(
        ...     [{"n_embd": 16, "n_head": 1, "embed": "speds", "stride": 8}])
        >>> SPEDSEmbed(cfg, 0)(torch.rand(2, 1, 2, 16, 16)).shape
        torch.Size([2, 1, 4, 16])
    """

    def __init__(self, cfg: HSTConfig, index: int) -> None:
        super().__init__(cfg, index)
        stage = cfg.stages[index]
        c_in = self.c_in
        d, pools = stage.n_embd, stage.stride.bit_length() - 1  # stride 2**pools
        spiking = embed_spiking(cfg, index)
        if index == 0:  # QKFormer's PatchEmbedInit: D/8, D/4, D/2, D; shortcut from the second stage
            widths = [max(1, d // 8), max(1, d // 4), max(1, d // 2), d]
            self.shortcut_from = 1
        else:  # QKFormer's PatchEmbeddingStage: two convs; shortcut from the input
            widths = [d, d]
            self.shortcut_from = -1
        pooled = [False] * (len(widths) - pools) + [True] * pools
        self.convs = nn.ModuleList(
            QuantConv2d(a, b, 3, 1, 1, bias=False, weight_bits=cfg.weight_bits)
            for a, b in zip([c_in, *widths[:-1]], widths))
        self.norms = nn.ModuleList(nn.BatchNorm2d(w) for w in widths)
        self.pools = nn.ModuleList(nn.MaxPool2d(3, 2, 1) if p else nn.Identity() for p in pooled)
        self.acts = nn.ModuleList(activation(cfg, spiking) for _ in widths)
        res_in = c_in if self.shortcut_from < 0 else widths[self.shortcut_from]
        res_stride = 2 ** sum(pooled[self.shortcut_from + 1:])  # the pools after the shortcut's source
        self.res_conv = QuantConv2d(res_in, d, 1, res_stride, 0, bias=False, weight_bits=cfg.weight_bits)
        self.res_norm = nn.BatchNorm2d(d)
        self.res_act = activation(cfg, spiking)

    def embed(self, y: torch.Tensor, steps: int) -> torch.Tensor:
        feat = y  # [TB, C, h, w]
        for i, (conv, norm, pool, act) in enumerate(zip(self.convs, self.norms, self.pools, self.acts)):
            y = _stepwise(act, pool(norm(conv(y))), steps)  # conv-BN-[pool]-neuron, as the released code
            if i == self.shortcut_from:
                feat = y
        return y + _stepwise(self.res_act, self.res_norm(self.res_conv(feat)), steps)  # [TB, D, h', w']


class RepConv(nn.Module):
    """Meta-SpikeFormer's re-parameterisable conv on tokens of an ``h x w`` grid:
    ``BN(PW(DW3x3(pad_v(BN(PW x)))))``, where ``pad_v`` pads one pixel with the value the first
    BN gives a zero input (from its running statistics, without gradient, as the released
    ``BNAndPadLayer``), so the whole folds into one 3x3 conv at inference, which is how the
    energy engine prices it (:meth:`folded_conv`).

    Example:
        >>> RepConv(8, 4, (3, 5))(torch.rand(2, 1, 15, 8)).shape
        torch.Size([2, 1, 15, 4])
    """

    def __init__(self, c_in: int, c_out: int, grid: tuple[int, int], weight_bits: int = 32) -> None:
        super().__init__()
        self.grid = grid
        self.conv1 = QuantLinear(c_in, c_in, bias=False, weight_bits=weight_bits)  # 1x1
        self.norm1 = TokenBatchNorm(c_in)
        self.dwconv = QuantConv2d(c_in, c_in, 3, 1, 0, groups=c_in, bias=False, weight_bits=weight_bits)
        self.conv2 = QuantLinear(c_in, c_out, bias=False, weight_bits=weight_bits)  # 1x1
        self.norm2 = TokenBatchNorm(c_out)
        h, w = grid
        border = torch.ones(1, 1, h + 2, w + 2)
        border[..., 1:-1, 1:-1] = 0.0
        self.register_buffer("border", border, persistent=False)

    def folded_conv(self) -> tuple[int, int, int, tuple[int, int]]:
        """``(C_in, C_out, kernel, grid)`` of the one conv it folds into at inference; the energy
        engine prices it as that conv (``hstlab.energy.counting.FoldedConvCounter``)."""
        return self.conv1.in_features, self.conv2.out_features, 3, self.grid

    def pad_value(self) -> torch.Tensor:
        """What the first BN outputs for a zero input (running statistics, no gradient).  # [C]"""
        n = self.norm1
        return (n.bias.detach() - n.running_mean * n.weight.detach() / torch.sqrt(n.running_var + n.eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, N, C]
        t = x.shape[0]
        y = to_map(self.norm1(self.conv1(x)), *self.grid)  # [TB, C, h, w]
        padded = F.pad(y, (1, 1, 1, 1)) + self.pad_value().view(1, -1, 1, 1) * self.border  # [TB, C, h+2, w+2]
        return self.norm2(self.conv2(to_tokens(self.dwconv(padded), t)))  # [T, B, N, C_out]


class RepConvProjection(nn.Module):
    """``SN(BN(RepConv(x)))`` for ``parts`` outputs (Q, K[, V]); one neuron call on all of them."""

    def __init__(self, cfg: HSTConfig, parts: int, grid: tuple[int, int]) -> None:
        super().__init__()
        d = cfg.n_embd
        self.convs = nn.ModuleList(RepConv(d, d, grid, cfg.weight_bits) for _ in range(parts))
        self.norms = nn.ModuleList(TokenBatchNorm(d) for _ in range(parts))
        self.neuron = build_neuron(cfg)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # [T, B, N, D] -> parts × [T, B, N, D]
        out = torch.cat([norm(conv(x)) for conv, norm in zip(self.convs, self.norms)], dim=-1)
        return self.neuron(out).chunk(len(self.convs), dim=-1)


def use_repconv(attention: nn.Module, cfg: HSTConfig, grid: tuple[int, int], label: str) -> None:
    """Give a spiking attention Meta-SpikeFormer's RepConv Q/K/V and output projections (in place)."""
    if not isinstance(attention, SpikingAttention) or type(attention.qkv) is not SpikingProjection:
        raise ValueError(f"{label}='repconv' needs an attention kind with linear Q/K/V projections "
                         f"({', '.join(REPCONV_KINDS)}), not {getattr(attention, 'attention_kind', '?')!r}")
    attention.qkv = RepConvProjection(cfg, attention.qkv.parts, grid)
    attention.proj = RepConv(cfg.n_embd, cfg.n_embd, grid, cfg.weight_bits)
    attention.proj_norm = TokenBatchNorm(cfg.n_embd)


class SepConvMixer(nn.Module):
    """``BN(PW(DW7x7(act(BN(PW x)))))``: Meta-SpikeFormer's separable-conv token mixer (without the
    neuron in front, which the residual half adds)."""

    def __init__(self, cfg: HSTConfig, spiking: bool, grid: tuple[int, int]) -> None:
        super().__init__()
        d, med = cfg.n_embd, SEPCONV_EXPANSION * cfg.n_embd
        self.grid = grid
        self.pw1 = QuantLinear(d, med, bias=False, weight_bits=cfg.weight_bits)
        self.norm1 = TokenBatchNorm(med)
        self.act = activation(cfg, spiking)
        self.dwconv = QuantConv2d(med, med, SEPCONV_KERNEL, 1, SEPCONV_KERNEL // 2, groups=med, bias=False,
                                  weight_bits=cfg.weight_bits)
        self.pw2 = QuantLinear(med, d, bias=False, weight_bits=cfg.weight_bits)
        self.norm2 = TokenBatchNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, N, D]
        y = self.act(self.norm1(self.pw1(x)))  # [T, B, N, 2D]
        y = to_tokens(self.dwconv(to_map(y, *self.grid)), x.shape[0])
        return self.norm2(self.pw2(y))


class ConvMLP(nn.Module):
    """``BN(Conv3x3(act(BN(Conv3x3 x))))`` with hidden width ``mlp_ratio · D`` (no biases)."""

    def __init__(self, cfg: HSTConfig, spiking: bool, grid: tuple[int, int]) -> None:
        super().__init__()
        d, hidden = cfg.n_embd, int(cfg.n_embd * cfg.mlp_ratio)
        self.grid = grid
        self.conv1 = QuantConv2d(d, hidden, 3, 1, 1, bias=False, weight_bits=cfg.weight_bits)
        self.norm1 = TokenBatchNorm(hidden)
        self.act = activation(cfg, spiking)
        self.conv2 = QuantConv2d(hidden, d, 3, 1, 1, bias=False, weight_bits=cfg.weight_bits)
        self.norm2 = TokenBatchNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, N, D]
        t = x.shape[0]
        y = self.act(self.norm1(to_tokens(self.conv1(to_map(x, *self.grid)), t)))  # [T, B, N, rD]
        return self.norm2(to_tokens(self.conv2(to_map(y, *self.grid)), t))


def _conv_half(cfg: HSTConfig, branch: nn.Module, residual: str, spiking: bool) -> ResidualHalf:
    if spiking:
        return _spiking_half(cfg, branch, residual)
    return ResidualHalf(nn.ReLU(), branch, nn.Identity(), "add")  # pre-activation ResNet half


class ConvBlock(nn.Module):
    """A conv-stage block: separable-conv mixer half (``attn_mode``) and conv-MLP half (``mlp_mode``);
    a standard half replaces every neuron with ReLU (pre-activation ResNet).

    Example:
        >>> from hstlab import HSTConfig
        >>> cfg = HSTConfig(input_shape=(2, 8, 8)).with_stages([{"n_embd": 8, "n_head": 1, "kind": "conv"}])
        >>> ConvBlock(stage_config(cfg, 0), cfg.layer(0), (4, 4))(torch.rand(2, 1, 16, 8)).shape
        torch.Size([2, 1, 16, 8])
    """

    def __init__(self, cfg: HSTConfig, layer: ResolvedLayer, grid: tuple[int, int]) -> None:
        super().__init__()
        self.layer = layer
        mixer_spikes, mlp_spikes = layer.attn_mode == "spiking", layer.mlp_mode == "spiking"
        self.attn = _conv_half(cfg, SepConvMixer(cfg, mixer_spikes, grid), layer.residual, mixer_spikes)
        self.mlp = _conv_half(cfg, ConvMLP(cfg, mlp_spikes, grid), layer.residual, mlp_spikes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, N, D]
        return self.mlp(self.attn(x))


def build_stages(cfg: HSTConfig) -> tuple[nn.ModuleList, nn.ModuleList]:
    """``(embeds, blocks)`` of a staged config: one patch embedding per stage, all blocks in order."""
    embeds, blocks = nn.ModuleList(), nn.ModuleList()
    grids = cfg.stage_grids()
    for i, (stage, (start, end)) in enumerate(zip(cfg.stages, stage_bounds(cfg))):
        embeds.append(EMBEDS.get(stage.embed)(cfg, i))
        local = stage_config(cfg, i)
        for index in range(start, end):
            layer = cfg.layer(index)
            if stage.kind == "conv":
                blocks.append(ConvBlock(local, layer, grids[i]))
                continue
            block = HSTBlock(local, layer)
            if stage.projection == "repconv" and layer.attn_mode == "spiking":
                use_repconv(block.attn.branch, local, grids[i], f"stages[{i}].projection")
            blocks.append(block)
    return embeds, blocks
