"""Released QKFormer (DVS) weights: conversion into the staged ``qkformer-dvs`` presets, equal
outputs and spike counts, full-size keys and parameter counts, refusals.

The reference model below is written for these tests in plain torch from the QKFormer paper and
the released DVS model's structure (zhouchenlin2096/QKFormer, ``cifar10-dvs/model.py``): its key
names, forward order (conv-BN-maxpool-LIF in the patch embeddings, where the deformed shortcuts
branch off, token Q-K attention ``LIF_0.5(Σ_channels Q) ⊙ K``, SSA ``(Q (Kᵀ V)) · 0.125``, SEW
additions) and SpikingJelly's multi-step LIF (from tests/test_released.py).
"""

from __future__ import annotations

import pytest
import torch
from test_released import SJLIF, _events, _hst_counts, _sj_counts, calibrate_norms
from torch import nn

from hstlab import HSTConfig
from hstlab.released import ReleasedWeightsError, load_released, released_keys


def _cbl(conv: nn.Module, bn: nn.Module, lif: nn.Module, x: torch.Tensor, t: int, pool: nn.Module | None = None):
    """conv -> BN [-> maxpool] -> LIF on a time-folded map [T*B, C, H, W]."""
    y = bn(conv(x))
    if pool is not None:
        y = pool(y)
    return lif(y.reshape(t, -1, *y.shape[1:])).flatten(0, 1)


class RefPatchEmbedInit(nn.Module):
    def __init__(self, c_in: int, dim: int) -> None:
        super().__init__()
        widths = [dim // 8, dim // 4, dim // 2, dim]
        for i, (suffix, a, b) in enumerate(zip(("", "1", "2", "3"), [c_in, *widths[:-1]], widths)):
            setattr(self, f"proj{suffix}_conv", nn.Conv2d(a, b, 3, 1, 1, bias=False))
            setattr(self, f"proj{suffix}_bn", nn.BatchNorm2d(b))
            setattr(self, f"proj{suffix}_lif", SJLIF())
            if i:
                setattr(self, f"maxpool{suffix}", nn.MaxPool2d(3, 2, 1))
        self.proj_res_conv = nn.Conv2d(dim // 4, dim, 1, 4, 0, bias=False)
        self.proj_res_bn, self.proj_res_lif = nn.BatchNorm2d(dim), SJLIF()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, C, H, W]
        t = x.shape[0]
        x = _cbl(self.proj_conv, self.proj_bn, self.proj_lif, x.flatten(0, 1), t)
        x = feat = _cbl(self.proj1_conv, self.proj1_bn, self.proj1_lif, x, t, self.maxpool1)
        x = _cbl(self.proj2_conv, self.proj2_bn, self.proj2_lif, x, t, self.maxpool2)
        x = _cbl(self.proj3_conv, self.proj3_bn, self.proj3_lif, x, t, self.maxpool3)
        x = x + _cbl(self.proj_res_conv, self.proj_res_bn, self.proj_res_lif, feat, t)  # the shortcut
        return x.reshape(t, -1, *x.shape[1:])


class RefPatchEmbeddingStage(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj_conv, self.proj_bn, self.proj_lif = nn.Conv2d(dim // 2, dim, 3, 1, 1, bias=False), nn.BatchNorm2d(dim), SJLIF()
        self.proj4_conv, self.proj4_bn, self.proj4_lif = nn.Conv2d(dim, dim, 3, 1, 1, bias=False), nn.BatchNorm2d(dim), SJLIF()
        self.proj4_maxpool = nn.MaxPool2d(3, 2, 1)
        self.proj_res_conv = nn.Conv2d(dim // 2, dim, 1, 2, 0, bias=False)
        self.proj_res_bn, self.proj_res_lif = nn.BatchNorm2d(dim), SJLIF()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[0]
        feat = x.flatten(0, 1)
        x = _cbl(self.proj_conv, self.proj_bn, self.proj_lif, feat, t)
        x = _cbl(self.proj4_conv, self.proj4_bn, self.proj4_lif, x, t, self.proj4_maxpool)
        x = x + _cbl(self.proj_res_conv, self.proj_res_bn, self.proj_res_lif, feat, t)
        return x.reshape(t, -1, *x.shape[1:])


class RefAttention(nn.Module):
    """Token Q-K attention (``token=True``, released ``Token_QK_Attention``) or SSA."""

    def __init__(self, dim: int, heads: int, token: bool) -> None:
        super().__init__()
        self.heads, self.token = heads, token
        for p in ("qk" if token else "qkv"):
            setattr(self, f"{p}_conv", nn.Conv1d(dim, dim, 1, 1, bias=False))
            setattr(self, f"{p}_bn", nn.BatchNorm1d(dim))
            setattr(self, f"{p}_lif", SJLIF())
        self.attn_lif = SJLIF(threshold=0.5)
        self.proj_conv, self.proj_bn, self.proj_lif = nn.Conv1d(dim, dim, 1, 1), nn.BatchNorm1d(dim), SJLIF()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, C, H, W]
        t, b, c, h, w = x.shape
        flat = x.flatten(3).flatten(0, 1)  # [TB, C, N]
        spikes = {p: _cbl(getattr(self, f"{p}_conv"), getattr(self, f"{p}_bn"), getattr(self, f"{p}_lif"), flat, t)
                  .reshape(t, b, c, h * w) for p in ("qk" if self.token else "qkv")}
        if self.token:  # [T, B, heads, C/heads, N]: a gate per token and head from Q's channel sum
            q, k = (spikes[p].reshape(t, b, self.heads, c // self.heads, h * w) for p in "qk")
            out = (self.attn_lif(q.sum(dim=3, keepdim=True)) * k).flatten(2, 3)  # [T, B, C, N]
        else:
            q, k, v = (spikes[p].transpose(-1, -2).reshape(t, b, h * w, self.heads, c // self.heads)
                       .permute(0, 1, 3, 2, 4) for p in "qkv")  # [T, B, heads, N, d]
            mixed = (q @ (k.transpose(-2, -1) @ v)) * 0.125
            out = self.attn_lif(mixed.transpose(3, 4).reshape(t, b, c, h * w))
        y = _cbl(self.proj_conv, self.proj_bn, self.proj_lif, out.flatten(0, 1), t)
        return y.reshape(t, b, c, h, w)


class RefMLP(nn.Module):
    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.mlp1_conv, self.mlp1_bn, self.mlp1_lif = nn.Conv2d(dim, hidden, 1, 1), nn.BatchNorm2d(hidden), SJLIF()
        self.mlp2_conv, self.mlp2_bn, self.mlp2_lif = nn.Conv2d(hidden, dim, 1, 1), nn.BatchNorm2d(dim), SJLIF()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[0]
        y = _cbl(self.mlp1_conv, self.mlp1_bn, self.mlp1_lif, x.flatten(0, 1), t)
        y = _cbl(self.mlp2_conv, self.mlp2_bn, self.mlp2_lif, y, t)
        return y.reshape(x.shape)


class RefBlock(nn.Module):
    def __init__(self, dim: int, heads: int, ratio: float, token: bool) -> None:
        super().__init__()
        setattr(self, "tssa" if token else "ssa", RefAttention(dim, heads, token))
        self.mlp = RefMLP(dim, ratio)
        self.attn_name = "tssa" if token else "ssa"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + getattr(self, self.attn_name)(x)
        return x + self.mlp(x)


class RefQKFormer(nn.Module):
    """The released ``vit_snn`` (DVS): input [B, T, 2, H, W]; ``embed_dims`` is the last width."""

    def __init__(self, embed_dims: int, heads: int, ratio: float, classes: int) -> None:
        super().__init__()
        self.patch_embed1 = RefPatchEmbedInit(2, embed_dims // 2)
        self.stage1 = nn.ModuleList([RefBlock(embed_dims // 2, heads, ratio, token=True)])
        self.patch_embed2 = RefPatchEmbeddingStage(embed_dims)
        self.stage2 = nn.ModuleList([RefBlock(embed_dims, heads, ratio, token=False)])
        self.head = nn.Linear(embed_dims, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed1(x.permute(1, 0, 2, 3, 4))
        for blk in self.stage1:
            x = blk(x)
        x = self.patch_embed2(x)
        for blk in self.stage2:
            x = blk(x)
        return self.head(x.flatten(3).mean(3).mean(0))


PRESETS = {"qkformer-dvs": (1.0, 10, 1_504_138), "qkformer-dvs128": (4.0, 11, 1_999_371)}
DIM, HEADS, SIZE, T = 32, 4, 32, 4  # reduced sizes: widths 16 / 32, 4x4 then 2x2 tokens


def _small_stages(preset: str) -> list[dict]:
    return [{**stage.__dict__, "n_embd": DIM // 2 * (i + 1), "n_head": HEADS}
            for i, stage in enumerate(HSTConfig.from_preset(preset).stages)]


@torch.no_grad()
def _calibrated(ratio: float, classes: int, seed: int = 0) -> RefQKFormer:
    torch.manual_seed(seed)
    ref = RefQKFormer(DIM, HEADS, ratio, classes)
    return calibrate_norms(ref, _events(T, 4, SIZE, seed + 100), seed)


def _neuron_map() -> dict[str, tuple[str, ...]]:
    pairs = {f"embeds.0.acts.{j}": (f"patch_embed1.proj{s}_lif",) for j, s in enumerate(("", "1", "2", "3"))}
    pairs |= {"embeds.0.res_act": ("patch_embed1.proj_res_lif",), "embeds.1.acts.0": ("patch_embed2.proj_lif",),
              "embeds.1.acts.1": ("patch_embed2.proj4_lif",), "embeds.1.res_act": ("patch_embed2.proj_res_lif",)}
    for i, (src, parts, gate) in enumerate((("stage1.0.tssa", "qk", "mask_neuron"), ("stage2.0.ssa", "qkv", "attn_neuron"))):
        dst, mlp = f"blocks.{i}", f"stage{i + 1}.0.mlp"
        pairs |= {f"{dst}.attn.branch.qkv.neuron": tuple(f"{src}.{p}_lif" for p in parts),
                  f"{dst}.attn.branch.{gate}": (f"{src}.attn_lif",), f"{dst}.attn.post": (f"{src}.proj_lif",),
                  f"{dst}.mlp.branch.neuron1": (f"{mlp}.mlp1_lif",), f"{dst}.mlp.post": (f"{mlp}.mlp2_lif",)}
    return pairs


@pytest.mark.parametrize("preset", list(PRESETS))
def test_converted_qkformer_equals_reference(preset: str) -> None:
    ratio, classes, _ = PRESETS[preset]
    ref = _calibrated(ratio, classes)
    model = load_released(preset, ref.state_dict(), stages=_small_stages(preset), num_steps=T,
                          input_shape=(2, SIZE, SIZE))
    assert not model.training and model.cfg.firing_rule == ">=" and model.cfg.stage_grids() == [(4, 4), (2, 2)]
    x = _events(T, 3, SIZE, seed=7)  # [B, T, 2, H, W]
    with torch.no_grad():
        ref_logits = ref(x)
        ref_counts = _sj_counts(ref)
        logits, counts = _hst_counts(model, x.transpose(0, 1).contiguous())
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4)
    pairs = _neuron_map()
    assert set(counts) == set(pairs)  # every hstlab neuron that ran stands for released ones
    assert {n for names in pairs.values() for n in names} == set(ref_counts)  # and every released one is matched
    for name, sources in pairs.items():
        assert torch.equal(counts[name], sum(ref_counts[s] for s in sources)), name
    assert all(float(counts[name].sum()) > 0 for name in pairs)  # not vacuous: every neuron fires


@pytest.mark.parametrize("preset", list(PRESETS))
def test_full_size_qkformer_keys_and_parameter_count(preset: str) -> None:
    ratio, classes, released_params = PRESETS[preset]
    ref = RefQKFormer(256, 16, ratio, classes)
    assert sum(p.numel() for p in ref.parameters()) == released_params  # the reference is the released size
    assert set(released_keys(preset)) == {k for k in ref.state_dict() if not k.endswith("num_batches_tracked")}
    for key, shape in released_keys(preset).items():
        assert tuple(ref.state_dict()[key].shape) == shape, key
    model = load_released(preset, ref.state_dict())
    assert sum(p.numel() for p in model.parameters()) == released_params  # nothing left out: all are used
    fused = model.state_dict()["blocks.1.attn.branch.qkv.linear.weight"]
    attn = ref.stage2[0].ssa
    assert torch.equal(fused, torch.cat([attn.q_conv.weight, attn.k_conv.weight, attn.v_conv.weight])[..., 0])


def test_qkformer_refusals_name_keys_and_shapes() -> None:
    state = RefQKFormer(256, 16, 1.0, 10).state_dict()
    with pytest.raises(ReleasedWeightsError, match=r"stage1.0.mlp.mlp1_conv.weight has \[128, 128, 1, 1\], "
                                                   r"expected \[512, 128, 1, 1\].*MLP ratio is 1: qkformer-dvs "):
        load_released("qkformer-dvs128", state)  # the CIFAR10-DVS file (MLP ratio 1) as the DVS128 model
    del state["patch_embed2.proj_res_bn.running_var"]
    with pytest.raises(ReleasedWeightsError, match=r"missing keys \(1\): patch_embed2.proj_res_bn.running_var"):
        load_released("qkformer-dvs", state)
    with pytest.raises(ValueError, match=r"layers\[0\]: the released QKFormer"):
        load_released("qkformer-dvs", state, attention="sdsa", stages=[
            {**s.__dict__, "attention": None} for s in HSTConfig.from_preset("qkformer-dvs").stages])


def test_convert_cli_writes_a_loadable_staged_run(tmp_path) -> None:
    from hstlab.cli import main
    from hstlab.train import load_checkpoint, run_checkpoint

    ref = RefQKFormer(256, 16, 1.0, 10)
    torch.save({"model": ref.state_dict()}, tmp_path / "qkformer_c10dvs.pth")
    out = tmp_path / "run"
    assert main(["convert", str(tmp_path / "qkformer_c10dvs.pth"), "--preset", "qkformer-dvs", "--out", str(out)]) == 0
    model, cfg = load_checkpoint(run_checkpoint(out))[:2]
    assert cfg.stages == HSTConfig.from_preset("qkformer-dvs").stages
    assert torch.equal(model.state_dict()["embeds.1.res_conv.weight"], ref.patch_embed2.proj_res_conv.weight)
