"""``energy_report``: one measured forward pass turned into a per-layer, per-sample energy table."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

from hstlab.energy.constants import (
    DATAFLOWS,
    ELEMENTWISE_MACS,
    INT_SCALING_RULE,
    MEMORY_LEVELS,
    EnergyPreset,
    MemoryLevel,
    check_dataflow,
    get_memory_level,
    get_preset,
    layer_op_energy,
    memory_energy,
    mixed_op_energy,
    select_memory_level,
)
from hstlab.energy.counting import CountContext, LayerTally, OpCounter
from hstlab.energy.neurons import adapter_for
from hstlab.energy.provenance import (
    COUNTS,
    INPUT_KINDS,
    REAL,
    SPIKES,
    TOKENIZER_INPUT_KINDS,
    check_input_kind,
    is_binary,
    is_spike_count,
)

COLUMNS = ("name", "kind", "mode", "macs", "acs", "input_rate", "compute_j", "memory_j", "total_j",
           "output_rate", "steps", "params", "bits", "format", "calls", "input_kind")

_SUM_FIELDS = ("macs", "acs", "compute_j", "memory_j", "total_j")


@dataclass
class EnergyReport:
    """Per-layer and total energy per sample of one measured forward pass.

    Example:
        >>> model = nn.Sequential(nn.Linear(8, 4))
        >>> report = energy_report(model, torch.rand(2, 3, 8))  # [T, B, in]
        >>> report.macs == 2 * 8 * 4  # per sample: T * in * out
        True
    """

    layers: pd.DataFrame
    preset: str
    memory: bool
    memory_level: str
    memory_access_j: float
    weight_bytes: float
    time_steps: int
    batch_size: int
    input_shape: tuple[int, ...]
    dataflow: str = "step-major"
    assumptions: list[str] = field(default_factory=list)
    baseline_note: str = ""
    breakdown: dict[str, dict[str, float]] = field(default_factory=dict)
    input_kind: str = "auto"  # how the model's input was priced: spikes, counts or real (see INPUT_KINDS)
    activation_bits: int | None = None  # width of real activations (None: the preset's), e.g. a bit-matched twin
    # what the pass met but could not price, "name (reason)": shown by summary(); nothing is skipped in silence
    unpriced: list[str] = field(default_factory=list)
    # prices the same measured pass under a given dataflow (set by energy_report)
    _reprice: Callable[[str], EnergyReport] | None = field(default=None, repr=False, compare=False)

    def with_dataflow(self, dataflow: str) -> EnergyReport:
        """This measured pass priced under another memory ``dataflow`` (no new forward pass).

        Example:
            >>> report = energy_report(nn.Linear(8, 4), torch.rand(3, 2, 8))  # [T, B, in]
            >>> batched = report.with_dataflow("time-batched")
            >>> batched.compute_j == report.compute_j, batched.memory_j < report.memory_j
            (True, True)
        """
        check_dataflow(dataflow)
        if self._reprice is None:
            raise ValueError("this EnergyReport was not made by energy_report; measure again with dataflow=")
        return self._reprice(dataflow)

    # totals, per sample
    def _sum(self, column: str) -> float:
        return float(self.layers[column].sum()) if len(self.layers) else 0.0

    @property
    def macs(self) -> float:
        return self._sum("macs")

    @property
    def acs(self) -> float:
        return self._sum("acs")

    @property
    def compute_j(self) -> float:
        return self._sum("compute_j")

    @property
    def memory_j(self) -> float:
        return self._sum("memory_j")

    @property
    def total_j(self) -> float:
        return self.compute_j + self.memory_j

    def compare(self, other: EnergyReport) -> dict[str, Any]:
        """Ratios against ``other`` (e.g. a standard baseline). ``energy_ratio = other / self``:
        above 1 means ``self`` needs less energy. ``*_self_over_other`` are the inverse ratios."""
        if not isinstance(other, EnergyReport):
            raise ValueError(f"other={type(other).__name__} must be an EnergyReport (from energy_report)")  # noqa: TRY004
        out: dict[str, Any] = {
            "self_total_j": self.total_j,
            "other_total_j": other.total_j,
            "same_preset": self.preset == other.preset,
            "same_time_steps": self.time_steps == other.time_steps,
            "same_dataflow": self.dataflow == other.dataflow,
        }
        for key in ("total_j", "compute_j", "memory_j", "macs", "acs"):
            mine, theirs = getattr(self, key), getattr(other, key)
            out[f"{key}_other_over_self"] = _ratio(theirs, mine)
            out[f"{key}_self_over_other"] = _ratio(mine, theirs)
        out["energy_ratio"] = out["total_j_other_over_self"]
        out["energy_saving"] = 1.0 - out["total_j_self_over_other"]  # fraction of other's energy saved
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary (non-finite floats become ``None``)."""
        records = [{k: _json_value(v) for k, v in row.items()} for row in self.layers.to_dict("records")]
        return {
            "preset": self.preset,
            "memory": self.memory,
            "memory_level": self.memory_level,
            "memory_access_j": self.memory_access_j,
            "weight_bytes": float(self.weight_bytes),
            "time_steps": self.time_steps,
            "batch_size": self.batch_size,
            "input_shape": list(self.input_shape),
            "dataflow": self.dataflow,
            **{key: _json_value(getattr(self, key)) for key in _SUM_FIELDS},
            "layers": records,
            "breakdown": {k: {kk: _json_value(vv) for kk, vv in v.items()} for k, v in self.breakdown.items()},
            "assumptions": list(self.assumptions),
            "baseline_note": self.baseline_note,
            "input_kind": self.input_kind,
            "activation_bits": self.activation_bits,
            "unpriced": list(self.unpriced),
        }

    def summary(self, max_rows: int = 40) -> str:
        """A short text table of the layers that cost energy, then the totals."""
        costly = self.layers[self.layers["total_j"] > 0]
        table = costly[["name", "kind", "mode", "macs", "acs", "input_rate", "compute_j", "memory_j"]].copy()
        table["name"] = table["name"].replace("", "<model>")
        for col in ("compute_j", "memory_j"):
            table[col] = table[col] * 1e6
        table = table.rename(columns={"compute_j": "compute_uJ", "memory_j": "memory_uJ", "input_rate": "rate"})
        memory = f"{self.memory_level}, {self.dataflow}" if self.memory else "off"
        lines = [f"Energy per sample ({self.preset}, memory={memory})"]
        if len(table):
            shown = table.head(max_rows)
            lines.append(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
            if len(table) > max_rows:
                lines.append(f"... {len(table) - max_rows} more layers")
        free = len(self.layers) - len(costly)
        if free:
            lines.append(f"({free} zero-cost rows not shown, e.g. folded BatchNorm)")
        lines.append(
            f"total {self.total_j * 1e6:.4g} uJ = compute {self.compute_j * 1e6:.4g} uJ "
            f"+ memory {self.memory_j * 1e6:.4g} uJ; MACs {self.macs:.4g}, ACs {self.acs:.4g}"
        )
        lines.append(self.baseline_note)
        if self.unpriced:
            lines.append(f"Not priced ({len(self.unpriced)}; these totals leave them out):")
            lines.extend(f"  - {entry}" for entry in self.unpriced)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"EnergyReport(preset={self.preset!r}, total_j={self.total_j:.4g}, compute_j={self.compute_j:.4g}, "
                f"memory_j={self.memory_j:.4g}, layers={len(self.layers)})")


def _ratio(num: float, den: float) -> float:
    if den == 0:
        return math.nan if num == 0 else math.inf
    return num / den


def _json_value(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ----------------------------------------------------------------------------------- measuring
def energy_report(model: nn.Module, example_input: torch.Tensor, preset: str = "45nm-fp32",
                  memory: bool = True, *, memory_level: str | None = None, dataflow: str = "step-major",
                  seed: int | None = 0, input_kind: str = "auto",
                  activation_bits: int | None = None) -> EnergyReport:
    """Measure ``model`` on ``example_input`` ``[T, B, ...]`` and cost every layer per sample.

    One forward pass in eval mode under ``torch.no_grad`` with counting hooks (removed afterwards,
    also on errors; the training flag is restored). Neuron state is reset before and after.
    ``memory_level`` overrides the memory chosen from the weight size (one of ``MEMORY_LEVELS``);
    ``dataflow`` (one of ``DATAFLOWS``) sets how often weights and membranes are moved: every step
    ("step-major") or once per layer call, reused for all its steps ("time-batched"), and whether
    activations and neurons that follow a Linear/Conv run in its epilogue ("fused": that output is
    neither written nor read); compute is the same under all three. To price "fused", the pass holds
    every Linear/Conv output (and its BatchNorm and pooled copies) until it ends, so its peak memory
    grows by their sum. ``seed`` fixes random masking during the pass without touching the global
    RNG (None: no seed). ``input_kind`` (one of ``INPUT_KINDS``) says what ``example_input`` is:
    "auto" prices it as spikes when binary, as spike counts when the model declares counts (an
    ``input_kind`` attribute, or an hstlab config whose tokenizer takes event frames) and the values
    are non-negative integers, and as real values otherwise; "spikes" and "counts" insist (a
    ``ValueError`` when the values are not); "real" prices it as real values even when binary.
    Modules the engine cannot price are listed in ``report.unpriced``, never skipped in silence.
    ``activation_bits`` prices real-valued activations as integers of that width (a standard twin
    bit-matched to a T-step spiking model: ``twin_activation_bits(T)``): they are read and written at
    that width, and a layer with ``weight_bits`` w < 32 multiplies w-bit weights by them
    (``mixed_op_energy``); membranes stay at the preset's width (or ``membrane_bits``).

    Example:
        >>> spikes = (torch.rand(4, 2, 16) < 0.2).float()  # [T, B, in]
        >>> energy_report(nn.Linear(16, 8), spikes).layers.loc[0, "mode"]
        'spiking'
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model={type(model).__name__} must be a torch.nn.Module")  # noqa: TRY004
    if not isinstance(example_input, torch.Tensor) or example_input.dim() < 2:
        shape = tuple(example_input.shape) if isinstance(example_input, torch.Tensor) else type(example_input).__name__
        raise ValueError(f"example_input={shape} must be a time-first tensor [T, B, ...] with at least 2 axes")
    if example_input.shape[0] < 1 or example_input.shape[1] < 1:
        raise ValueError(f"example_input shape {tuple(example_input.shape)} needs T >= 1 and B >= 1")
    settings = get_preset(preset)
    check_dataflow(dataflow)
    check_input_kind(input_kind)
    if activation_bits is not None and (isinstance(activation_bits, bool) or not isinstance(activation_bits, int)
                                        or not 1 <= activation_bits <= 32):
        raise ValueError(f"activation_bits={activation_bits!r} must be an integer from 1 to 32 (or None: the preset's)")
    level = get_memory_level(memory_level) if memory_level is not None else None
    input_tag = _input_tag(model, example_input, input_kind)

    batch = int(example_input.shape[1])
    x = example_input.to(_device_of(model))
    ctx = CountContext(batch_size=batch, act_bits=activation_bits or settings.bits, state_bits=settings.bits)
    was_training = model.training
    try:
        model.eval()
        _reset_state(model)
        with torch.no_grad(), _seeded(seed, x.device), OpCounter(model, ctx) as counter:
            if input_tag is not None:
                ctx.provenance.tag(x, input_tag)
            ctx.epilogues.returned(model(x))
        tallies = counter.called()
        unpriced = [f"{name or '<model>'}: {reason}" for name, reason in ctx.unpriced.items()]
    finally:
        _reset_state(model)
        model.train(was_training)

    weight_bytes = model_weight_bytes(model, settings)
    level = level or select_memory_level(weight_bytes)
    shape, cfg = tuple(int(s) for s in example_input.shape), getattr(model, "cfg", None)  # not the tensors

    def priced(flow: str) -> EnergyReport:  # the tallies of this one pass, priced under ``flow``
        rows = [_row(t, settings, level, memory, batch, flow, activation_bits) for t in tallies]
        return EnergyReport(
            layers=pd.DataFrame(rows, columns=list(COLUMNS)),
            preset=settings.name,
            memory=memory,
            memory_level=level.name,
            memory_access_j=level.access_j,
            weight_bytes=weight_bytes,
            time_steps=shape[0],
            batch_size=batch,
            input_shape=shape,
            dataflow=flow,
            assumptions=assumptions(settings, level, memory, flow, activation_bits),
            baseline_note=_baseline_note(shape, cfg, settings, level, memory, weight_bytes, flow),
            breakdown={t.name: {k: v / batch for k, v in t.breakdown.items()} for t in tallies},
            input_kind=input_tag or (SPIKES if is_binary(example_input) else REAL),
            activation_bits=activation_bits,
            unpriced=list(unpriced),
            _reprice=priced,
        )

    return priced(dataflow)


def energy_per_sample(model: nn.Module, x: torch.Tensor, preset: str = "45nm-fp32", memory: bool = True,
                      **kwargs: Any) -> float:
    """Total joules per sample of ``model`` on the batch ``x`` ``[T, B, ...]`` (see :func:`energy_report`)."""
    return energy_report(model, x, preset=preset, memory=memory, **kwargs).total_j


def model_weight_bytes(model: nn.Module, preset: EnergyPreset) -> float:
    """Bytes of all parameters, each at its module's ``weight_bits`` (below 32) or the preset's width."""
    total_bits = 0.0
    for module in model.modules():
        bits = getattr(module, "weight_bits", None)
        width = bits if bits is not None and bits < 32 else preset.bits
        total_bits += sum(p.numel() for p in module.parameters(recurse=False)) * width
    return total_bits / 8


def _row(t: LayerTally, preset: EnergyPreset, level: MemoryLevel, memory: bool, batch: int,
         dataflow: str, activation_bits: int | None = None) -> dict[str, Any]:
    ops = layer_op_energy(preset, t.weight_bits)
    macs, acs = t.macs / batch, t.acs / batch
    quantized = t.weight_bits is not None and t.weight_bits < 32 and not t.is_neuron
    mac_ops = mixed_op_energy(int(t.weight_bits), activation_bits) if quantized and activation_bits else ops
    compute = macs * mac_ops.mac_j + acs * ops.ac_j
    weight_bits = t.weight_bits if t.weight_bits is not None and t.weight_bits < 32 else preset.bits
    if t.is_neuron:
        weight_bits = preset.bits  # PLIF/ALIF parameters are stored like activations
    act_bits = t.act_bits - t.fused_bits if dataflow == "fused" else t.act_bits
    if dataflow == "step-major":
        weight_reads, membrane_bits = t.steps, t.membrane_step_bits  # per step
    else:  # time-batched or fused: once per call (a call at batch 1 runs its `steps` steps)
        weight_reads, membrane_bits = min(t.steps, float(t.calls)), t.membrane_call_bits
    traffic = (act_bits + membrane_bits) / batch + weight_reads * t.params * weight_bits
    mem = memory_energy(traffic, level) if memory and not t.folded else 0.0
    return {
        "name": t.name,
        "kind": t.kind,
        "mode": t.mode,
        "macs": macs,
        "acs": acs,
        "input_rate": t.in_nnz / t.in_numel if t.in_numel else 0.0,
        "compute_j": compute,
        "memory_j": mem,
        "total_j": compute + mem,
        "output_rate": t.out_nnz / t.out_numel if t.out_numel else 0.0,
        "steps": t.steps,
        "params": t.params,
        "bits": ops.bits,
        "format": mac_ops.name if macs else ops.name,
        "calls": t.calls,
        "input_kind": t.input_kind,
    }


def assumptions(preset: EnergyPreset, level: MemoryLevel, memory: bool, dataflow: str = "step-major",
                activation_bits: int | None = None) -> list[str]:
    """The modelling assumptions of a report, as sentences for model cards."""
    check_dataflow(dataflow)
    ops = preset.ops
    lines = [
        (f"Preset {preset.name}: 45 nm (Horowitz 2014); unquantized layers use {ops.name} arithmetic "
        f"(MAC {ops.mac_j * 1e12:.3g} pJ, accumulate {ops.ac_j * 1e12:.3g} pJ); fp32 4.6/0.9, fp16 1.5/0.4, "
        "int8 0.23/0.03 pJ."),
        f"Layers with weight_bits b < 32 compute in b-bit integers; {INT_SCALING_RULE}.",
        "All counts and joules are per sample: the measured batch total divided by B = example_input.shape[1].",
        ("A Linear/Conv layer whose input is spikes or spike counts is 'spiking' and costs accumulates, a "
        "count c being c spikes on the same synapse: Linear sum(input) x out_features (nnz x out for 0/1 "
        "input); Conv the exact number of (spike, weight) pairs (the input convolved with an all-ones "
        "kernel). Binary input is spikes; non-negative integers are counts only when they come from spikes "
        "(neuron outputs and their sums, e.g. SEW-ADD 0/1/2) or are the model input declared as counts "
        "(input_kind, or hstlab's event-frame tokenizers). Any other input is 'standard' and costs dense "
        "MACs (Linear rows x in x out, Conv out_numel x C_in/groups x prod(kernel)) for every step it runs."),
        ("Attention products come from the module's matmul_ops(q, k, v) (hstlab protocol, on the operands' "
        "events for spiking kinds: a spike 1, an I-LIF integer spike S as S, a ternary spike 1); "
        "nn.MultiheadAttention in closed form: in-projections as Linear, Q K^T and A V "
        "at batch x heads x L x S x d MACs each; its out_proj is a Linear row. Products of two activations "
        "anywhere else (matmul/@, bmm, einsum, scaled_dot_product_attention) are priced where they run: "
        "accumulates when an operand is spikes or counts (one per pair of non-zero entries that meet when "
        "both are), MACs otherwise; scaled_dot_product_attention adds its softmax."),
        ("Neuron updates: one multiply and two adds (1 MAC + 1 AC) per state variable per neuron per step, in "
        "the preset's arithmetic (or membrane_bits): hstlab neurons and snnTorch Leaky 1 (the membrane), "
        "snnTorch Synaptic 2, Alpha 3, Norse LIF 2 (v, i), SpikingJelly one per registered memory; "
        "adaptive-threshold state is not counted."),
        "BatchNorm is folded into the preceding Linear/Conv at inference: zero compute and memory.",
        *([f"Real-valued activations are {activation_bits}-bit integers (a standard twin bit-matched to T "
           f"spiking steps has ceil(log2(T+1)) bits): read and written at {activation_bits} bits; a layer with "
           f"w-bit weights multiplies them by {activation_bits}-bit activations (multiply 0.2 pJ x (w/8) x "
           f"({activation_bits}/8), add 0.03 pJ x max(w, {activation_bits})/8); membranes keep their width."]
          if activation_bits else []),
        "Elementwise layers on real values count MAC-equivalents per element: "
        + ", ".join(f"{k} {v:g}" for k, v in ELEMENTWISE_MACS.items())
        + " (softmax of softmax-kind hstlab attention included); nn.ReLU modules count one accumulate-equivalent "
        "(a comparison) per element; functional relu, pooling, residual adds, dropout and bias adds are not "
        "counted.",
    ]
    if memory:
        levels = ", ".join(f"{m.name} {m.access_j * 1e12:g} pJ" for m in MEMORY_LEVELS)
        lines += [
            (f"Memory: {level.name} at {level.access_j * 1e12:g} pJ per 64-bit access (chosen by total weight "
            f"size unless overridden; levels: {levels}; DRAM taken at the low end of 1.3-2.6 nJ); "
            "traffic is pro-rated per bit."),
            f"Dataflow {dataflow}: {DATAFLOWS[dataflow]}.",
            (f"Weights are read at their bit width, per sample (batch-1 inference); activations and membrane "
            f"potentials are {preset.bits}-bit words (membranes at membrane_bits where set); spikes cost 1 bit "
            "and are read or written only where non-zero; each neuron reads its input every step (under the fused "
            "dataflow, not when it takes it from the Linear/Conv before it); "
            "softmax scores/probabilities are written and read once each."),
            ("Time steps a layer runs: T for a [T, B, ...] input (axis 1 == B), else axis 0 / B "
            "(time folded into the batch); convolutions always axis 0 / B."),
        ]
    else:
        lines.append("Memory traffic not counted (memory=False).")
    return lines


def _baseline_note(shape: tuple[int, ...], cfg: Any, preset: EnergyPreset, level: MemoryLevel,
                   memory: bool, weight_bytes: float, dataflow: str) -> str:
    note = (f"Measured on one forward pass of an input of shape {shape}: T={shape[0]} input steps, "
            f"averaged over B={shape[1]} samples; preset {preset.name}; ")
    note += (f"memory {level.name} (weights {weight_bytes / 1024:.1f} KiB), {dataflow} dataflow." if memory
             else "memory not counted.")
    if cfg is not None and hasattr(cfg, "num_steps"):
        modes = getattr(cfg, "modes", "?")
        note += f" Model config: num_steps={cfg.num_steps}, modes={modes}."
    return note


def declared_input_kind(model: nn.Module) -> str | None:
    """What ``model`` says its input is: its ``input_kind`` attribute, else what its config's tokenizer
    takes (``TOKENIZER_INPUT_KINDS``: hstlab's frame and event tokenizers take event counts), else None.

    Example:
        >>> from hstlab import HSTConfig, build_model
        >>> declared_input_kind(build_model(HSTConfig.from_preset("tiny"))), declared_input_kind(nn.Linear(2, 2))
        ('counts', None)
    """
    kind = getattr(model, "input_kind", None)
    if isinstance(kind, str):
        return check_input_kind(kind)
    tokenizer = getattr(getattr(model, "cfg", None), "tokenizer", None)
    return TOKENIZER_INPUT_KINDS.get(tokenizer) if isinstance(tokenizer, str) else None


def _input_tag(model: nn.Module, x: torch.Tensor, input_kind: str) -> str | None:
    """The provenance tag of the model's input (None: priced by its values alone)."""
    if input_kind == REAL:
        return REAL
    if input_kind == SPIKES:
        if not is_binary(x):
            raise ValueError("input_kind='spikes' but example_input has values other than 0 and 1; "
                             f"allowed input_kind values: {', '.join(INPUT_KINDS)}")
        return SPIKES
    if input_kind == COUNTS:
        if not is_spike_count(x):
            raise ValueError("input_kind='counts' but example_input has negative or non-integer values; "
                             f"allowed input_kind values: {', '.join(INPUT_KINDS)}")
        return COUNTS
    declared = declared_input_kind(model)  # auto: trust a declaration only when the values fit it
    if declared == COUNTS and is_spike_count(x) and not is_binary(x):
        return COUNTS
    if declared == REAL:
        return REAL
    return None


def _device_of(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _reset_state(model: nn.Module) -> None:
    """``model.reset_state()`` if it has one, else ``reset_state()`` on every submodule that has it; then
    every foreign neuron (snnTorch, SpikingJelly) is reset through its adapter."""
    reset = getattr(model, "reset_state", None)
    if callable(reset):
        reset()
    else:
        for module in model.modules():
            reset = getattr(module, "reset_state", None)
            if callable(reset):
                reset()
    for module in model.modules():
        adapter = adapter_for(module)
        if adapter is not None:
            adapter.reset(module)


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Fork the RNG and seed it for the measuring pass (no-op when ``seed`` is None)."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield
