"""Released Spikformer / SDT weights: conversion, equal outputs and spike counts, refusals, CLI.

The reference models below are written for these tests in plain torch from the papers and the
released models' structure: their key names and forward order (which neuron sees what, where
pooling happens, how the classifier reads the features) are those of the released
repositories, and their neuron is SpikingJelly's multi-step LIF (τ = 2, hard reset to 0,
detached reset, fires on H >= θ). With random weights and BatchNorm statistics, the converted
hstlab model must give the reference's logits and the same number of spikes in every neuron.
"""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from torch import nn

from hstlab.cli import main
from hstlab.model import build_model
from hstlab.neurons import SpikingNeuron
from hstlab.released import (
    ReleasedWeightsError,
    convert_state_dict,
    load_released,
    released_config,
    released_keys,
)

SPIKFORMER, SDT = "spikformer-dvs-2-256", "sdt-dvs-2-256"
SMALL = {"n_embd": 32, "num_steps": 4}  # reduced sizes for speed (heads: 16 -> 4 / 8 -> 4 below)


class SJLIF(nn.Module):
    """SpikingJelly's multi-step LIF as the released code configures it; counts spikes per sample."""

    def __init__(self, threshold: float = 1.0) -> None:
        super().__init__()
        self.threshold = threshold
        self.count: torch.Tensor | None = None  # [B] spikes per sample of the last forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, ...]
        v, out = torch.zeros_like(x[0]), []
        for xt in x:
            h = v + (xt - v) / 2.0  # charge with decay_input, V_reset = 0
            s = (h - self.threshold >= 0).to(x.dtype)  # SpikingJelly's Heaviside: fires at H = θ
            v = h * (1.0 - s)  # hard reset
            out.append(s)
        spikes = torch.stack(out)
        self.count = spikes.sum(dim=[d for d in range(spikes.dim()) if d != 1])
        return spikes


class RefSPS(nn.Module):
    """The shared spiking patch splitting: four conv3x3-BN stages and a relative-position conv.

    Spikformer: conv-BN-LIF-pool at every stage, RPE conv-BN-LIF added to the spikes. SDT: the
    first three stages as Spikformer (pooling where ``pools`` says), the last conv-BN-pool stays
    real-valued, LIF -> RPE conv -> BN is added to it.
    """

    def __init__(self, dim: int, pools: str, sdt: bool) -> None:
        super().__init__()
        self.pools, self.sdt = pools, sdt
        widths, c_in = [dim // 8, dim // 4, dim // 2, dim], [2, dim // 8, dim // 4, dim // 2]
        for i, suffix in enumerate(("", "1", "2", "3")):
            setattr(self, f"proj_conv{suffix}", nn.Conv2d(c_in[i], widths[i], 3, 1, 1, bias=False))
            setattr(self, f"proj_bn{suffix}", nn.BatchNorm2d(widths[i]))
            setattr(self, f"proj_lif{suffix}", SJLIF())
            setattr(self, f"maxpool{suffix}", nn.MaxPool2d(3, 2, 1))
        self.rpe_conv = nn.Conv2d(dim, dim, 3, 1, 1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(dim)
        if not sdt:
            self.rpe_lif = SJLIF()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, 2, H, W] -> [T, B, D, h, w]
        t, b = x.shape[:2]
        x = x.flatten(0, 1)
        for i, suffix in enumerate(("", "1", "2", "3")):
            x = getattr(self, f"proj_bn{suffix}")(getattr(self, f"proj_conv{suffix}")(x))
            if self.sdt and i == 3:
                break
            x = getattr(self, f"proj_lif{suffix}")(x.reshape(t, b, *x.shape[1:])).flatten(0, 1)
            if self.pools[i] == "1":
                x = getattr(self, f"maxpool{suffix}")(x)
        if self.sdt:
            feat = self.maxpool3(x) if self.pools[3] == "1" else x
            spikes = self.proj_lif3(feat.reshape(t, b, *feat.shape[1:])).flatten(0, 1)
            x = self.rpe_bn(self.rpe_conv(spikes)) + feat
        else:
            rpe = self.rpe_bn(self.rpe_conv(x))
            x = x + self.rpe_lif(rpe.reshape(t, b, *rpe.shape[1:])).flatten(0, 1)
        return x.reshape(t, b, *x.shape[1:])


def _proj(kind: str, c_in: int, c_out: int, bias: bool) -> nn.Module:
    """A 1x1 conv as the released code writes it: Conv1d on [TB, C, N] (Spikformer) or Conv2d (SDT)."""
    return (nn.Conv1d if kind == "1d" else nn.Conv2d)(c_in, c_out, kernel_size=1, stride=1, bias=bias)


def _bn(kind: str, c: int) -> nn.Module:
    return nn.BatchNorm1d(c) if kind == "1d" else nn.BatchNorm2d(c)


class RefSpikformerBlock(nn.Module):
    """Spikformer block: SSA (conv-BN-LIF q, k, v; (q kᵀ) v · 0.25; LIF at 0.5; conv-BN-LIF) and a
    conv-BN-LIF MLP, each added to the spike stream. Tokens as [T, B, C, N]."""

    def __init__(self, dim: int, heads: int, ratio: float) -> None:
        super().__init__()
        self.heads, hidden = heads, int(dim * ratio)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)  # built, never used
        self.attn, self.mlp = nn.Module(), nn.Module()
        for p in "qkv":
            setattr(self.attn, f"{p}_conv", _proj("1d", dim, dim, False))
            setattr(self.attn, f"{p}_bn", _bn("1d", dim))
            setattr(self.attn, f"{p}_lif", SJLIF())
        self.attn.attn_lif = SJLIF(threshold=0.5)
        self.attn.proj_conv, self.attn.proj_bn, self.attn.proj_lif = _proj("1d", dim, dim, True), _bn("1d", dim), SJLIF()
        self.mlp.fc1_conv, self.mlp.fc1_bn, self.mlp.fc1_lif = _proj("1d", dim, hidden, True), _bn("1d", hidden), SJLIF()
        self.mlp.fc2_conv, self.mlp.fc2_bn, self.mlp.fc2_lif = _proj("1d", hidden, dim, True), _bn("1d", dim), SJLIF()

    def _cbl(self, module: nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:  # conv-BN-LIF on [T, B, C, N]
        t, b = x.shape[:2]
        y = getattr(module, f"{name}_bn")(getattr(module, f"{name}_conv")(x.flatten(0, 1)))
        return getattr(module, f"{name}_lif")(y.reshape(t, b, *y.shape[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b, c, n = x.shape
        q, k, v = (self._cbl(self.attn, p, x).transpose(-1, -2).reshape(t, b, n, self.heads, c // self.heads)
                   .permute(0, 1, 3, 2, 4) for p in "qkv")  # [T, B, h, N, d]
        mixed = ((q @ k.transpose(-2, -1)) @ v) * 0.25
        a = self.attn.attn_lif(mixed.transpose(3, 4).reshape(t, b, c, n))
        x = x + self._cbl(self.attn, "proj", a)
        hidden = self._cbl(self.mlp, "fc1", x)
        return x + self._cbl(self.mlp, "fc2", hidden)


class RefSDTBlock(nn.Module):
    """SDT block: LIF first, then conv-BN; SDSA ``q ⊙ LIF_0.5(Σ_N k ⊙ v)``; membrane shortcut.
    Tokens as [T, B, C, H, W]."""

    def __init__(self, dim: int, heads: int, ratio: float) -> None:
        super().__init__()
        self.heads, hidden = heads, int(dim * ratio)
        self.attn, self.mlp = nn.Module(), nn.Module()
        self.attn.shortcut_lif = SJLIF()
        for p in "qkv":
            setattr(self.attn, f"{p}_conv", _proj("2d", dim, dim, False))
            setattr(self.attn, f"{p}_bn", _bn("2d", dim))
            setattr(self.attn, f"{p}_lif", SJLIF())
        self.attn.talking_heads = nn.Conv1d(heads, heads, kernel_size=1, stride=1, bias=False)  # never used
        self.attn.talking_heads_lif = SJLIF(threshold=0.5)
        self.attn.proj_conv, self.attn.proj_bn = _proj("2d", dim, dim, True), _bn("2d", dim)
        self.mlp.fc1_lif, self.mlp.fc1_conv, self.mlp.fc1_bn = SJLIF(), _proj("2d", dim, hidden, True), _bn("2d", hidden)
        self.mlp.fc2_lif, self.mlp.fc2_conv, self.mlp.fc2_bn = SJLIF(), _proj("2d", hidden, dim, True), _bn("2d", dim)

    @staticmethod
    def _cb(module: nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:  # conv-BN on [T, B, C, H, W]
        t, b = x.shape[:2]
        y = getattr(module, f"{name}_bn")(getattr(module, f"{name}_conv")(x.flatten(0, 1)))
        return y.reshape(t, b, *y.shape[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b, c, h, w = x.shape
        s = self.attn.shortcut_lif(x)
        q, k, v = (getattr(self.attn, f"{p}_lif")(self._cb(self.attn, p, s)).flatten(3).transpose(-1, -2)
                   .reshape(t, b, h * w, self.heads, c // self.heads).permute(0, 1, 3, 2, 4) for p in "qkv")
        kv = self.attn.talking_heads_lif((k * v).sum(dim=-2, keepdim=True))  # [T, B, heads, 1, d]
        a = (q * kv).transpose(3, 4).reshape(t, b, c, h, w)
        x = x + self._cb(self.attn, "proj", a)
        hidden = self._cb(self.mlp, "fc1", self.mlp.fc1_lif(x))
        return x + self._cb(self.mlp, "fc2", self.mlp.fc2_lif(hidden))


class RefModel(nn.Module):
    """Released model structure; input [B, T, 2, H, W] as the released forward takes it."""

    def __init__(self, kind: str, dim: int, heads: int, classes: int, size: int, depth: int = 2,
                 ratio: float = 4.0) -> None:
        super().__init__()
        self.kind = kind
        self.patch_embed = RefSPS(dim, "1111" if kind == "spikformer" else "0111", sdt=kind == "sdt")
        tokens = (size // 16) ** 2 if kind == "spikformer" else (size // 8) ** 2
        block = RefSpikformerBlock if kind == "spikformer" else RefSDTBlock
        self.block = nn.ModuleList(block(dim, heads, ratio) for _ in range(depth))
        if kind == "spikformer":
            self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))  # built, never used
            self.norm = nn.LayerNorm(dim)  # built, never used
        else:
            self.head_lif = SJLIF()
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x.transpose(0, 1))  # [T, B, D, h, w]
        if self.kind == "spikformer":
            x = x.flatten(3)  # [T, B, D, N]
        for blk in self.block:
            x = blk(x)
        feats = x.flatten(3).mean(3)  # [T, B, D]
        if self.kind == "spikformer":
            return self.head(feats.mean(0))
        return self.head(self.head_lif(feats)).mean(0)


# ---------------------------------------------------------------------------------------------
# helpers: random weights and BatchNorm statistics, spike counts, event-count input


def _events(t: int, b: int, size: int, seed: int) -> torch.Tensor:
    """Integer event counts [B, T, 2, H, W] (the released input layout), about 15 % of pixels active."""
    g = torch.Generator().manual_seed(seed)
    active = torch.rand(b, t, 2, size, size, generator=g) < 0.15
    return active * torch.randint(1, 4, (b, t, 2, size, size), generator=g).float()


@torch.no_grad()
def _calibrated_reference(kind: str, *, dim: int, heads: int, classes: int, size: int, t: int,
                          seed: int = 0) -> RefModel:
    """A reference with random weights whose BatchNorms hold random statistics near the data's."""
    torch.manual_seed(seed)
    ref = RefModel(kind, dim, heads, classes, size)
    return calibrate_norms(ref, _events(t, 4, size, seed + 100), seed)


@torch.no_grad()
def calibrate_norms(ref: nn.Module, batch: torch.Tensor, seed: int) -> nn.Module:
    """``ref`` in eval mode with its BatchNorm statistics taken from ``batch``, then moved at random
    (seeded by ``seed + 1``) near the data's, with affine terms that make every neuron fire."""
    norms = [m for m in ref.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.momentum = None  # cumulative: the running statistics become the calibration batch's
    ref.train()(batch)
    g = torch.Generator().manual_seed(seed + 1)
    for m in norms:
        c = m.num_features
        m.running_mean += 0.1 * torch.randn(c, generator=g)
        m.running_var *= 0.8 + 0.4 * torch.rand(c, generator=g)
        m.weight.copy_(0.8 + 0.6 * torch.rand(c, generator=g))
        m.bias.copy_(0.3 + 0.3 * torch.randn(c, generator=g))
    return ref.eval()


def _sj_counts(ref: nn.Module) -> dict[str, torch.Tensor]:
    return {name: m.count for name, m in ref.named_modules() if isinstance(m, SJLIF) and m.count is not None}


def _hst_counts(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits and spikes per sample [B] of every hstlab neuron that ran."""
    counts: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, args, out, name=name: counts.__setitem__(
        name, out.sum(dim=[d for d in range(out.dim()) if d != 1])))
        for name, m in model.named_modules() if isinstance(m, SpikingNeuron)]
    try:
        model.reset_state()
        logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    return logits, counts


def _neuron_map(kind: str, depth: int = 2) -> dict[str, tuple[str, ...]]:
    """hstlab neuron -> the reference neurons it stands for (Q, K, V share one fused neuron)."""
    pairs: dict[str, tuple[str, ...]] = {f"tokenizer.acts.{j}": (f"patch_embed.proj_lif{s}",)
                                         for j, s in enumerate(("", "1", "2"))}
    if kind == "spikformer":
        pairs |= {"tokenizer.acts.3": ("patch_embed.proj_lif3",), "tokenizer.rpe_act": ("patch_embed.rpe_lif",)}
    else:
        pairs |= {"tokenizer.rpe_act": ("patch_embed.proj_lif3",), "head_neuron": ("head_lif",)}
    for i in range(depth):
        src, dst = f"block.{i}", f"blocks.{i}"
        pairs[f"{dst}.attn.branch.qkv.neuron"] = tuple(f"{src}.attn.{p}_lif" for p in "qkv")
        if kind == "spikformer":
            pairs |= {f"{dst}.attn.branch.attn_neuron": (f"{src}.attn.attn_lif",),
                      f"{dst}.attn.post": (f"{src}.attn.proj_lif",),
                      f"{dst}.mlp.branch.neuron1": (f"{src}.mlp.fc1_lif",),
                      f"{dst}.mlp.post": (f"{src}.mlp.fc2_lif",)}
        else:
            pairs |= {f"{dst}.attn.pre": (f"{src}.attn.shortcut_lif",),
                      f"{dst}.attn.branch.kv_neuron": (f"{src}.attn.talking_heads_lif",),
                      f"{dst}.mlp.pre": (f"{src}.mlp.fc1_lif",),
                      f"{dst}.mlp.branch.neuron1": (f"{src}.mlp.fc2_lif",)}
    return pairs


CASES = {  # preset -> reference kind, heads, input side (reduced sizes)
    SPIKFORMER: ("spikformer", 4, 64),
    SDT: ("sdt", 4, 32),
}


def _small_pair(preset: str, seed: int = 0, **extra):
    kind, heads, size = CASES[preset]
    ref = _calibrated_reference(kind, dim=SMALL["n_embd"], heads=heads, classes=11, size=size,
                                t=SMALL["num_steps"], seed=seed)
    overrides = dict(SMALL, n_head=heads, input_shape=(2, size, size), **extra)
    return ref, load_released(preset, ref.state_dict(), **overrides), size


# ---------------------------------------------------------------------------------------------
# equal outputs


@pytest.mark.parametrize("preset", [SPIKFORMER, SDT])
def test_converted_model_equals_reference(preset: str) -> None:
    ref, model, size = _small_pair(preset)
    assert not model.training and model.cfg.firing_rule == ">="
    x = _events(SMALL["num_steps"], 3, size, seed=7)  # [B, T, 2, H, W]
    with torch.no_grad():
        ref_logits = ref(x)
        ref_counts = _sj_counts(ref)
        logits, counts = _hst_counts(model, x.transpose(0, 1).contiguous())
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4)
    pairs = _neuron_map(CASES[preset][0])
    assert set(counts) == set(pairs)  # every hstlab neuron that ran stands for released ones
    assert {n for names in pairs.values() for n in names} == set(ref_counts)  # and every released one is matched
    for name, sources in pairs.items():
        expected = sum(ref_counts[s] for s in sources)
        assert torch.equal(counts[name], expected), (name, counts[name], expected)
    rates = {name: float(counts[name].sum()) for name in pairs}
    assert all(r > 0 for r in rates.values()), rates  # every neuron fires: the comparison is not vacuous


@pytest.mark.parametrize("preset, tie_neuron", [(SPIKFORMER, "attn_neuron"), (SDT, "kv_neuron")])
def test_firing_rule_decides_the_attention_ties(preset: str, tie_neuron: str) -> None:
    """With ``>`` (snnTorch's rule) the attention neurons miss the ties the released model fires on."""
    ref, _, size = _small_pair(preset)
    _, strict, _ = _small_pair(preset, firing_rule=">")
    x = _events(SMALL["num_steps"], 3, size, seed=7)
    with torch.no_grad():
        ref(x)
        _, counts = _hst_counts(strict, x.transpose(0, 1).contiguous())
    ref_counts = _sj_counts(ref)
    src = "attn.attn_lif" if preset == SPIKFORMER else "attn.talking_heads_lif"
    assert counts[f"blocks.0.attn.branch.{tie_neuron}"].sum() < ref_counts[f"block.0.{src}"].sum()


# ---------------------------------------------------------------------------------------------
# the full-size released key set


@pytest.mark.parametrize("preset, kind, unused", [(SPIKFORMER, "spikformer", 18_944), (SDT, "sdt", 128)])
@pytest.mark.parametrize("classes", [11, 10])
def test_full_size_released_keys_and_shapes_are_accepted(preset: str, kind: str, unused: int, classes: int) -> None:
    ref = RefModel(kind, 256, 16 if kind == "spikformer" else 8, classes, 128)
    model = load_released(preset, ref.state_dict(), num_classes=classes)
    params = sum(p.numel() for p in model.parameters())
    assert params == {11: 2_566_923, 10: 2_566_666}[classes]  # the papers' 2.57 M
    assert sum(p.numel() for p in ref.parameters()) == params + unused  # the never-used extras, left out
    assert set(released_keys(preset, num_classes=classes)) <= set(ref.state_dict())
    for key, shape in released_keys(preset).items():
        if not key.startswith("head."):
            assert tuple(ref.state_dict()[key].shape) == shape, key


@pytest.mark.slow
@pytest.mark.parametrize("preset", [SPIKFORMER, SDT])
def test_full_size_forward_matches(preset: str) -> None:
    """Full size, T = 2. hstlab's stem convolves channels-last; the reference run channels-last too
    gives the same logits and spike counts (NCHW differs from both by float summation order only)."""
    kind, t = CASES[preset][0], 2
    ref = _calibrated_reference(kind, dim=256, heads=16 if kind == "spikformer" else 8, classes=11, size=128, t=t)
    model = load_released(preset, ref.state_dict(), num_steps=t)
    x = _events(t, 2, 128, seed=3)
    with torch.no_grad():
        ref_logits = ref.to(memory_format=torch.channels_last)(x)
        ref_counts = _sj_counts(ref)
        logits, counts = _hst_counts(model, x.transpose(0, 1).contiguous())
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
    for name, sources in _neuron_map(kind).items():
        assert torch.equal(counts[name], sum(ref_counts[s] for s in sources)), name


# ---------------------------------------------------------------------------------------------
# what is copied, what is refused


def test_fused_qkv_and_batchnorm_statistics_are_copied() -> None:
    ref = RefModel("spikformer", 32, 4, 11, 64)
    for m in ref.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_()
            m.num_batches_tracked.fill_(7)
    cfg, state = convert_state_dict(SPIKFORMER, ref.state_dict(), n_embd=32, n_head=4, input_shape=(2, 64, 64))
    a = ref.block[1].attn
    fused = state["blocks.1.attn.branch.qkv.linear.weight"]
    assert torch.equal(fused, torch.cat([a.q_conv.weight, a.k_conv.weight, a.v_conv.weight])[..., 0])
    assert torch.equal(state["blocks.1.attn.branch.qkv.norm.running_mean"],
                       torch.cat([a.q_bn.running_mean, a.k_bn.running_mean, a.v_bn.running_mean]))
    assert int(state["tokenizer.norms.2.num_batches_tracked"]) == 7
    assert torch.equal(state["blocks.0.mlp.branch.fc2.bias"], ref.block[0].mlp.fc2_conv.bias)


def _full_state(kind: str, classes: int = 11) -> dict[str, torch.Tensor]:
    return RefModel(kind, 256, 16 if kind == "spikformer" else 8, classes, 128).state_dict()


def test_wrong_class_count_is_refused_with_a_hint() -> None:
    state = _full_state("spikformer", classes=10)  # the CIFAR10-DVS file
    with pytest.raises(ReleasedWeightsError, match=r"head.weight has \[10, 256\], expected \[11, 256\].*"
                                                   r"num_classes=10") as err:
        load_released(SPIKFORMER, state)
    assert isinstance(err.value, ValueError) and {k for k, _, _ in err.value.mismatched} == {"head.weight", "head.bias"}
    assert load_released(SPIKFORMER, state, num_classes=10).cfg.num_classes == 10


def test_another_architecture_is_refused() -> None:
    with pytest.raises(ReleasedWeightsError) as err:
        load_released(SDT, _full_state("spikformer"))  # Conv1d projections, extra LayerNorms
    e = err.value
    assert "pos_embed" in e.unexpected and "block.0.norm1.weight" in e.unexpected
    assert ("block.0.attn.q_conv.weight", (256, 256, 1), (256, 256, 1, 1)) in e.mismatched
    with pytest.raises(ReleasedWeightsError, match="unexpected keys.*talking_heads"):
        load_released(SPIKFORMER, _full_state("sdt"))


def test_truncated_file_names_the_missing_keys() -> None:
    state = _full_state("sdt")
    keys = list(state)
    for key in keys[len(keys) // 2:]:
        del state[key]
    with pytest.raises(ReleasedWeightsError, match=r"missing keys \(\d+\): block\.") as err:
        load_released(SDT, state)
    assert "head.weight" in err.value.missing and not err.value.unexpected


def test_checkpoint_wrappers_and_ddp_prefix_are_unwrapped() -> None:
    state = {k: v for k, v in RefModel("sdt", 32, 4, 11, 32).state_dict().items()}
    small = dict(n_embd=32, n_head=4, input_shape=(2, 32, 32))
    for wrapped in ({"model": state, "epoch": 3}, {"state_dict": {f"module.{k}": v for k, v in state.items()}}):
        assert isinstance(load_released(SDT, wrapped, **small), nn.Module)
    with pytest.raises(ValueError, match="non-empty dict of tensors"):
        load_released(SDT, {}, **small)


def test_overrides_that_add_parameters_are_refused() -> None:
    state = RefModel("sdt", 32, 4, 11, 32).state_dict()
    with pytest.raises(ValueError, match=r"overrides \['input_shape', 'n_embd', 'n_head', 'neuron'\].*"
                                         r"parameters the released model does not have: .*blocks\.0\.attn\.pre\.w"):
        load_released(SDT, state, n_embd=32, n_head=4, input_shape=(2, 32, 32), neuron="plif")


def test_unknown_preset_is_refused() -> None:
    with pytest.raises(ValueError, match="preset='tiny'.*allowed: spikformer-dvs-2-256, sdt-dvs-2-256"):
        released_config("tiny")


def test_presets_use_the_released_firing_rule() -> None:
    for preset in (SPIKFORMER, SDT):
        model = build_model(released_config(preset))
        rules = {m.firing_rule for m in model.modules() if isinstance(m, SpikingNeuron)}
        assert rules == {">="}


# ---------------------------------------------------------------------------------------------
# hstlab convert


def _write_small_file(tmp_path, kind: str = "spikformer") -> str:
    """A released-style checkpoint: weights under 'model', the trainer's argparse options under 'args'."""
    ref = _calibrated_reference(kind, dim=32, heads=4, classes=10, size=34, t=2)
    path = tmp_path / "released.pth"
    torch.save({"model": ref.state_dict(), "epoch": 1, "args": argparse.Namespace(lr=1e-3, T=2)}, path)
    return str(path)


class _Unsafe:
    """An arbitrary class: a released file holding one is not loaded."""


SMALL_SET = ["--set", "n_embd=32", "--set", "n_head=4", "--set", "num_classes=10", "--set", "num_steps=2",
             "--set", "input_shape=[2,34,34]"]


def test_converted_run_loads_in_energy_card_and_explorer(tmp_path, capsys, data_env) -> None:
    path = _write_small_file(tmp_path)
    out = tmp_path / "run"
    rc = main(["convert", path, "--preset", SPIKFORMER, *SMALL_SET, "--dataset", "digits-dvs", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert {p.name for p in out.iterdir()} == {"config.json", "best.safetensors", "run.json", "metrics.json"}
    run = json.loads((out / "run.json").read_text())
    assert run["dataset"] == "digits-dvs" and "converted from released weights" in run["notes"][0]
    from hstlab.train.checkpoint import load_checkpoint

    model, cfg, meta = load_checkpoint(out)
    assert cfg.firing_rule == ">=" and cfg.n_embd == 32 and meta["released_preset"] == SPIKFORMER
    capsys.readouterr()
    assert main(["energy", str(out), "--batch-size", "2"]) == 0
    assert "spikformer-dvs-2-256" in capsys.readouterr().out
    assert main(["card", str(out), "--energy-batch", "4"]) == 0, capsys.readouterr().err
    assert (out / "model_card.md").is_file()
    from hstlab.ui import ExplorerState

    state = ExplorerState(preset="hst-small")
    assert state.load_run(out), state.error
    assert state.cfg.firing_rule == ">=" and state.weights == f"trained: {out}"


def test_convert_refuses_existing_out_and_bad_files(tmp_path, capsys) -> None:
    path = _write_small_file(tmp_path)
    (tmp_path / "taken").mkdir()
    assert main(["convert", path, "--preset", SPIKFORMER, *SMALL_SET, "--out", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err.strip()
    assert "already exists" in err and len(err.splitlines()) == 1
    bad = tmp_path / "bad.pth"
    bad.write_text("not a torch file")
    assert main(["convert", str(bad), "--preset", SPIKFORMER, "--out", str(tmp_path / "r1")]) == 2
    assert "is not a torch state dict" in capsys.readouterr().err
    evil = tmp_path / "evil.pth"
    torch.save({"model": {"head.weight": torch.ones(1)}, "hook": _Unsafe()}, evil)
    assert main(["convert", str(evil), "--preset", SPIKFORMER, "--out", str(tmp_path / "r1")]) == 2
    assert "weights_only=True" in capsys.readouterr().err  # arbitrary pickled objects stay refused
    assert main(["convert", path, "--preset", SPIKFORMER, "--out", str(tmp_path / "r2")]) == 2  # full-size preset
    err = capsys.readouterr().err.strip()
    assert "mismatched shapes" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()
