"""Operation and memory-traffic counting with forward hooks, one counter per module type.

Each counter matches a module type, hooks it, and adds what one forward call costs to a
:class:`LayerTally`: MACs and ACs for the whole batch, the time steps the layer ran per sample
(and the calls: together they give the weight reads of each dataflow), and activation, spike and
membrane traffic in bits, with the part a fused epilogue would keep in registers
(:mod:`hstlab.energy.epilogue`). Counters are chosen through the ``COUNTERS`` registry, first match
wins, in registration order.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from hstlab.energy.constants import ELEMENTWISE_ACS, ELEMENTWISE_MACS, EPILOGUE_KINDS
from hstlab.energy.epilogue import EpilogueTracker
from hstlab.energy.neurons import NeuronAdapter, adapter_for
from hstlab.energy.products import PRODUCT_OPS, SOFTMAX_MACS, Priced
from hstlab.energy.provenance import COUNTS, REAL, SIGNED, SPIKES, WEIGHT, Provenance, events
from hstlab.energy.stats import cached, nnz, total
from hstlab.registry import Registry

Hook = Callable[..., None]


@dataclass
class LayerTally:
    """Everything counted for one module over the measuring forward (whole batch unless noted)."""

    name: str
    kind: str
    weight_bits: int | None = None  # quantized width of the weights (None: the preset's)
    params: int = 0  # weight elements, read once per step (step-major) or per call (time-batched)
    calls: int = 0
    macs: float = 0.0
    acs: float = 0.0
    in_numel: float = 0.0
    in_nnz: float = 0.0
    out_numel: float = 0.0
    out_nnz: float = 0.0
    binary_calls: int = 0
    real_calls: int = 0
    steps: float = 0.0  # time steps run, per sample
    act_bits: float = 0.0  # activation and spike traffic (reads + writes)
    membrane_step_bits: float = 0.0  # membrane traffic, read + written every step (step-major dataflow)
    membrane_call_bits: float = 0.0  # membrane traffic, read + written once per call (time-batched)
    fused_bits: float = 0.0  # part of act_bits a fused epilogue keeps in registers ("fused" dataflow)
    folded: bool = False
    is_neuron: bool = False
    breakdown: dict[str, float] = field(default_factory=dict)
    input_kinds: dict[str, int] = field(default_factory=dict)  # calls per input kind (spikes/counts/real)

    @property
    def input_kind(self) -> str:
        """How its inputs were priced: "spikes", "counts", "real", or e.g. "real+spikes" when calls differ."""
        return "+".join(sorted(self.input_kinds)) if self.input_kinds else ""

    @property
    def mode(self) -> str:
        """"neuron", "folded", "spiking" (every input binary), "standard" (none) or "mixed"."""
        if self.is_neuron:
            return "neuron"
        if self.folded:
            return "folded"
        if self.binary_calls and self.real_calls:
            return "mixed"
        return "spiking" if self.binary_calls else "standard"

    def add(self, key: str, value: float) -> None:
        self.breakdown[key] = self.breakdown.get(key, 0.0) + float(value)


@dataclass(frozen=True)
class CountContext:
    """What counters need to know about the run: samples in the batch, activation width, the
    tracker that follows Linear/Conv outputs to their readers, the provenance of spikes and counts,
    and what the pass met but could not price (``unpriced``: module name -> reason)."""

    batch_size: int
    act_bits: int
    epilogues: EpilogueTracker = field(default_factory=EpilogueTracker, compare=False)
    provenance: Provenance = field(default_factory=Provenance, compare=False)
    unpriced: dict[str, str] = field(default_factory=dict, compare=False)
    state_bits: int | None = None  # width of neuron state without membrane_bits (None: act_bits)

    def kind_of(self, tally: LayerTally, x: torch.Tensor) -> str:
        """How ``tally``'s layer prices its input ``x`` ("spikes", "counts", "real"), recorded on the tally."""
        kind = self.provenance.kind_of(x)
        tally.input_kinds[kind] = tally.input_kinds.get(kind, 0) + 1
        return kind


# ----------------------------------------------------------------------------------- helpers
def spike_total(x: torch.Tensor) -> float:
    """Number of spikes in a spike-count tensor (``nnz`` for binary spikes)."""
    return total(x) if x.dtype != torch.bool else float(nnz(x))


def time_steps(x: torch.Tensor, batch_size: int) -> float:
    """Steps a layer ran per sample: ``T`` for a time-first ``[T, B, ...]`` input (ndim >= 3 and
    axis 1 == B), else ``x.shape[0] / B`` (time folded into the batch ``[T*B, ...]``, or ``[B, ...]``)."""
    if x.dim() >= 3 and x.shape[1] == batch_size:
        return float(x.shape[0])
    if x.dim() >= 2:
        return x.shape[0] / batch_size
    return 1.0 / batch_size


def is_signed_spikes(x: torch.Tensor) -> bool:
    """True when every entry is -1, 0 or 1 (ternary spikes)."""
    return x.dtype == torch.bool or bool(((x == 0) | (x.abs() == 1)).all())


def operand_events(x: torch.Tensor, kind: str) -> torch.Tensor:
    """``x`` as the binary events it stands for, entry by entry: what an attention's ``matmul_ops``
    reads. The convention is the one Linear and Conv follow: a spike is 1 event; a spike count ``c``
    (an I-LIF integer spike, ``c`` binary spikes on its D virtual steps, or a sum of spikes) is ``c``
    events, so a product of two counts ``c_q`` and ``c_k`` is ``c_q · c_k`` accumulates; a signed spike
    (ternary ``{-α, 0, α}``, bipolar's {-1, 0, 1}) is 1 event whatever its sign and size. A ``kind``
    "real" operand counts ``|x|`` events when integer-valued (a difference of integer spikes, as
    bipolar's ``SN(U) - SN'(-U)`` with I-LIF neurons), else one per non-zero entry.

    Example:
        >>> operand_events(torch.tensor([0.0, 2.0, 3.0]), "counts").tolist()
        [0.0, 2.0, 3.0]
        >>> operand_events(torch.tensor([0.5, -0.5, 0.0]), "signed").tolist()
        [1.0, 1.0, 0.0]
        >>> operand_events(torch.tensor([-2.0, 1.0]), "real").tolist()  # signed integer spikes
        [2.0, 1.0]
        >>> operand_events(torch.tensor([0.3, 0.0]), "real").tolist()  # real values: non-zero entries
        [1.0, 0.0]
    """
    if kind in (SPIKES, COUNTS):
        return x.detach()
    if kind == SIGNED:
        return x.detach().ne(0).to(x.dtype if x.is_floating_point() else torch.float32)
    x = x.detach()
    if x.is_floating_point() and not bool(torch.equal(x, x.round())):
        return x.ne(0).to(x.dtype)
    return x.abs().to(x.dtype if x.is_floating_point() else torch.float32)


def read_bits(x: torch.Tensor, binary: bool, act_bits: int) -> float:
    """Bits read to fetch ``x``: 1 per non-zero spike if binary, ``act_bits`` per entry otherwise."""
    return float(nnz(x)) if binary else float(x.numel() * act_bits)


def first_tensor(args: tuple, kwargs: dict, names: tuple[str, ...] = ("input", "x")) -> torch.Tensor | None:
    for value in (*args, *(kwargs.get(n) for n in names)):
        if isinstance(value, torch.Tensor):
            return value
    return None


def output_tensor(output: Any) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


def count_params(module: nn.Module, recurse: bool = True) -> int:
    return sum(p.numel() for p in module.parameters(recurse=recurse))


# ---------------------------------------------------------------------------------- counters
class Counter:
    """Base: ``matches`` picks modules, ``attach`` registers hooks that fill ``tallies``."""

    kind = "module"
    opaque = True  # the counter accounts for every read inside the module (no op of it is watched)
    covers_params = True  # its tally holds the parameters of the module and its uncounted submodules

    def __init__(self, ctx: CountContext, tallies: dict[str, LayerTally]) -> None:
        self.ctx = ctx
        self.tallies = tallies

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        raise NotImplementedError

    def owned(self, module: nn.Module) -> list[nn.Module]:
        """Submodules this counter accounts for itself (they get no hooks of their own)."""
        return []

    def attach(self, name: str, module: nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
        tally = self.new_tally(name, module)
        self.tallies[name] = tally

        def hook(mod: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            tally.calls += 1
            self.count(tally, mod, args, kwargs, output)

        return [module.register_forward_hook(hook, with_kwargs=True)]

    def new_tally(self, name: str, module: nn.Module) -> LayerTally:
        bits = getattr(module, "weight_bits", None)
        return LayerTally(name, self.kind, weight_bits=int(bits) if bits is not None else None,
                          params=count_params(module))

    def count(self, tally: LayerTally, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        raise NotImplementedError

    # shared bookkeeping for single-input layers
    def record_io(self, tally: LayerTally, x: torch.Tensor, out: torch.Tensor | None, binary: bool) -> None:
        tally.in_numel += x.numel()
        tally.in_nnz += nnz(x)
        tally.binary_calls += int(binary)
        tally.real_calls += int(not binary)
        bits = read_bits(x, binary, self.ctx.act_bits)
        tally.act_bits += bits
        self.ctx.epilogues.read(x, tally, bits, fusable=tally.kind in EPILOGUE_KINDS)
        if out is not None:
            tally.out_numel += out.numel()
            tally.out_nnz += nnz(out)
            self.ctx.epilogues.wrote(x, out)

    def record_write(self, tally: LayerTally, out: torch.Tensor) -> None:
        """``out`` written at activation width; followed, so a fused epilogue can keep it in registers."""
        bits = out.numel() * self.ctx.act_bits
        tally.act_bits += bits
        self.ctx.epilogues.produced(out, tally, bits)


COUNTERS: Registry[type[Counter]] = Registry("energy counter")


def counter_for(module: nn.Module) -> type[Counter] | None:
    """The first registered counter class whose ``matches`` accepts ``module`` (None: not counted)."""
    return COUNTERS.first(lambda cls: cls.matches(module))


@COUNTERS.register("attention")
class ProtocolAttentionCounter(Counter):
    """hstlab attention modules: Q/K/V captured at ``q_probe``/``k_probe``/``v_probe`` ([T, B, H, N, d]);
    the operand products are what ``module.matmul_ops(q, k, v)`` returns (whole batch), called on the
    operands' events (:func:`operand_events`): an integer spike S of an I-LIF neuron costs what S binary
    spikes cost, in attention products as in Linear/Conv. Roles a module lists in ``signed_operands``
    (e.g. ``("q", "k")``) whose values are all in {-1, 0, 1} are signed spikes: read at 2 bits (event
    and sign) per non-zero entry."""

    kind = "attention"
    opaque = False  # its projections, neurons and products are hooked or watched one by one
    covers_params = False

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return callable(getattr(module, "matmul_ops", None)) and isinstance(
            getattr(module, "q_probe", None), nn.Module
        )

    def new_tally(self, name: str, module: nn.Module) -> LayerTally:
        return LayerTally(name, self.kind)  # projections are their own Linear/Conv rows

    def attach(self, name: str, module: nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
        tally = self.new_tally(name, module)
        self.tallies[name] = tally
        captured: dict[str, torch.Tensor] = {}
        handles = []
        for role in ("q", "k", "v"):
            probe = getattr(module, f"{role}_probe", None)
            if isinstance(probe, nn.Module):
                def grab(mod, args, output, role=role):
                    captured[role] = output
                handles.append(probe.register_forward_hook(grab))
        has_softmax_module = any(isinstance(m, nn.Softmax) for m in module.modules())

        def hook(mod: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            with self.ctx.epilogues.paused():  # this bookkeeping reads no data on the accelerator
                count(mod, output)

        def count(mod: nn.Module, output: Any) -> None:
            tally.calls += 1
            q, k, v = captured.pop("q", None), captured.pop("k", None), captured.pop("v", None)
            if q is None or k is None:
                return
            signed_roles = getattr(mod, "signed_operands", ())
            operands = [t for t in (q, k, v) if t is not None]
            signed = [role in signed_roles and is_signed_spikes(t)
                      for role, t in zip("qkv", (q, k, v)) if t is not None]
            flags, ops = [], []
            for t, sign in zip(operands, signed):
                if sign:  # priced as spikes, whatever the provenance says of a spike difference
                    tally.input_kinds[SPIKES] = tally.input_kinds.get(SPIKES, 0) + 1
                kind = SIGNED if sign else self.ctx.kind_of(tally, t)
                flags.append(kind != REAL)
                ops.append(operand_events(t, kind))
            events_v = ops[2] if v is not None else None  # [T, B, H, N, d] event tensors, or no V
            macs, acs = mod.matmul_ops(ops[0], ops[1], events_v)
            tally.macs += float(macs)
            tally.acs += float(acs)
            tally.add("products_macs", macs)
            tally.add("products_acs", acs)
            binary = all(flags)
            tally.binary_calls += int(binary)
            tally.real_calls += int(not binary)
            for t, flag, sign in zip(operands, flags, signed):
                tally.in_numel += t.numel()
                tally.in_nnz += nnz(t)
                tally.act_bits += 2.0 * nnz(t) if sign else read_bits(t, flag, self.ctx.act_bits)
            tally.act_bits += q.numel() * self.ctx.act_bits  # product result ~ the shape of Q
            tally.steps += time_steps(q, self.ctx.batch_size)
            out = output_tensor(output)
            if out is not None:
                tally.out_numel += out.numel()
                tally.out_nnz += nnz(out)
            if getattr(mod, "attention_kind", None) == "softmax" and not has_softmax_module:
                scores = math.prod(q.shape[:-1]) * k.shape[-2]  # T*B*H*N*M attention entries
                tally.macs += ELEMENTWISE_MACS["softmax"] * scores
                tally.add("softmax_macs", ELEMENTWISE_MACS["softmax"] * scores)
                tally.act_bits += 4 * scores * self.ctx.act_bits  # scores and probabilities, written+read

        handles.append(module.register_forward_hook(hook, with_kwargs=True))
        return handles


@COUNTERS.register("neuron")
class NeuronCounter(Counter):
    """Spiking neurons of hstlab (``is_spiking_neuron = True``), snnTorch, SpikingJelly and Norse, read
    through ``NEURON_ADAPTERS``: one update (a multiply and two adds = 1 MAC + 1 AC) per state variable
    per neuron per step; spikes written as 1 bit. An integer-spike neuron (``virtual_steps`` D, I-LIF) is
    priced as the D binary virtual steps it runs at inference: D updates per step, a spike of value S as S
    one-bit spikes; a ternary neuron's spike {-α, 0, α} as one (signed) event. Each state (the membrane) is read + written on every
    update (step-major) or once per call, for all the steps the call runs (time-batched)."""

    kind = "neuron"

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return adapter_for(module) is not None

    def attach(self, name: str, module: nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
        self.adapter: type[NeuronAdapter] = adapter_for(module)  # type: ignore[assignment]
        note = self.adapter.unpriced(module)
        if note:
            self.ctx.unpriced[name] = f"{type(module).__name__}: {note}"
        return super().attach(name, module)

    def new_tally(self, name: str, module: nn.Module) -> LayerTally:
        bits = getattr(module, "membrane_bits", None)
        own = sum(count_params(m, recurse=False) for m in module.modules()
                  if m is module or counter_for(m) is None)  # a recurrent Linear inside is its own row
        return LayerTally(name, self.kind, weight_bits=int(bits) if bits is not None else None,
                          params=own, is_neuron=True)

    def count(self, tally, module, args, kwargs, output) -> None:
        x, out = first_tensor(args, kwargs), output_tensor(output)
        if x is None:
            return
        virtual = self.adapter.virtual_steps(module)  # integer spikes: D binary steps per step
        updates = x.numel() * virtual  # neuron-steps of this call, whole batch
        states = self.adapter.states(module, output)
        tally.macs += updates * states
        tally.acs += updates * states
        tally.add("updates", updates)
        self.record_io(tally, x, out, self.ctx.kind_of(tally, x) == SPIKES)
        mem_bits = tally.weight_bits or self.ctx.state_bits or self.ctx.act_bits
        steps = self.adapter.steps(module, x, self.ctx.batch_size) * virtual
        tally.membrane_step_bits += 2 * updates * states * mem_bits  # read + write on every update
        tally.membrane_call_bits += 2 * updates * states / max(steps, 1.0) * mem_bits  # once per neuron per call
        if out is not None:
            fired = nnz(out) if getattr(module, "signed_spikes", False) else spike_total(out)
            tally.act_bits += fired  # spikes out, 1 bit each (an integer spike S: S virtual spikes)
            self.ctx.provenance.tag(out, SPIKES)
        tally.steps += steps


@COUNTERS.register("mha")
class MultiheadAttentionCounter(Counter):
    """``nn.MultiheadAttention`` in closed form: in-projections (as Linear), ``Q Kᵀ`` and ``A V``
    (``batch·H·L·S·d`` MACs each), softmax; ``out_proj`` becomes its own Linear row."""

    kind = "mha"

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return isinstance(module, nn.MultiheadAttention)

    def owned(self, module: nn.Module) -> list[nn.Module]:
        return [module.out_proj]

    def new_tally(self, name: str, module: nn.Module) -> LayerTally:
        own = count_params(module) - count_params(module.out_proj)
        return LayerTally(name, self.kind, weight_bits=getattr(module, "weight_bits", None), params=own)

    def attach(self, name: str, module: nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
        handles = super().attach(name, module)
        proj = module.out_proj
        self.tallies[f"{name}.out_proj"] = LayerTally(
            f"{name}.out_proj", "linear", weight_bits=getattr(proj, "weight_bits", None),
            params=count_params(proj),
        )
        return handles

    def count(self, tally, module: nn.MultiheadAttention, args, kwargs, output) -> None:
        names = ("query", "key", "value")
        q, k, v = (args[i] if len(args) > i else kwargs.get(n) for i, n in enumerate(names))
        if q.dim() == 2:  # unbatched [L, E]
            q, k, v = q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)
        elif module.batch_first:  # [Nb, L, E] -> [L, Nb, E]
            q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
        length, batch, embed = q.shape
        source = k.shape[0]
        heads = module.num_heads
        act = self.ctx.act_bits
        flags = []
        for name, t in (("q", q), ("k", k), ("v", v)):
            binary = self.ctx.kind_of(tally, t) != REAL
            flags.append(binary)
            if binary:
                tally.acs += nnz(t) * embed
                tally.add(f"in_proj_{name}_acs", nnz(t) * embed)
            else:
                tally.macs += t.numel() * embed
                tally.add(f"in_proj_{name}_macs", t.numel() * embed)
            tally.in_numel += t.numel()
            tally.in_nnz += nnz(t)
            tally.act_bits += read_bits(t, binary, act)
            self.ctx.epilogues.read(t, tally)
        tally.binary_calls += int(all(flags))
        tally.real_calls += int(not all(flags))
        products = 2 * batch * heads * length * source * (embed // heads)  # Q Kᵀ and A V
        scores = batch * heads * length * source
        tally.macs += products + ELEMENTWISE_MACS["softmax"] * scores
        tally.add("products_macs", products)
        tally.add("softmax_macs", ELEMENTWISE_MACS["softmax"] * scores)
        # Q, K, V written and read; scores/probabilities written and read; context written
        tally.act_bits += act * (2 * (length + 2 * source) * batch * embed + 4 * scores + length * batch * embed)
        steps = batch / self.ctx.batch_size
        tally.steps += steps
        out = output_tensor(output)
        if out is not None:
            tally.out_numel += out.numel()
            tally.out_nnz += nnz(out)
        proj = self.tallies[f"{tally.name}.out_proj"]
        proj.calls += 1
        proj.real_calls += 1
        proj.macs += length * batch * embed * module.out_proj.out_features
        proj.in_numel += length * batch * embed
        proj.in_nnz += length * batch * embed
        proj.act_bits += act * length * batch * (embed + module.out_proj.out_features)
        proj.steps += steps
        if out is not None:
            proj.out_numel += out.numel()
            proj.out_nnz += nnz(out)


@COUNTERS.register("conv")
class ConvCounter(Counter):
    """Conv1d/2d/3d (and transposed): MACs = out_numel · (C_in/groups) · prod(kernel); a binary input
    costs exactly as many ACs as there are (non-zero input, weight) pairs, counted by convolving the
    spikes with an all-ones kernel (so padding and borders are exact, not ``rate × MACs``)."""

    kind = "conv"
    _conv_fns: ClassVar[dict[int, Callable[..., torch.Tensor]]] = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return isinstance(module, nn.modules.conv._ConvNd)

    def count(self, tally, module, args, kwargs, output) -> None:
        x, out = first_tensor(args, kwargs), output_tensor(output)
        if x is None or out is None:
            return
        kernel = math.prod(module.kernel_size)
        spatial = len(module.kernel_size)
        kind = self.ctx.kind_of(tally, x)
        binary = kind != REAL
        x_events = events(x, kind)  # ternary spikes: one event per non-zero entry
        if module.transposed:  # each input entry scatters into (C_out/groups) * kernel outputs
            fan_out = module.out_channels // module.groups * kernel
            dense, sparse = x.numel() * fan_out, (spike_total(x_events) if binary else 0.0) * fan_out
        else:
            dense = out.numel() * (module.in_channels // module.groups) * kernel
            sparse = self._spike_pairs(module, x_events, spatial) if binary else 0.0
        if binary:
            tally.acs += sparse
        else:
            tally.macs += dense
        tally.add("dense_macs", dense)
        self.record_io(tally, x, out, binary)
        self.record_write(tally, out)
        batched = x.dim() == spatial + 2
        tally.steps += (x.shape[0] if batched else 1) / self.ctx.batch_size

    def _spike_pairs(self, module: nn.modules.conv._ConvNd, x: torch.Tensor, spatial: int) -> float:
        """(input event, weight) pairs: the events of each group summed over its channels first (a sum of
        integers, exact), then convolved with an all-ones kernel, one output per group."""
        groups = module.groups
        batched = x.dim() == spatial + 2
        x = x.float() if batched else x.float().unsqueeze(0)  # [N, C_in, *spatial]
        x = x.unflatten(1, (groups, module.in_channels // groups)).sum(2)  # [N, G, *spatial]
        ones = torch.ones(groups, 1, *module.kernel_size, dtype=torch.float32, device=x.device)  # [G, 1, *k]
        padding = module.padding
        if module.padding_mode != "zeros":
            x = F.pad(x, module._reversed_padding_repeated_twice, mode=module.padding_mode)
            padding = 0
        fan_in = self._conv_fns[spatial](x, ones, None, module.stride, padding, module.dilation, groups)
        return float(fan_in.sum()) * (module.out_channels // groups)


@COUNTERS.register("linear")
class LinearCounter(Counter):
    """``nn.Linear`` on ``[..., in]``: MACs = rows · in · out; a binary input costs ``nnz · out`` ACs."""

    kind = "linear"

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return isinstance(module, nn.Linear)

    def count(self, tally, module: nn.Linear, args, kwargs, output) -> None:
        x, out = first_tensor(args, kwargs), output_tensor(output)
        if x is None:
            return
        kind = self.ctx.kind_of(tally, x)
        binary = kind != REAL
        rows = x.numel() // module.in_features
        dense = rows * module.in_features * module.out_features
        if binary:  # one accumulate per event (a count c: c events; a ternary spike: one signed add)
            tally.acs += spike_total(events(x, kind)) * module.out_features
        else:
            tally.macs += dense
        tally.add("dense_macs", dense)
        self.record_io(tally, x, out, binary)
        if out is not None:
            self.record_write(tally, out)
        tally.steps += time_steps(x, self.ctx.batch_size)


@COUNTERS.register("folded_conv")
class FoldedConvCounter(Counter):
    """A module that folds into one ``k x k`` conv (padding ``k // 2``, with bias) at inference and
    says so with ``folded_conv() -> (C_in, C_out, k, (h, w))``, as Meta-SpikeFormer's RepConv
    (:class:`hstlab.staged.RepConv`): priced as that conv on its input tokens ``[..., h*w, C_in]``,
    its inner convs and BatchNorms folded away (its weights read are the folded kernel and bias). A
    binary input costs one AC per (spike, output channel, kernel tap) inside the grid; a real input
    ``out_numel · C_in · k²`` MACs."""

    kind = "conv"

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return callable(getattr(module, "folded_conv", None))

    def owned(self, module: nn.Module) -> list[nn.Module]:
        return [m for m in module.modules() if m is not module]

    def new_tally(self, name: str, module: nn.Module) -> LayerTally:
        """Weights read: the folded conv's ``C_out · C_in · k² + C_out`` (its kernel and bias)."""
        tally = super().new_tally(name, module)
        c_in, c_out, k, _ = module.folded_conv()
        tally.params = c_out * c_in * k * k + c_out
        return tally

    def count(self, tally, module, args, kwargs, output) -> None:
        x, out = first_tensor(args, kwargs), output_tensor(output)
        if x is None or out is None:
            return
        c_in, c_out, k, (h, w) = module.folded_conv()
        binary = self.ctx.kind_of(tally, x) != REAL
        maps = x.reshape(-1, h, w, c_in).permute(0, 3, 1, 2).float()  # [M, C_in, h, w]
        dense = maps.shape[0] * h * w * c_in * k * k * c_out
        if binary:
            ones = torch.ones(1, c_in, k, k, dtype=torch.float32, device=x.device)
            tally.acs += float(F.conv2d(maps, ones, None, 1, k // 2).sum()) * c_out
        else:
            tally.macs += dense
        tally.add("dense_macs", dense)
        self.record_io(tally, x, out, binary)
        self.record_write(tally, out)
        tally.steps += time_steps(x, self.ctx.batch_size)


@COUNTERS.register("batchnorm")
class BatchNormCounter(Counter):
    """BatchNorm folds into the preceding Linear/Conv at inference: no compute, no memory traffic."""

    kind = "batchnorm"

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return isinstance(module, nn.modules.batchnorm._BatchNorm)

    def new_tally(self, name: str, module: nn.Module) -> LayerTally:
        return LayerTally(name, self.kind, folded=True)

    def count(self, tally, module, args, kwargs, output) -> None:
        x, out = first_tensor(args, kwargs), output_tensor(output)
        if x is None:
            return
        tally.in_numel += x.numel()
        tally.in_nnz += nnz(x)
        if out is not None:
            tally.out_numel += out.numel()
            tally.out_nnz += nnz(out)
            self.ctx.epilogues.alias(x, out)


@COUNTERS.register("passthrough")
class PassThroughCounter(Counter):
    """Pooling and dropout: free (not counted, no row); a pooled Linear/Conv output is still followed
    to its reader, as a fused epilogue pools before it applies its activation or neuron."""

    kind = "passthrough"
    covers_params = False
    _types = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
              nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
              nn.modules.dropout._DropoutNd, nn.Identity)

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return isinstance(module, cls._types)

    def attach(self, name: str, module: nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
        def hook(mod: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            x, out = first_tensor(args, kwargs), output_tensor(output)
            if x is not None and out is not None:
                self.ctx.epilogues.alias(x, out)

        return [module.register_forward_hook(hook, with_kwargs=True)]


ELEMENTWISE_TYPES: dict[type[nn.Module], str] = {
    nn.ReLU: "relu",
    nn.LayerNorm: "layernorm",
    nn.GroupNorm: "groupnorm",
    nn.Softmax: "softmax",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
}
if hasattr(nn, "RMSNorm"):
    ELEMENTWISE_TYPES[nn.RMSNorm] = "rmsnorm"


@COUNTERS.register("elementwise")
class ElementwiseCounter(Counter):
    """LayerNorm, GroupNorm, RMSNorm, Softmax, GELU, SiLU, Sigmoid, Tanh, ReLU: ``ELEMENTWISE_MACS[kind]``
    MAC-equivalents (ReLU: ``ELEMENTWISE_ACS``, accumulate-equivalents) per input element; input read
    and output written at activation width."""

    @classmethod
    def kind_of(cls, module: nn.Module) -> str | None:
        for module_type, kind in ELEMENTWISE_TYPES.items():
            if isinstance(module, module_type):
                return kind
        return None

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return cls.kind_of(module) is not None

    def new_tally(self, name: str, module: nn.Module) -> LayerTally:
        return LayerTally(name, self.kind_of(module), params=count_params(module))

    def count(self, tally, module, args, kwargs, output) -> None:
        x, out = first_tensor(args, kwargs), output_tensor(output)
        if x is None:
            return
        tally.macs += ELEMENTWISE_MACS.get(tally.kind, 0.0) * x.numel()
        tally.acs += ELEMENTWISE_ACS.get(tally.kind, 0.0) * x.numel()
        self.ctx.kind_of(tally, x)
        self.record_io(tally, x, out, binary=False)
        if out is not None:
            tally.act_bits += out.numel() * self.ctx.act_bits
        tally.steps += time_steps(x, self.ctx.batch_size)


class OpCounter:
    """Hooks every countable module of ``model`` while the context is open; removes them on exit.

    While open, one ``TorchFunctionMode`` sees every torch op: it follows Linear/Conv outputs for the
    fused dataflow (outside counted modules), passes spike/count provenance on, and prices products
    of two activations (``PRODUCT_OPS``) outside modules that count themselves. A module that holds
    parameters and has no counter, or that changes tensor state in its forward, is reported in
    ``ctx.unpriced`` instead of being skipped in silence.

    Example:
        >>> model = nn.Linear(4, 2)
        >>> with OpCounter(model, CountContext(batch_size=1, act_bits=32)) as counter:
        ...     _ = model(torch.full((3, 1, 4), 0.5))  # [T, B, in], real input
        >>> counter.tallies[""].macs
        24.0
    """

    def __init__(self, model: nn.Module, ctx: CountContext) -> None:
        self.model = model
        self.ctx = ctx
        self.tallies: dict[str, LayerTally] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._watcher: _OpWatcher | None = None  # active while the context is open
        self._stats: contextlib.AbstractContextManager[None] | None = None  # per-tensor statistics, this pass
        self._order: dict[str, int] = {}
        self._stack: list[str] = []  # names of the modules running now, outermost first
        self.counted_depth = 0  # > 0 while a counted module runs: products inside are its counter's business

    def __enter__(self) -> OpCounter:  # noqa: PYI034 - py310 has no typing.Self
        skip: set[int] = set()
        covered: set[int] = set()  # modules whose parameters a counter's tally holds
        inside_counted: set[int] = set()  # modules inside an opaque counted module
        try:
            for p in self.model.parameters():
                self.ctx.provenance.tag(p, WEIGHT)
            for index, (name, module) in enumerate(self.model.named_modules()):
                self._order[name] = index
                cls = None if id(module) in skip else counter_for(module)
                self._handles.append(module.register_forward_pre_hook(self._pusher(name, cls is not None)))
                if cls is not None:
                    counter = cls(self.ctx, self.tallies)
                    skip.update(id(m) for m in counter.owned(module))
                    if cls.covers_params:
                        covered.update(id(m) for m in module.modules())
                    if cls.opaque:
                        inside_counted.update(id(m) for m in module.modules() if m is not module)
                        self._handles.append(module.register_forward_pre_hook(self._enter_module))
                    self._handles.extend(counter.attach(name, module))
                    if cls.opaque:  # after the counter's hook, so its own ops are not watched either; also if
                        # the module raises (a model may catch the error and go on)
                        self._handles.append(module.register_forward_hook(self._leave_module, always_call=True))
                elif id(module) not in inside_counted:
                    self._watch_uncounted(name, module, id(module) in covered)
                self._handles.append(module.register_forward_hook(self._popper(cls is not None), always_call=True))
            self._stats = cached()
            self._stats.__enter__()
            self._watcher = _OpWatcher(self)
            self._watcher.__enter__()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
        self.ctx.epilogues.settle()
        self.ctx.provenance.clear()

    def _pusher(self, name: str, counted: bool) -> Callable[..., None]:
        def push(module: nn.Module, args: tuple) -> None:
            self._stack.append(name)
            self.counted_depth += int(counted)

        return push

    def _popper(self, counted: bool) -> Callable[..., None]:
        def pop(module: nn.Module, args: tuple, output: Any) -> None:
            if self._stack:
                self._stack.pop()
            self.counted_depth -= int(counted)

        return pop

    def _watch_uncounted(self, name: str, module: nn.Module, covered: bool) -> None:
        """Hooks that report a module without a counter that holds parameters, or changes tensor state
        (a neuron no adapter knows), the first time it runs."""
        params = count_params(module, recurse=False)
        snapshot: dict[str, tuple[int, int]] = {}

        def before(mod: nn.Module, args: tuple) -> None:
            snapshot.clear()
            snapshot.update(_tensor_state(mod))
            if params and not covered and name not in self.ctx.unpriced:
                self.ctx.unpriced[name] = (f"{type(mod).__name__} holds {params} parameters and has no energy "
                                           "counter: its compute and weight reads are not priced")

        def after(mod: nn.Module, args: tuple, output: Any) -> None:
            changed = sorted(k for k, v in _tensor_state(mod).items() if snapshot.get(k) != v)
            if changed and name not in self.ctx.unpriced:
                self.ctx.unpriced[name] = (
                    f"{type(mod).__name__} changes its tensor state ({', '.join(changed)}) in forward and has no "
                    "energy counter: if it is a neuron, its updates and membrane traffic are not priced "
                    "(declare is_spiking_neuron = True or register a NEURON_ADAPTERS entry)")

        self._handles.append(module.register_forward_pre_hook(before))
        self._handles.append(module.register_forward_hook(after, always_call=True))

    def _enter_module(self, module: nn.Module, args: tuple) -> None:
        self.ctx.epilogues.enter()

    def _leave_module(self, module: nn.Module, args: tuple, output: Any) -> None:
        self.ctx.epilogues.leave()

    def remove(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.__exit__(None, None, None)
        stats, self._stats = self._stats, None
        if stats is not None:
            stats.__exit__(None, None, None)
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.ctx.epilogues.depth = 0
        self._stack.clear()
        self.counted_depth = 0

    def called(self) -> list[LayerTally]:
        """Tallies of the modules that ran, in ``named_modules()`` order."""
        ran = [t for t in self.tallies.values() if t.calls]
        return sorted(ran, key=lambda t: self._order.get(t.name, len(self._order)))

    # ------------------------------------------------------------------ products of two activations
    def observe_product(self, func: Any, args: tuple, kwargs: dict) -> None:
        """Price ``func`` if it is a product of two activations (``PRODUCT_OPS``) run outside counted modules."""
        rule = PRODUCT_OPS.get(getattr(func, "__name__", ""))
        if rule is None:
            return
        name = self._stack[-1] if self._stack else ""
        op = getattr(func, "__name__", "")

        def kind(t: torch.Tensor) -> str:
            if isinstance(t, nn.Parameter) or self.ctx.provenance.get(t) == WEIGHT:
                raise _WeightOperand
            return self.ctx.provenance.kind_of(t)

        try:
            priced = rule(args, kwargs, kind)
        except _WeightOperand:
            key = f"{name}:{op}"
            self.ctx.unpriced.setdefault(key, f"{op} with a weight operand outside a counted layer: not priced")
            return
        except (ValueError, RuntimeError, IndexError, TypeError) as err:
            self.ctx.unpriced.setdefault(f"{name}:{op}", f"{op} could not be priced: {err}")
            return
        if priced is not None:
            self._add_product(name, op, priced)

    def _add_product(self, name: str, op: str, priced: Priced) -> None:
        tally = self.tallies.get(name)
        if tally is None:
            tally = self.tallies[name] = LayerTally(name, "products")
        tally.calls += 1
        act = self.ctx.act_bits
        for cost in priced.products:
            tally.macs += cost.macs
            tally.acs += cost.acs
            tally.add(f"{op}_macs", cost.macs)
            tally.add(f"{op}_acs", cost.acs)
            tally.add("dense_macs", cost.dense)
            spiking = cost.acs > 0 or (cost.macs == 0 and cost.dense > 0)
            tally.binary_calls += int(spiking)
            tally.real_calls += int(not spiking)
        for operand in priced.operands:
            t = operand.tensor
            tally.input_kinds[operand.kind] = tally.input_kinds.get(operand.kind, 0) + 1
            tally.in_numel += t.numel()
            tally.in_nnz += nnz(t)
            tally.act_bits += read_bits(t, operand.spiking, act)  # the op watcher saw this read of t
        if priced.softmax_scores:
            tally.macs += SOFTMAX_MACS * priced.softmax_scores
            tally.add("softmax_macs", SOFTMAX_MACS * priced.softmax_scores)
            tally.act_bits += 4 * priced.softmax_scores * act  # scores and probabilities, written + read
        tally.act_bits += priced.result_numel * act  # the product written
        tally.out_numel += priced.result_numel
        tally.out_nnz += priced.result_numel
        tally.steps += time_steps(priced.operands[0].tensor, self.ctx.batch_size)


class _WeightOperand(Exception):
    """A product operand is a parameter (or a view of one): a layer, not an activation product."""


def _tensor_state(module: nn.Module) -> dict[str, tuple[int, int]]:
    """Identity and version of every tensor a module keeps as an attribute or buffer (not parameters)."""
    state = {k: (id(v), v._version) for k, v in vars(module).items() if isinstance(v, torch.Tensor)}
    state.update({k: (id(v), v._version) for k, v in module._buffers.items() if v is not None})
    return state


class _OpWatcher(TorchFunctionMode):
    """Sees every torch op of the measured pass: epilogue reads (outside counted modules), spike
    provenance (everywhere) and products of two activations (outside counted modules)."""

    def __init__(self, counter: OpCounter) -> None:
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        counter = self.counter
        if counter.ctx.epilogues.depth == 0:
            counter.ctx.epilogues.observe(func, args, kwargs, result)
        counter.ctx.provenance.observe(func, args, kwargs, result)
        if counter.counted_depth == 0:
            counter.observe_product(func, args, kwargs)
        return result

from hstlab.energy import gates as _gates  # noqa: E402,F401  (registers the spike-gate counter)
