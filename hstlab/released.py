"""Load the weights the Spikformer, Spike-driven Transformer (V1, V2) and QKFormer authors released.

The released repositories build their models with separate 1x1 convolutions for Q, K and V,
BatchNorm after every convolution and SpikingJelly LIF neurons. hstlab's presets
``spikformer-dvs-2-256`` and ``sdt-dvs-2-256`` compute the same functions, so a released state
dict converts by renaming keys:

- Q, K, V: the three 1x1 conv weights ``[D, D, 1(, 1)]`` stack into hstlab's fused projection
  ``[3D, D]`` (one GEMM, one BatchNorm, one neuron call); their BatchNorms stack the same way;
- every other 1x1 conv (attention output, MLP) becomes a ``Linear`` (the kernel axes dropped);
- the stem's 3x3 convs, every BatchNorm's weight, bias and running statistics and the
  classifier are copied as they are;
- parameters the released forward never reads are ignored: Spikformer's position embedding and
  LayerNorms (``pos_embed``, ``block.*.norm1/norm2``, ``norm``), SDT's ``talking_heads`` conv.

QKFormer's staged presets ``qkformer-dvs`` / ``qkformer-dvs128`` map the same way stage by stage
(:func:`qkformer_mappings`: its SPEDS patch embeddings' convs and BatchNorms are copied, Q and K
(and V) stack, its Conv1d/Conv2d 1x1 projections become ``Linear``); its forward uses every
parameter it has.
Meta-SpikeFormer (Spike-driven Transformer V2) loads into ``sdt2-15m`` (:func:`sdt2_mappings`: its
RepConv projections map part by part onto hstlab's :class:`hstlab.staged.RepConv`); a checkpoint
trained with knowledge distillation carries a second head (``head_kd``), which its forward averages
in, and is refused.

The firing rule matters: SpikingJelly fires on ``H >= θ``, and the presets do too. A state
dict that does not fit (another class count, another architecture, a truncated file) raises
:class:`ReleasedWeightsError` naming the missing keys, the unexpected keys and the shapes
that differ.

Example:
    >>> import torch
    >>> from hstlab.released import load_released, released_keys
    >>> shapes = released_keys("spikformer-dvs-2-256", n_embd=32, n_head=4)
    >>> state = {key: torch.zeros(shape) for key, shape in shapes.items()}
    >>> model = load_released("spikformer-dvs-2-256", state, n_embd=32, n_head=4)
    >>> model.cfg.firing_rule, model.training
    ('>=', False)
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hstlab.config import HSTConfig
from hstlab.model import HSTNet, build_model
from hstlab.registry import Registry

BN_PARTS = ("weight", "bias", "running_mean", "running_var")
STEM_SUFFIXES = ("", "1", "2", "3")  # patch_embed.proj_conv{suffix}: the four stem stages


class ReleasedWeightsError(ValueError):
    """A state dict that does not fit the preset; lists what is missing, extra and mis-shaped."""

    def __init__(self, preset: str, missing: list[str], unexpected: list[str],
                 mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]], hint: str = "") -> None:
        self.preset, self.missing, self.unexpected, self.mismatched = preset, missing, unexpected, mismatched
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_short(unexpected)}")
        if mismatched:
            shown = [f"{k} has {list(got)}, expected {list(want)}" for k, got, want in mismatched]
            parts.append(f"mismatched shapes ({len(mismatched)}): {_short(shown)}")
        super().__init__(f"state dict does not fit preset {preset!r}: " + "; ".join(parts) + hint)


def _short(items: list[str], limit: int = 8) -> str:
    return ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


@dataclass(frozen=True)
class KeyMap:
    """hstlab key ``target`` from the released keys ``sources`` (stacked on dim 0 if several)."""

    target: str
    sources: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]  # the released shape of each source
    conv1x1: bool = False  # the sources are 1x1 conv weights [out, in, 1(, 1)]: drop the kernel axes


@dataclass(frozen=True)
class ReleasedLayout:
    """How one preset's released state dict is laid out."""

    kernel: tuple[int, ...]  # trailing axes of a released 1x1 conv weight: (1,) Conv1d, (1, 1) Conv2d
    ignored: Callable[[HSTConfig], dict[str, tuple[int, ...] | None]]  # unused keys (None: any shape)
    source: str  # where the layout comes from, for messages
    mappings: Callable[[HSTConfig], list[KeyMap]] | None = None  # None: key_mappings(cfg, kernel)

    def key_maps(self, cfg: HSTConfig) -> list[KeyMap]:
        """Every hstlab key of ``cfg``'s model and the released keys it is made from."""
        return self.mappings(cfg) if self.mappings is not None else key_mappings(cfg, self.kernel)


def _spikformer_ignored(cfg: HSTConfig) -> dict[str, tuple[int, ...] | None]:
    keys: dict[str, tuple[int, ...] | None] = {"pos_embed": None, "norm.weight": (cfg.n_embd,),
                                               "norm.bias": (cfg.n_embd,)}
    for i in range(cfg.n_layer):
        for norm in ("norm1", "norm2"):
            keys.update({f"block.{i}.{norm}.{p}": (cfg.n_embd,) for p in ("weight", "bias")})
    return keys


def _sdt_ignored(cfg: HSTConfig) -> dict[str, tuple[int, ...] | None]:
    return {f"block.{i}.attn.talking_heads.weight": (cfg.n_head, cfg.n_head, 1) for i in range(cfg.n_layer)}


RELEASED: Registry[ReleasedLayout] = Registry("released preset")
RELEASED.register("spikformer-dvs-2-256")(
    ReleasedLayout((1,), _spikformer_ignored, "ZK-Zhou/spikformer (cifar10dvs, dvs128-gesture model.py)"))
RELEASED.register("sdt-dvs-2-256")(
    ReleasedLayout((1, 1), _sdt_ignored, "BICLab/Spike-Driven-Transformer (model/spikeformer.py)"))


def _bn_maps(target: str, source: str, width: int) -> list[KeyMap]:
    return [KeyMap(f"{target}.{part}", (f"{source}.{part}",), ((width,),)) for part in BN_PARTS]


QKFORMER_ATTENTION = {"qk": ("tssa", "qk"), "ssa": ("ssa", "qkv")}  # kind -> (released module, projections)


def qkformer_mappings(cfg: HSTConfig) -> list[KeyMap]:
    """QKFormer's released DVS model (``vit_snn``): ``patch_embed{i+1}`` and ``stage{i+1}.{j}`` per stage.

    Stage 0's SPEDS stem is ``PatchEmbedInit`` (``proj{"",1,2,3}_conv/_bn``, ``proj_res_conv/_bn``),
    a later one ``PatchEmbeddingStage`` (``proj_conv``, ``proj4_conv``, ``proj_res_conv``); the
    attention is ``tssa`` (token Q-K attention: Conv1d q, k) or ``ssa`` (Conv1d q, k, v), each with
    a Conv1d ``proj_conv`` with bias; the MLP is Conv2d ``mlp1_conv`` / ``mlp2_conv`` with biases.
    """
    maps: list[KeyMap] = []
    start = 0
    for i, stage in enumerate(cfg.stages):
        if stage.embed != "speds" or stage.kind != "transformer" or stage.projection != "linear":
            raise ValueError(f"stages[{i}]: the released QKFormer has SPEDS embeddings and linear-projection "
                             f"transformer stages, got embed={stage.embed!r}, kind={stage.kind!r}, "
                             f"projection={stage.projection!r}")
        d, src, dst = stage.n_embd, f"patch_embed{i + 1}", f"embeds.{i}"
        c_in = cfg.input_shape[0] if i == 0 else cfg.stages[i - 1].n_embd
        if i == 0:
            widths = [max(1, d // 8), max(1, d // 4), max(1, d // 2), d]
            names, res_in = [f"proj{s}" for s in STEM_SUFFIXES], widths[1]
        else:
            widths, names, res_in = [d, d], ["proj", "proj4"], c_in
        for j, (name, a, b) in enumerate(zip(names, [c_in, *widths[:-1]], widths)):
            maps.append(KeyMap(f"{dst}.convs.{j}.weight", (f"{src}.{name}_conv.weight",), ((b, a, 3, 3),)))
            maps += _bn_maps(f"{dst}.norms.{j}", f"{src}.{name}_bn", b)
        maps.append(KeyMap(f"{dst}.res_conv.weight", (f"{src}.proj_res_conv.weight",), ((d, res_in, 1, 1),)))
        maps += _bn_maps(f"{dst}.res_norm", f"{src}.proj_res_bn", d)
        hidden = int(d * (cfg.mlp_ratio if stage.mlp_ratio is None else stage.mlp_ratio))
        for j in range(stage.depth):
            layer = cfg.layer(start + j)
            if layer.attention_kind not in QKFORMER_ATTENTION or layer.mlp_mode != "spiking":
                raise ValueError(f"layers[{start + j}]: the released QKFormer has spiking token Q-K attention "
                                 f"(qk) or SSA blocks, got attention={layer.attention_kind!r}, "
                                 f"mlp_mode={layer.mlp_mode!r}")
            module, parts = QKFORMER_ATTENTION[layer.attention_kind]
            b_src, b_dst = f"stage{i + 1}.{j}", f"blocks.{start + j}"
            a_src, a_dst = f"{b_src}.{module}", f"{b_dst}.attn.branch"
            sources = tuple(f"{a_src}.{p}_conv.weight" for p in parts)
            maps.append(KeyMap(f"{a_dst}.qkv.linear.weight", sources, tuple((d, d, 1) for _ in parts), conv1x1=True))
            for part in BN_PARTS:
                maps.append(KeyMap(f"{a_dst}.qkv.norm.{part}", tuple(f"{a_src}.{p}_bn.{part}" for p in parts),
                                   tuple((d,) for _ in parts)))
            maps.append(KeyMap(f"{a_dst}.proj.weight", (f"{a_src}.proj_conv.weight",), ((d, d, 1),), conv1x1=True))
            maps.append(KeyMap(f"{a_dst}.proj.bias", (f"{a_src}.proj_conv.bias",), ((d,),)))
            maps += _bn_maps(f"{a_dst}.proj_norm", f"{a_src}.proj_bn", d)
            for k, (n_out, n_in) in enumerate(((hidden, d), (d, hidden)), start=1):
                m_src, m_dst = f"{b_src}.mlp.mlp{k}", f"{b_dst}.mlp.branch"
                maps.append(KeyMap(f"{m_dst}.fc{k}.weight", (f"{m_src}_conv.weight",), ((n_out, n_in, 1, 1),),
                                   conv1x1=True))
                maps.append(KeyMap(f"{m_dst}.fc{k}.bias", (f"{m_src}_conv.bias",), ((n_out,),)))
                maps += _bn_maps(f"{m_dst}.norm{k}", f"{m_src}_bn", n_out)
        start += stage.depth
    maps.append(KeyMap("head.weight", ("head.weight",), ((cfg.num_classes, cfg.n_embd),)))
    maps.append(KeyMap("head.bias", ("head.bias",), ((cfg.num_classes,),)))
    return maps


SDT2_EMBEDS = ("downsample1_1", "downsample1_2", "downsample2", "downsample3", "downsample4")
SDT2_BLOCKS = (("ConvBlock1_1",), ("ConvBlock1_2",), ("ConvBlock2_1", "ConvBlock2_2"), ("block3",) * 6, ("block4",) * 2)
SDT2_KINDS = ("conv", "conv", "conv", "transformer", "transformer")


def _rep_conv_maps(target: str, source: str, d: int) -> list[KeyMap]:
    """Meta-SpikeFormer's ``Sequential(RepConv(d, d), BatchNorm2d(d))`` at ``source`` into hstlab's
    RepConv at ``target`` (its outer BatchNorm is mapped by the caller)."""
    body = f"{source}.body"
    return [KeyMap(f"{target}.conv1.weight", (f"{body}.0.weight",), ((d, d, 1, 1),), conv1x1=True),
            *_bn_maps(f"{target}.norm1", f"{body}.1.bn", d),
            KeyMap(f"{target}.dwconv.weight", (f"{body}.2.0.weight",), ((d, 1, 3, 3),)),
            KeyMap(f"{target}.conv2.weight", (f"{body}.2.1.weight",), ((d, d, 1, 1),), conv1x1=True),
            *_bn_maps(f"{target}.norm2", f"{body}.2.2", d)]


def sdt2_mappings(cfg: HSTConfig) -> list[KeyMap]:
    """Meta-SpikeFormer's released ``Spiking_vit_MetaFormer`` (BICLab/Spike-Driven-Transformer-V2,
    classification/models.py): five ``downsample*`` convs, conv blocks ``ConvBlock{1_1,1_2,2_1,2_2}.0``
    (``Conv`` = the separable conv, ``conv1``/``conv2`` the 3x3 MLP), transformer blocks
    ``block3.{0-5}`` and ``block4.{0,1}`` (RepConv ``q_conv``/``k_conv``/``v_conv``/``proj_conv``,
    Conv1d ``fc1_conv``/``fc2_conv``). Its released layout fixes the stage pattern: depths 1, 1, 2,
    6, 2; three conv stages, two RepConv transformer stages.
    """
    depths = tuple(len(b) for b in SDT2_BLOCKS)
    got = tuple((s.depth, s.kind, s.embed) for s in cfg.stages)
    want = tuple((d, k, "conv") for d, k in zip(depths, SDT2_KINDS))
    if got != want or any(s.projection != "repconv" for s in cfg.stages[3:]):
        raise ValueError(f"stages: the released Meta-SpikeFormer has stages (depth, kind, embed) {want} with "
                         f"repconv projections in the transformer stages, got {got}")
    maps: list[KeyMap] = []
    index = 0
    for i, (stage, names) in enumerate(zip(cfg.stages, SDT2_BLOCKS)):
        d, src = stage.n_embd, SDT2_EMBEDS[i]
        c_in = cfg.input_shape[0] if i == 0 else cfg.stages[i - 1].n_embd
        k = stage.embed_kernel
        maps.append(KeyMap(f"embeds.{i}.conv.weight", (f"{src}.encode_conv.weight",), ((d, c_in, k, k),)))
        maps.append(KeyMap(f"embeds.{i}.conv.bias", (f"{src}.encode_conv.bias",), ((d,),)))
        maps += _bn_maps(f"embeds.{i}.norm", f"{src}.encode_bn", d)
        hidden = int(d * (cfg.mlp_ratio if stage.mlp_ratio is None else stage.mlp_ratio))
        for j, name in enumerate(names):
            layer = cfg.layer(index)
            if layer.attn_mode != "spiking" or layer.mlp_mode != "spiking" or layer.residual != "membrane":
                raise ValueError(f"layers[{index}]: the released Meta-SpikeFormer has spiking halves with the "
                                 f"membrane shortcut, got {layer.attn_mode!r}/{layer.mlp_mode!r}, {layer.residual!r}")
            b_src = f"{name}.{j if name.startswith('block') else 0}"
            b_dst = f"blocks.{index}"
            if stage.kind == "conv":
                mix, med = f"{b_dst}.attn.branch", 2 * d
                maps += [KeyMap(f"{mix}.pw1.weight", (f"{b_src}.Conv.pwconv1.weight",), ((med, d, 1, 1),),
                                conv1x1=True),
                         *_bn_maps(f"{mix}.norm1", f"{b_src}.Conv.bn1", med),
                         KeyMap(f"{mix}.dwconv.weight", (f"{b_src}.Conv.dwconv.weight",), ((med, 1, 7, 7),)),
                         KeyMap(f"{mix}.pw2.weight", (f"{b_src}.Conv.pwconv2.weight",), ((d, med, 1, 1),),
                                conv1x1=True),
                         *_bn_maps(f"{mix}.norm2", f"{b_src}.Conv.bn2", d)]
                mlp = f"{b_dst}.mlp.branch"
                maps += [KeyMap(f"{mlp}.conv1.weight", (f"{b_src}.conv1.weight",), ((hidden, d, 3, 3),)),
                         *_bn_maps(f"{mlp}.norm1", f"{b_src}.bn1", hidden),
                         KeyMap(f"{mlp}.conv2.weight", (f"{b_src}.conv2.weight",), ((d, hidden, 3, 3),)),
                         *_bn_maps(f"{mlp}.norm2", f"{b_src}.bn2", d)]
            else:
                attn = f"{b_dst}.attn.branch"
                for p, part in enumerate("qkv"):
                    maps += _rep_conv_maps(f"{attn}.qkv.convs.{p}", f"{b_src}.attn.{part}_conv.0", d)
                    maps += _bn_maps(f"{attn}.qkv.norms.{p}", f"{b_src}.attn.{part}_conv.1", d)
                maps += _rep_conv_maps(f"{attn}.proj", f"{b_src}.attn.proj_conv.0", d)
                maps += _bn_maps(f"{attn}.proj_norm", f"{b_src}.attn.proj_conv.1", d)
                for m, (n_out, n_in) in enumerate(((hidden, d), (d, hidden)), start=1):
                    maps.append(KeyMap(f"{b_dst}.mlp.branch.fc{m}.weight", (f"{b_src}.mlp.fc{m}_conv.weight",),
                                       ((n_out, n_in, 1),), conv1x1=True))
                    maps.append(KeyMap(f"{b_dst}.mlp.branch.fc{m}.bias", (f"{b_src}.mlp.fc{m}_conv.bias",),
                                       ((n_out,),)))
                    maps += _bn_maps(f"{b_dst}.mlp.branch.norm{m}", f"{b_src}.mlp.fc{m}_bn", n_out)
            index += 1
    maps.append(KeyMap("head.weight", ("head.weight",), ((cfg.num_classes, cfg.n_embd),)))
    maps.append(KeyMap("head.bias", ("head.bias",), ((cfg.num_classes,),)))
    return maps


RELEASED.register("sdt2-15m")(ReleasedLayout((1, 1), lambda cfg: {}, "BICLab/Spike-Driven-Transformer-V2 "
                                             "(classification/models.py)", mappings=sdt2_mappings))

for _name in ("qkformer-dvs", "qkformer-dvs128"):
    RELEASED.register(_name)(ReleasedLayout((1,), lambda cfg: {}, "zhouchenlin2096/QKFormer (cifar10-dvs, "
                                            "dvs128-gesture model.py)", mappings=qkformer_mappings))


def released_config(preset: str, **overrides: Any) -> HSTConfig:
    """The preset's config with ``overrides`` (``n_layer`` changes the depth as ``with_depth``)."""
    if preset not in RELEASED:
        raise ValueError(f"preset={preset!r} has no released-weights converter; allowed: "
                         f"{', '.join(RELEASED.names())}")
    depth, stages = overrides.pop("n_layer", None), overrides.pop("stages", None)
    cfg = HSTConfig.from_preset(preset)
    if depth is not None:
        cfg = cfg.with_depth(depth)
    if stages is not None:  # a staged preset's stages (sets n_layer, n_embd and n_head with them)
        cfg = cfg.with_stages(stages)
    return HSTConfig.from_dict({**cfg.to_dict(), **overrides}) if overrides else cfg  # JSON lists welcome


def key_mappings(cfg: HSTConfig, kernel: tuple[int, ...]) -> list[KeyMap]:
    """Every hstlab key of ``cfg``'s model and the released keys (and shapes) it is made from."""
    maps: list[KeyMap] = []
    d, hidden = cfg.n_embd, int(cfg.n_embd * cfg.mlp_ratio)
    inner = cfg.sps_channels or (max(1, d // 8), max(1, d // 4), max(1, d // 2))
    widths, c_in = [*inner, d], [cfg.input_shape[0], *inner]

    def bn(target: str, sources: list[str], width: int) -> None:
        for part in BN_PARTS:
            maps.append(KeyMap(f"{target}.{part}", tuple(f"{s}.{part}" for s in sources),
                                 tuple((width,) for _ in sources)))

    for j, suffix in enumerate(STEM_SUFFIXES):
        maps.append(KeyMap(f"tokenizer.convs.{j}.weight", (f"patch_embed.proj_conv{suffix}.weight",),
                             ((widths[j], c_in[j], 3, 3),)))
        bn(f"tokenizer.norms.{j}", [f"patch_embed.proj_bn{suffix}"], widths[j])
    maps.append(KeyMap("tokenizer.rpe_conv.weight", ("patch_embed.rpe_conv.weight",), ((d, d, 3, 3),)))
    bn("tokenizer.rpe_norm", ["patch_embed.rpe_bn"], d)
    for i in range(cfg.n_layer):
        src, dst = f"block.{i}", f"blocks.{i}"
        qkv = [f"{src}.attn.{p}_conv.weight" for p in "qkv"]
        maps.append(KeyMap(f"{dst}.attn.branch.qkv.linear.weight", tuple(qkv), tuple((d, d, *kernel) for _ in qkv),
                           conv1x1=True))
        bn(f"{dst}.attn.branch.qkv.norm", [f"{src}.attn.{p}_bn" for p in "qkv"], d)
        linears = (("attn.proj_conv", "attn.branch.proj", d, d), ("mlp.fc1_conv", "mlp.branch.fc1", hidden, d),
                   ("mlp.fc2_conv", "mlp.branch.fc2", d, hidden))
        for name, target, n_out, n_in in linears:
            maps.append(KeyMap(f"{dst}.{target}.weight", (f"{src}.{name}.weight",), ((n_out, n_in, *kernel),),
                               conv1x1=True))
            maps.append(KeyMap(f"{dst}.{target}.bias", (f"{src}.{name}.bias",), ((n_out,),)))
        bn(f"{dst}.attn.branch.proj_norm", [f"{src}.attn.proj_bn"], d)
        bn(f"{dst}.mlp.branch.norm1", [f"{src}.mlp.fc1_bn"], hidden)
        bn(f"{dst}.mlp.branch.norm2", [f"{src}.mlp.fc2_bn"], d)
    maps.append(KeyMap("head.weight", ("head.weight",), ((cfg.num_classes, d),)))
    maps.append(KeyMap("head.bias", ("head.bias",), ((cfg.num_classes,),)))
    return maps


def released_keys(preset: str, **overrides: Any) -> dict[str, tuple[int, ...]]:
    """Every key (and shape) the released model of ``preset`` has and its forward reads.

    BatchNorms also carry ``num_batches_tracked``, which is accepted but not needed.

    Example:
        >>> keys = released_keys("sdt-dvs-2-256")
        >>> keys["block.0.attn.q_conv.weight"], len(keys)
        ((256, 256, 1, 1), 93)
    """
    cfg = released_config(preset, **overrides)
    return {src: shape for m in RELEASED.get(preset).key_maps(cfg)
            for src, shape in zip(m.sources, m.shapes)}


def unwrap_state_dict(obj: Any, name: str = "state_dict") -> dict[str, torch.Tensor]:
    """The model state dict inside a released checkpoint: the dict itself, or its ``'model'`` or
    ``'state_dict'`` entry; a ``module.`` prefix (DistributedDataParallel) is removed."""
    if isinstance(obj, Mapping):
        for wrapper in ("model", "state_dict"):
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{name} must be a non-empty dict of tensors (or a checkpoint holding one under "
                         f"'model' or 'state_dict'), got {type(obj).__name__}")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{name}: entries {_short(bad)} are not tensors under string keys")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def read_released(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a released ``.pth``/``.pth.tar`` file safely (``weights_only=True``; of other classes only
    ``argparse.Namespace``, which the released trainers save next to the weights) and unwrap it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"file {str(path)!r} does not exist")
    try:  # the released training scripts also store their argparse options: allow that one class
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickle and zip errors alike: not a readable torch file
        raise ValueError(f"file {str(path)!r} is not a torch state dict readable with weights_only=True "
                         f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from err
    return unwrap_state_dict(obj, name=f"file {str(path)!r}")


def convert_state_dict(preset: str, state_dict: Mapping[str, torch.Tensor],
                       **overrides: Any) -> tuple[HSTConfig, dict[str, torch.Tensor]]:
    """``(cfg, hstlab state dict)`` from a released state dict; raises :class:`ReleasedWeightsError`."""
    cfg = released_config(preset, **overrides)
    layout = RELEASED.get(preset)
    given = unwrap_state_dict(state_dict)
    maps = layout.key_maps(cfg)
    expected = {src: shape for m in maps for src, shape in zip(m.sources, m.shapes)}
    optional = layout.ignored(cfg)
    tracked = {k.rsplit(".", 1)[0] + ".num_batches_tracked" for k in expected if k.endswith(".running_mean")}
    missing = [k for k in expected if k not in given]
    unexpected = sorted(k for k in given if k not in expected and k not in optional and k not in tracked)
    mismatched = [(k, tuple(given[k].shape), want) for k, want in expected.items()
                  if k in given and tuple(given[k].shape) != want]
    mismatched += [(k, tuple(given[k].shape), want) for k, want in optional.items()
                   if want is not None and k in given and tuple(given[k].shape) != want]
    if missing or unexpected or mismatched:
        raise ReleasedWeightsError(preset, missing, unexpected, mismatched, _hint(given, cfg))
    converted: dict[str, torch.Tensor] = {}
    for m in maps:
        parts = [given[s].detach().to("cpu", torch.float32) for s in m.sources]
        if m.conv1x1:  # [out, in, 1(, 1)] -> Linear [out, in]
            parts = [p.reshape(p.shape[0], p.shape[1]) for p in parts]
        converted[m.target] = torch.cat(parts) if len(parts) > 1 else parts[0].clone()
        if m.target.endswith(".running_mean"):  # the count travels with the statistics (q's for Q/K/V)
            count = given.get(m.sources[0].rsplit(".", 1)[0] + ".num_batches_tracked")
            base = m.target.rsplit(".", 1)[0]
            converted[f"{base}.num_batches_tracked"] = (count.detach().to("cpu", torch.long).reshape(())
                                                        if count is not None else torch.tensor(0))
    return cfg, converted


def _hint(given: Mapping[str, torch.Tensor], cfg: HSTConfig) -> str:
    """A suggestion when the file is another size of the same architecture."""
    hints = []
    mlp = given.get("stage1.0.mlp.mlp1_conv.weight")  # QKFormer: the MLP ratio tells the two DVS files apart
    if cfg.stages and mlp is not None and mlp.dim() == 4 and mlp.shape[1] == cfg.stages[0].n_embd:
        ratio = mlp.shape[0] / mlp.shape[1]
        if ratio != (cfg.stages[0].mlp_ratio or cfg.mlp_ratio):
            hints.append(f"the file's MLP ratio is {ratio:g}: qkformer-dvs has 1, qkformer-dvs128 4")
    head = given.get("head.weight")
    if head is not None and head.dim() == 2 and head.shape[1] == cfg.n_embd and head.shape[0] != cfg.num_classes:
        hints.append(f"the file classifies {head.shape[0]} classes: pass num_classes={head.shape[0]}")
    return f" ({'; '.join(hints)})" if hints else ""


def load_released(preset: str, state_dict: Mapping[str, torch.Tensor], **overrides: Any) -> HSTNet:
    """An eval-mode hstlab model computing what the released model of ``preset`` computes.

    ``state_dict``: the released repository's model state dict (or its checkpoint, holding it
    under ``'model'`` or ``'state_dict'``). ``overrides``: config fields, e.g. ``num_classes=10``
    for Spikformer's CIFAR10-DVS file. Presets: ``spikformer-dvs-2-256``, ``sdt-dvs-2-256``,
    ``qkformer-dvs`` (CIFAR10-DVS), ``qkformer-dvs128`` (DVS128 Gesture) and ``sdt2-15m``.

    Example:
        >>> import torch
        >>> state = {k: torch.zeros(s) for k, s in released_keys("sdt-dvs-2-256").items()}
        >>> del state["head.bias"]
        >>> load_released("sdt-dvs-2-256", state)
        Traceback (most recent call last):
        ...
        hstlab.released.ReleasedWeightsError: state dict does not fit preset 'sdt-dvs-2-256': missing keys (1): head.bias
    """
    cfg, converted = convert_state_dict(preset, state_dict, **overrides)
    model = build_model(cfg)
    extra = sorted(set(model.state_dict()) - set(converted))
    if extra:  # e.g. pos_encoding="learned" or neuron="plif": parameters the released model lacks
        raise ValueError(f"overrides {sorted(overrides)} give preset {preset!r} parameters the released model "
                         f"does not have: {_short(extra)}; drop those overrides")
    model.load_state_dict(converted, strict=True)
    return model.eval()
