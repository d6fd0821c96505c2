"""Export what the Neuromorphic Intermediate Representation (NIR) can express of an hstlab network.

NIR describes one time step of a network of Conv/Linear/Affine layers, neurons (LIF, IF, ...),
pooling and flatten, as a graph whose nodes sum every incoming edge. This module writes:

- ``Conv2d``/``Linear``/``Affine`` with the weights the forward pass uses (fake-quantized ones
  when ``weight_bits < 32``), with a following ``BatchNorm`` folded in: ``w' = w·γ/√(σ²+ε)``,
  ``b' = (b - μ)·γ/√(σ²+ε) + β`` (running statistics, i.e. the eval-mode network);
- ``LIF`` for hstlab's LIF and PLIF neurons with a hard reset (see *LIF conventions*);
- max-pooling of spikes as ``SumPool2d`` then ``Threshold(0.5)`` (for 0/1 inputs the max over
  a window is 1 exactly when the sum is > 0.5; zero padding = -inf padding for inputs >= 0);
  ``AvgPool2d`` and ``Flatten`` as themselves.

What NIR cannot express is refused with :class:`NotExpressible`, which names the first such
layer and why (attention products, softmax, LayerNorm, BatchNorm with nothing to fold into,
ReLU, adaptive thresholds, soft reset, fixed-point membranes, max-pooling real values,
positional encodings), or, with ``prefix=True``, the graph stops before it and the result
says where. The spiking SPS stem exports whole (its output node is the Flatten of the
``[D, H', W']`` feature map, i.e. tokens ``[N, D]`` transposed and flattened channel-major).

LIF conventions. hstlab's LIF charges ``H_t = V_{t-1} + (X_t - (V_{t-1} - V_r))/τ``, fires
``S_t = [H_t > θ]`` and resets ``V_t = V_r`` where it fired (``reset="hard"``). NIR's LIF is the
ODE ``τ_N dv/dt = (v_leak - v) + R·I`` with ``z = [v > v_thr]`` and ``v <- v_reset``. Forward-Euler
with step ``dt`` gives ``v_t = v_{t-1} + (dt/τ_N)(v_leak - v_{t-1} + R·I_t)``, which is hstlab's
charge exactly for ``τ_N = τ·dt``, ``v_leak = v_reset = V_r``, ``R = 1`` (``decay_input=False``:
``R = τ``), ``v_thr = θ``. ``dt`` (default 1e-4 s, the step snnTorch's NIR import assumes) is
stored in the graph metadata as ``dt``. hstlab's soft reset (``V_t = H_t - θ S_t``) has no NIR
LIF equivalent and is refused.

Example:
    >>> from hstlab import HSTConfig, build_model
    >>> cfg = HSTConfig.from_preset("tiny", sps_pools=(False, True, False, False))
    >>> result = to_nir(build_model(cfg).eval(), prefix=True)
    >>> result.stopped_at, sorted(result.graph.nodes)[:3]
    ('pos_encoding', ['input', 'output', 'tokenizer.acts.0'])
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hstlab._optional import require
from hstlab.layers.quant import fake_quantize

DEFAULT_DT = 1e-4


class NotExpressible(ValueError):
    """A layer has no NIR equivalent; ``layer`` names it (its module path) and ``reason`` says why."""

    def __init__(self, layer: str, kind: str, reason: str, exported: int = 0) -> None:
        self.layer, self.kind, self.reason, self.exported = layer, kind, reason, exported
        hint = (f"; pass prefix=True (hstlab export-nir --prefix) to export the {exported} node(s) before it"
                if exported else "")
        super().__init__(f"layer {layer!r} ({kind}) cannot be expressed in NIR: {reason}{hint}")


@dataclass
class NIRExport:
    """The exported graph and where the export stopped (``stopped_at`` None: the whole module)."""

    graph: Any  # nir.NIRGraph
    exported: list[str]  # hstlab module names, in order, that became NIR nodes (folded BatchNorms included)
    stopped_at: str | None = None
    reason: str | None = None
    dt: float = DEFAULT_DT
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.stopped_at is None

    def summary(self) -> str:
        kinds = ", ".join(f"{k}: {type(v).__name__}" for k, v in self.graph.nodes.items()
                          if k not in ("input", "output"))
        head = "whole module exported" if self.complete else \
            f"prefix exported; stopped before {self.stopped_at!r}: {self.reason}"
        return f"{head}\nnodes ({len(self.graph.nodes) - 2}): {kinds}\n" + "\n".join(self.notes)


# ------------------------------------------------------------------ graph builder
class _Builder:
    """Grows a NIR graph along a chain of modules; ``shape`` is the per-sample shape at the tip."""

    def __init__(self, nir: Any, input_shape: Sequence[int], dt: float) -> None:
        self.nir, self.dt = nir, dt
        self.nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array(input_shape))}
        self.edges: list[tuple[str, str]] = []
        self.tip, self.shape, self.binary = "input", tuple(int(s) for s in input_shape), False
        self.exported: list[str] = []
        self.notes: list[str] = []

    def add(self, name: str, node: Any, shape: Sequence[int], binary: bool,
            sources: Iterable[str] | None = None) -> None:
        self.nodes[name] = node
        for src in (sources if sources is not None else [self.tip]):
            self.edges.append((src, name))
        self.tip, self.shape, self.binary = name, tuple(int(s) for s in shape), binary

    def graph(self) -> Any:
        self.nodes["output"] = self.nir.Output(output_type=np.array(self.shape))
        self.edges.append((self.tip, "output"))
        return self.nir.NIRGraph(nodes=self.nodes, edges=self.edges, metadata={"dt": self.dt, "producer": "hstlab"},
                                 type_check=False)


def _out_shape(module: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    with torch.no_grad():
        return tuple(module(torch.zeros(1, *shape)).shape[1:])


def _fold(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.Module | None) -> tuple[np.ndarray, np.ndarray]:
    """Weight and bias of ``bn(layer(x))`` (eval-mode BatchNorm folded per output channel)."""
    w = weight.detach().double()
    b = bias.detach().double() if bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    if bn is not None:
        scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
        w = w * scale.view(-1, *([1] * (w.dim() - 1)))
        b = (b - bn.running_mean.double()) * scale + bn.bias.detach().double()
    return w.float().numpy(), b.float().numpy()


def _is_bn(module: nn.Module | None) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def _bn_foldable(bn: nn.Module) -> str | None:
    """Why ``bn`` cannot be folded, or None."""
    if not bn.track_running_stats or bn.running_mean is None:
        return "BatchNorm without running statistics normalises with batch statistics"
    if not bn.affine:
        return "BatchNorm without affine parameters is not supported by the folding here"
    return None


def _neuron_node(nir: Any, name: str, neuron: nn.Module, shape: tuple[int, ...], dt: float) -> Any:
    """A NIR LIF for hstlab's LIF/PLIF (see the module docstring for the conventions)."""
    from hstlab.neurons.lif import ALIF, LIF, PLIF

    kind = type(neuron).__name__
    if isinstance(neuron, ALIF):
        raise NotExpressible(name, kind, "its threshold adapts after each spike (a second state variable); "
                             "NIR's LIF has a fixed threshold")
    if not isinstance(neuron, (LIF, PLIF)):
        raise NotExpressible(name, kind, "only hstlab's LIF and PLIF neurons map to NIR's LIF")
    if neuron.reset != "hard":
        raise NotExpressible(name, kind, "reset='soft' subtracts the threshold after a spike; NIR's LIF resets "
                             "the membrane to v_reset (use reset='hard')")
    if neuron.membrane_bits is not None:
        raise NotExpressible(name, kind, f"membrane_bits={neuron.membrane_bits} stores the membrane in fixed "
                             "point; NIR's LIF has a real-valued membrane")
    if isinstance(neuron, PLIF):
        tau = neuron.tau_learned.double().numpy()  # [1] or [C] (last axis)
        if tau.size == 1:
            tau = np.full(shape, float(tau[0]))
        elif shape[-1] == tau.size:
            tau = np.broadcast_to(tau, shape).copy()
        else:
            raise NotExpressible(name, kind, f"per-channel tau of size {tau.size} does not fit shape {shape}")
    else:
        tau = np.full(shape, neuron.tau)
    ones = np.ones(shape)
    r = ones if neuron.decay_input else tau.copy()
    return nir.LIF(tau=(tau * dt).astype(np.float32), r=r.astype(np.float32),
                   v_leak=(ones * neuron.v_reset).astype(np.float32),
                   v_threshold=(ones * neuron.effective_threshold).astype(np.float32),  # balanced: s·θ
                   v_reset=(ones * neuron.v_reset).astype(np.float32))


def _chain(b: _Builder, items: list[tuple[str, nn.Module]]) -> None:
    """Append ``items`` (name, module) to the graph; raise NotExpressible at the first that cannot be."""
    nir = b.nir
    i = 0
    while i < len(items):
        name, module = items[i]
        kind = type(module).__name__
        nxt = items[i + 1][1] if i + 1 < len(items) else None
        if isinstance(module, nn.Identity):
            i += 1
            continue
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            bn = nxt if _is_bn(nxt) else None
            if bn is not None and (why := _bn_foldable(bn)):
                raise NotExpressible(items[i + 1][0], type(bn).__name__, why)
            weight = fake_quantize(module.weight, getattr(module, "weight_bits", 32))
            w, bias = _fold(weight, module.bias, bn)
            if isinstance(module, nn.Conv2d):
                if module.padding_mode != "zeros" or isinstance(module.padding, str):
                    raise NotExpressible(name, kind, f"padding={module.padding!r}, padding_mode="
                                         f"{module.padding_mode!r}: only integer zero padding is exported")
                node = nir.Conv2d(input_shape=b.shape[1:], weight=w, stride=module.stride, padding=module.padding,
                                  dilation=module.dilation, groups=module.groups, bias=bias)
            else:
                if len(b.shape) != 1:
                    raise NotExpressible(name, kind, f"it is applied to a per-sample shape {b.shape}; NIR's "
                                         "Affine acts on vectors (flatten first)")
                node = nir.Affine(weight=w, bias=bias)
            b.add(name, node, _out_shape(module, b.shape), binary=False)
            b.exported.append(name)
            if bn is not None:
                b.exported.append(items[i + 1][0])
                b.notes.append(f"{items[i + 1][0]} folded into {name}")
                i += 1
            if getattr(module, "weight_bits", 32) < 32:
                b.notes.append(f"{name}: {module.weight_bits}-bit weights exported as their float values")
            i += 1
            continue
        if _is_bn(module):
            raise NotExpressible(name, kind, "NIR has no normalisation node and no Conv/Linear precedes it to "
                                 "fold it into")
        if getattr(module, "is_spiking_neuron", False):
            b.add(name, _neuron_node(nir, name, module, b.shape, b.dt), b.shape, binary=True)
            b.exported.append(name)
            i += 1
            continue
        if isinstance(module, nn.MaxPool2d):
            if not b.binary:
                raise NotExpressible(name, kind, "it max-pools real values (here before the neuron, e.g. "
                                     "sps_pool_first=True); NIR has sum and average pooling only (max-pooling "
                                     "0/1 spikes is exported as SumPool2d + Threshold)")
            if module.dilation not in (1, (1, 1)) or module.ceil_mode:
                raise NotExpressible(name, kind, "dilation or ceil_mode has no NIR pooling equivalent")
            pair = lambda v: np.array(v if isinstance(v, tuple) else (v, v))  # noqa: E731
            out = _out_shape(module, b.shape)
            b.add(f"{name}.sum", nir.SumPool2d(kernel_size=pair(module.kernel_size), stride=pair(module.stride),
                                               padding=pair(module.padding)), out, binary=False)
            b.add(f"{name}.any", nir.Threshold(threshold=np.full(out, 0.5, dtype=np.float32)), out, binary=True)
            b.exported.append(name)
            i += 1
            continue
        if isinstance(module, nn.AvgPool2d):
            pair = lambda v: np.array(v if isinstance(v, tuple) else (v, v))  # noqa: E731
            if module.ceil_mode or not module.count_include_pad or module.divisor_override:
                raise NotExpressible(name, kind, "ceil_mode, count_include_pad=False or divisor_override differ "
                                     "from NIR's AvgPool2d")
            b.add(name, nir.AvgPool2d(kernel_size=pair(module.kernel_size), stride=pair(module.stride),
                                      padding=pair(module.padding)), _out_shape(module, b.shape), binary=False)
            b.exported.append(name)
            i += 1
            continue
        if isinstance(module, nn.Flatten):
            start = module.start_dim - 1 if module.start_dim > 0 else module.start_dim  # NIR: no batch axis
            end = module.end_dim - 1 if module.end_dim > 0 else module.end_dim
            b.add(name, nir.Flatten(input_type={"input": np.array(b.shape)}, start_dim=start, end_dim=end),
                  _out_shape(module, b.shape), binary=b.binary)
            b.exported.append(name)
            i += 1
            continue
        if isinstance(module, (nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid)):
            raise NotExpressible(name, kind, "NIR has no rectifier or other static non-linearity (only neurons "
                                 "and Threshold); a standard (non-spiking) layer cannot be exported")
        if isinstance(module, nn.LayerNorm):
            raise NotExpressible(name, kind, "LayerNorm normalises with statistics of each input; NIR has no "
                                 "normalisation node")
        raise NotExpressible(name, kind, "no NIR node expresses this layer")


# ------------------------------------------------------------------ hstlab modules
def _stem_items(stem: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    items: list[tuple[str, nn.Module]] = []
    for i in range(len(stem.convs)):
        stage = [("convs", stem.convs[i]), ("norms", stem.norms[i])]
        act, pool = ("acts", stem.acts[i]), ("pools", stem.pools[i])
        stage += [pool, act] if stem.pool_first else [act, pool]
        items += [(f"{prefix}{part}.{i}", m) for part, m in stage]
    return items


def _export_stem(b: _Builder, stem: nn.Module, prefix: str) -> None:
    from hstlab.layers.tokenizers import SpikingPatchSplitting

    if not isinstance(stem, SpikingPatchSplitting):
        raise NotExpressible(prefix.rstrip(".") or "tokenizer", type(stem).__name__,
                             "only the SPS (conv) stem is exported; the event tokenizer selects non-empty patches "
                             "and the linear tokenizer embeds sequences, neither has a NIR form here")
    if stem.membrane_tokens:
        raise NotExpressible(f"{prefix}convs.{len(stem.convs) - 1}", "SDT stem",
                             "residual='membrane' keeps the last stage real-valued and adds the RPE to it before "
                             "any neuron; exported stems end in spikes")
    _chain(b, _stem_items(stem, prefix))
    trunk = b.tip
    _chain(b, [(f"{prefix}rpe_conv", stem.rpe_conv), (f"{prefix}rpe_norm", stem.rpe_norm),
               (f"{prefix}rpe_act", stem.rpe_act)])
    # tokens = trunk + RPE spikes: both edges enter the Flatten node, which sums them (NIR semantics)
    b.add(f"{prefix}tokens", b.nir.Flatten(input_type={"input": np.array(b.shape)}, start_dim=0, end_dim=-1),
          (math.prod(b.shape),), binary=False, sources=[trunk, b.tip])
    b.notes.append(f"{prefix}tokens = Flatten({trunk} + {b.edges[-1][0]}): the [D, H', W'] feature map "
                   "flattened channel-major (hstlab's tokens [N, D], transposed)")


def _attention_reason(block: nn.Module, i: int) -> NotExpressible:
    half = block.attn
    if block.layer.attn_mode == "standard":
        return NotExpressible(f"blocks.{i}.attn.pre", type(half.pre).__name__,
                              "a standard attention half normalises with LayerNorm and mixes tokens with softmax "
                              "attention; NIR has neither normalisation nor softmax")
    kind = block.layer.attention_kind
    return NotExpressible(f"blocks.{i}.attn.branch", type(half.branch).__name__,
                          f"{kind} attention multiplies activations with activations (Q, K, V products); NIR "
                          "nodes only weight their input by fixed parameters")


def _export_hstnet(b: _Builder, model: nn.Module) -> None:
    if getattr(model, "embeds", None) is not None:  # hstlab.staged
        raise NotExpressible("embeds", "ModuleList", "a staged model (config stages): its per-stage patch "
                             "embeddings are not exported to NIR, and its attention stages multiply "
                             "activations with activations, which NIR nodes cannot")
    _export_stem(b, model.tokenizer, "tokenizer.")
    if not isinstance(model.pos_encoding, nn.Identity):
        raise NotExpressible("pos_encoding", type(model.pos_encoding).__name__,
                             f"pos_encoding={model.cfg.pos_encoding!r} adds a position-dependent signal to the "
                             "tokens in hstlab's [N, D] layout; NIR has no node that adds a constant or "
                             "oscillating input")
    if len(model.blocks):
        raise _attention_reason(model.blocks[0], 0)
    raise NotExpressible("head", type(model.head).__name__, "the head averages tokens over time steps")


def to_nir(module: nn.Module, input_shape: Sequence[int] | None = None, *, prefix: bool = False,
           dt: float = DEFAULT_DT) -> NIRExport:
    """NIR graph of ``module`` (an ``HSTNet``, its SPS stem, or an ``nn.Sequential`` of supported layers).

    ``input_shape`` is one sample's per-step shape (``(C, H, W)``; taken from ``model.cfg`` for an
    HSTNet). Export the model in eval mode: BatchNorm is folded with its running statistics.
    Raises :class:`NotExpressible` at the first layer NIR cannot express unless ``prefix``,
    which returns the graph up to that layer with ``stopped_at`` / ``reason`` set (refused
    also when nothing at all could be exported).
    """
    nir = require("nir", "NIR export")
    from hstlab.layers.tokenizers import SpikingPatchSplitting
    from hstlab.model import HSTNet

    if not isinstance(dt, (int, float)) or isinstance(dt, bool) or not dt > 0 or not math.isfinite(dt):
        raise ValueError(f"dt={dt!r} must be a number > 0 (seconds per hstlab time step)")
    if input_shape is None:
        cfg = getattr(module, "cfg", None)
        if cfg is None:
            raise ValueError(f"input_shape=None: give the per-sample, per-step input shape for a "
                             f"{type(module).__name__} (e.g. (2, 34, 34))")
        input_shape = cfg.input_shape
    b = _Builder(nir, input_shape, float(dt))
    try:
        if isinstance(module, HSTNet):
            _export_hstnet(b, module)
        elif isinstance(module, SpikingPatchSplitting):
            _export_stem(b, module, "")
        elif isinstance(module, nn.Sequential):
            _chain(b, [(n, m) for n, m in module.named_children()])
        else:
            raise NotExpressible("", type(module).__name__, "export an HSTNet, its SPS stem or an nn.Sequential")
    except NotExpressible as exc:
        if not prefix or not b.exported:
            exc.exported = len(b.exported) if not prefix else 0
            raise NotExpressible(exc.layer, exc.kind, exc.reason, exc.exported) from None
        return NIRExport(b.graph(), b.exported, exc.layer, exc.reason, float(dt), b.notes)
    return NIRExport(b.graph(), b.exported, None, None, float(dt), b.notes)


def export_nir(source: nn.Module | str | os.PathLike, out: str | os.PathLike, *, prefix: bool = False,
               stem: bool = False, dt: float = DEFAULT_DT) -> NIRExport:
    """Write ``source`` (a model, or a run directory / checkpoint loaded with its best model) to ``out``.

    ``stem=True`` exports only the model's tokenizer (the SPS stem). See :func:`to_nir`.

    Example:
        >>> result = export_nir("runs/tiny-digits-dvs", "stem.nir", stem=True)  # doctest: +SKIP
    """
    nir = require("nir", "NIR export")
    if isinstance(source, (str, os.PathLike)):
        from hstlab.train import load_checkpoint

        path = Path(source)
        if not path.exists():
            raise ValueError(f"run_dir={str(path)!r} does not exist (give a run directory or a checkpoint file)")
        model, _, _ = load_checkpoint(path)
    else:
        model = source
    model.eval()
    input_shape = model.cfg.input_shape if hasattr(model, "cfg") else None
    result = to_nir(model.tokenizer if stem else model, input_shape, prefix=prefix, dt=dt)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    nir.write(str(out), result.graph)
    return result
