"""Released Meta-SpikeFormer (Spike-driven Transformer V2) weights into the staged ``sdt2-15m`` preset.

The reference below is written for these tests in plain torch from the paper and the released
model's structure (BICLab/Spike-Driven-Transformer-V2, classification/models.py): its key names and
forward order (downsampling ``[LIF] conv-BN``, the conv block ``x + SepConv(x)``, ``x + BN(C3(LIF(
BN(C3(LIF x)))))``, RepConv ``BN(PW(DW3x3(pad_BN(0)(BN(PW x)))))`` projections, attention
``LIF_0.5((Q (Kᵀ V)) · 0.125)``, membrane shortcuts, a LIF before the classifier) and SpikingJelly's
multi-step LIF (from tests/test_released.py).
"""

from __future__ import annotations

import pytest
import torch
from test_released import SJLIF, _hst_counts, _sj_counts, calibrate_norms
from torch import nn
from torch.nn import functional as F

from hstlab import HSTConfig
from hstlab.released import ReleasedWeightsError, load_released, released_keys


def _steps(module: nn.Module, x: torch.Tensor, t: int) -> torch.Tensor:
    """A 2-D module on [T, B, ...] through the time-folded batch."""
    y = module(x.flatten(0, 1))
    return y.reshape(t, -1, *y.shape[1:])


class RefBNAndPad(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(x)
        bn = self.bn
        pad = (bn.bias.detach() - bn.running_mean * bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps))
        out = F.pad(out, [1] * 4)
        pad = pad.view(1, -1, 1, 1)
        out[:, :, 0:1, :] = pad
        out[:, :, -1:, :] = pad
        out[:, :, :, 0:1] = pad
        out[:, :, :, -1:] = pad
        return out


class RefRepConv(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 1, 1, 0, bias=False), RefBNAndPad(c), nn.Sequential(
            nn.Conv2d(c, c, 3, 1, 0, groups=c, bias=False), nn.Conv2d(c, c, 1, 1, 0, bias=False), nn.BatchNorm2d(c)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class RefSepConv(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.lif1, self.lif2 = SJLIF(), SJLIF()
        self.pwconv1, self.bn1 = nn.Conv2d(c, 2 * c, 1, 1, bias=False), nn.BatchNorm2d(2 * c)
        self.dwconv = nn.Conv2d(2 * c, 2 * c, 7, padding=3, groups=2 * c, bias=False)
        self.pwconv2, self.bn2 = nn.Conv2d(2 * c, c, 1, 1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, C, H, W]
        t = x.shape[0]
        x = self.lif2(_steps(lambda y: self.bn1(self.pwconv1(y)), self.lif1(x), t))
        return _steps(lambda y: self.bn2(self.pwconv2(self.dwconv(y))), x, t)


class RefConvBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.Conv = RefSepConv(c)  # noqa: N815 - the released name
        self.lif1, self.lif2 = SJLIF(), SJLIF()
        self.conv1, self.bn1 = nn.Conv2d(c, 4 * c, 3, padding=1, bias=False), nn.BatchNorm2d(4 * c)
        self.conv2, self.bn2 = nn.Conv2d(4 * c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[0]
        x = self.Conv(x) + x
        y = _steps(lambda z: self.bn1(self.conv1(z)), self.lif1(x), t)
        return x + _steps(lambda z: self.bn2(self.conv2(z)), self.lif2(y), t)


class RefAttention(nn.Module):
    def __init__(self, c: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_lif = SJLIF()
        for p in ("q", "k", "v", "proj"):
            setattr(self, f"{p}_conv", nn.Sequential(RefRepConv(c), nn.BatchNorm2d(c)))
        self.q_lif, self.k_lif, self.v_lif = SJLIF(), SJLIF(), SJLIF()
        self.attn_lif = SJLIF(threshold=0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b, c, h, w = x.shape
        x = self.head_lif(x)
        q, k, v = (getattr(self, f"{p}_lif")(_steps(getattr(self, f"{p}_conv"), x, t)).flatten(3)
                   .transpose(-1, -2).reshape(t, b, h * w, self.heads, c // self.heads).permute(0, 1, 3, 2, 4)
                   for p in "qkv")
        x = (q @ (k.transpose(-2, -1) @ v)) * 0.125
        x = self.attn_lif(x.transpose(3, 4).reshape(t, b, c, h * w)).reshape(t, b, c, h, w)
        return _steps(self.proj_conv, x, t)


class RefMLP(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.fc1_lif, self.fc1_conv, self.fc1_bn = SJLIF(), nn.Conv1d(c, 4 * c, 1, 1), nn.BatchNorm1d(4 * c)
        self.fc2_lif, self.fc2_conv, self.fc2_bn = SJLIF(), nn.Conv1d(4 * c, c, 1, 1), nn.BatchNorm1d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b, c, h, w = x.shape
        y = _steps(lambda z: self.fc1_bn(self.fc1_conv(z)), self.fc1_lif(x.flatten(3)), t)
        return _steps(lambda z: self.fc2_bn(self.fc2_conv(z)), self.fc2_lif(y), t).reshape(t, b, c, h, w)


class RefBlock(nn.Module):
    def __init__(self, c: int, heads: int) -> None:
        super().__init__()
        self.attn, self.mlp = RefAttention(c, heads), RefMLP(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class RefDown(nn.Module):
    def __init__(self, c_in: int, c_out: int, k: int, stride: int, first: bool) -> None:
        super().__init__()
        self.encode_conv, self.encode_bn = nn.Conv2d(c_in, c_out, k, stride, k // 2), nn.BatchNorm2d(c_out)
        if not first:
            self.encode_lif = SJLIF()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "encode_lif"):
            x = self.encode_lif(x)
        return _steps(lambda z: self.encode_bn(self.encode_conv(z)), x, x.shape[0])


class RefMetaSpikeFormer(nn.Module):
    """``Spiking_vit_MetaFormer(embed_dim=dims, num_heads=heads, mlp_ratios=4)``: input [B, C, H, W]."""

    def __init__(self, dims: tuple[int, int, int, int], heads: int, classes: int, c_in: int = 3, t: int = 1) -> None:
        super().__init__()
        self.T = t
        d0, d1, d2, d3 = dims
        self.downsample1_1 = RefDown(c_in, d0 // 2, 7, 2, first=True)
        self.ConvBlock1_1 = nn.ModuleList([RefConvBlock(d0 // 2)])  # noqa: N815 - the released names
        self.downsample1_2 = RefDown(d0 // 2, d0, 3, 2, first=False)
        self.ConvBlock1_2 = nn.ModuleList([RefConvBlock(d0)])  # noqa: N815
        self.downsample2 = RefDown(d0, d1, 3, 2, first=False)
        self.ConvBlock2_1 = nn.ModuleList([RefConvBlock(d1)])  # noqa: N815
        self.ConvBlock2_2 = nn.ModuleList([RefConvBlock(d1)])  # noqa: N815
        self.downsample3 = RefDown(d1, d2, 3, 2, first=False)
        self.block3 = nn.ModuleList([RefBlock(d2, heads) for _ in range(6)])
        self.downsample4 = RefDown(d2, d3, 3, 1, first=False)
        self.block4 = nn.ModuleList([RefBlock(d3, heads) for _ in range(2)])
        self.lif = SJLIF()
        self.head = nn.Linear(d3, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        for name in ("downsample1_1", "ConvBlock1_1", "downsample1_2", "ConvBlock1_2", "downsample2",
                     "ConvBlock2_1", "ConvBlock2_2", "downsample3", "block3", "downsample4", "block4"):
            module = getattr(self, name)
            for blk in (module if isinstance(module, nn.ModuleList) else [module]):
                x = blk(x)
        return self.head(self.lif(x.flatten(3).mean(3))).mean(0)


DIMS, HEADS, SIZE, T = (16, 32, 64, 80), 8, 32, 2  # reduced: widths 8, 16, 32, 64, 80; 2x2 tokens last


def _small_stages() -> list[dict]:
    widths = (DIMS[0] // 2, DIMS[0], DIMS[1], DIMS[2], DIMS[3])
    return [{**s.__dict__, "n_embd": w, "n_head": HEADS if s.kind == "transformer" else 1}
            for s, w in zip(HSTConfig.from_preset("sdt2-15m").stages, widths)]


@torch.no_grad()
def _calibrated(seed: int = 0) -> RefMetaSpikeFormer:
    torch.manual_seed(seed)
    ref = RefMetaSpikeFormer(DIMS, HEADS, 10, t=T)
    return calibrate_norms(ref, torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed + 100)), seed)


def _neuron_map() -> dict[str, tuple[str, ...]]:
    pairs = {f"embeds.{i}.act": (f"{name}.encode_lif",) for i, name in
             enumerate(("downsample1_2", "downsample2", "downsample3", "downsample4"), start=1)}
    pairs["head_neuron"] = ("lif",)
    convs = ("ConvBlock1_1.0", "ConvBlock1_2.0", "ConvBlock2_1.0", "ConvBlock2_2.0")
    for i, src in enumerate(convs):
        pairs |= {f"blocks.{i}.attn.pre": (f"{src}.Conv.lif1",), f"blocks.{i}.attn.branch.act": (f"{src}.Conv.lif2",),
                  f"blocks.{i}.mlp.pre": (f"{src}.lif1",), f"blocks.{i}.mlp.branch.act": (f"{src}.lif2",)}
    blocks = [f"block3.{j}" for j in range(6)] + ["block4.0", "block4.1"]
    for i, src in enumerate(blocks, start=4):
        dst = f"blocks.{i}"
        pairs |= {f"{dst}.attn.pre": (f"{src}.attn.head_lif",),
                  f"{dst}.attn.branch.qkv.neuron": tuple(f"{src}.attn.{p}_lif" for p in "qkv"),
                  f"{dst}.attn.branch.attn_neuron": (f"{src}.attn.attn_lif",),
                  f"{dst}.mlp.pre": (f"{src}.mlp.fc1_lif",), f"{dst}.mlp.branch.neuron1": (f"{src}.mlp.fc2_lif",)}
    return pairs


def test_converted_meta_spikeformer_equals_reference() -> None:
    ref = _calibrated()
    model = load_released("sdt2-15m", ref.state_dict(), stages=_small_stages(), num_steps=T, num_classes=10,
                          input_shape=(3, SIZE, SIZE))
    assert model.cfg.stage_grids()[-1] == (2, 2) and not model.training
    x = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(7))  # images [B, C, H, W]
    with torch.no_grad():
        ref_logits = ref(x)
        ref_counts = _sj_counts(ref)
        logits, counts = _hst_counts(model, x.expand(T, *x.shape).contiguous())  # the image on every step
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4)
    pairs = _neuron_map()
    assert set(counts) == set(pairs) and {n for v in pairs.values() for n in v} == set(ref_counts)
    for name, sources in pairs.items():
        assert torch.equal(counts[name], sum(ref_counts[s] for s in sources)), name
    assert all(float(counts[name].sum()) > 0 for name in pairs)  # not vacuous: every neuron fires


def test_full_size_meta_spikeformer_keys() -> None:
    ref = RefMetaSpikeFormer((64, 128, 256, 360), 8, 1000)
    assert sum(p.numel() for p in ref.parameters()) == 15_112_208
    assert set(released_keys("sdt2-15m")) == {k for k in ref.state_dict() if not k.endswith("num_batches_tracked")}
    state = ref.state_dict()
    state["head_kd.weight"] = torch.zeros(1000, 360)  # a checkpoint trained with --kd: a second head
    with pytest.raises(ReleasedWeightsError, match=r"unexpected keys \(1\): head_kd.weight"):
        load_released("sdt2-15m", state)
