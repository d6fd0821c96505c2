"""45 nm energy tables (Horowitz, ISSCC 2014) and the rules that extend them to other bit widths.

Compute: a MAC is one multiply plus one add; an accumulate (AC) is one add.
Memory: energy per 64-bit access, chosen by the size of the memory that must hold the weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PJ = 1e-12

# Horowitz 2014, 45 nm, per operation: (multiply, add) in joules.
FLOAT_OPS_45NM: dict[int, tuple[float, float]] = {
    32: (3.7 * PJ, 0.9 * PJ),  # fp32: MAC 4.6 pJ, add 0.9 pJ
    16: (1.1 * PJ, 0.4 * PJ),  # fp16: MAC 1.5 pJ, add 0.4 pJ
}
INT8_OPS_45NM: tuple[float, float] = (0.2 * PJ, 0.03 * PJ)  # int8: MAC 0.23 pJ, add 0.03 pJ

INT_SCALING_RULE = (
    "integer b-bit ops are scaled from int8: multiply 0.2 pJ x (b/8)^2, add 0.03 pJ x (b/8) "
    "(int8 exact; int32 gives 3.2/0.12 pJ against Horowitz's 3.1/0.1 pJ)"
)


@dataclass(frozen=True)
class OpEnergy:
    """Energy of one multiply-accumulate and one accumulate in a number format.

    Example:
        >>> op = op_energy(32, "float")
        >>> round(op.mac_j * 1e12, 2), round(op.ac_j * 1e12, 2)
        (4.6, 0.9)
    """

    name: str  # "fp32", "fp16", "int8", "int4", ...
    bits: int
    mult_j: float
    add_j: float

    @property
    def mac_j(self) -> float:
        return self.mult_j + self.add_j

    @property
    def ac_j(self) -> float:
        return self.add_j


def op_energy(bits: int, number_format: str = "int") -> OpEnergy:
    """Per-op energy for ``bits``-wide ``"float"`` (16 or 32) or ``"int"`` (any b >= 1) arithmetic."""
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
        raise ValueError(f"bits={bits!r} must be a positive integer")
    if number_format == "float":
        if bits not in FLOAT_OPS_45NM:
            raise ValueError(f"bits={bits} has no float figure; allowed for float: {sorted(FLOAT_OPS_45NM)}")
        mult, add = FLOAT_OPS_45NM[bits]
        return OpEnergy(f"fp{bits}", bits, mult, add)
    if number_format == "int":
        scale = bits / 8
        return OpEnergy(f"int{bits}", bits, INT8_OPS_45NM[0] * scale**2, INT8_OPS_45NM[1] * scale)
    raise ValueError(f"number_format={number_format!r} is not allowed; allowed: float, int")


@dataclass(frozen=True)
class EnergyPreset:
    """Default arithmetic for layers that are not quantized (``weight_bits`` absent or 32).

    Example:
        >>> ENERGY_PRESETS["45nm-fp16"].ops.name
        'fp16'
    """

    name: str
    number_format: str  # "float" | "int"
    bits: int  # width of unquantized weights, activations and membrane potentials

    @property
    def ops(self) -> OpEnergy:
        return op_energy(self.bits, self.number_format)


ENERGY_PRESETS: dict[str, EnergyPreset] = {
    p.name: p
    for p in (
        EnergyPreset("45nm-fp32", "float", 32),
        EnergyPreset("45nm-fp16", "float", 16),
        EnergyPreset("45nm-int8", "int", 8),
    )
}


def get_preset(name: str) -> EnergyPreset:
    """The preset called ``name``; ``ValueError`` lists the allowed names."""
    if name not in ENERGY_PRESETS:
        raise ValueError(f"preset={name!r} is not allowed; allowed: {', '.join(ENERGY_PRESETS)}")
    return ENERGY_PRESETS[name]


def mixed_op_energy(weight_bits: int, act_bits: int) -> OpEnergy:
    """A MAC of a ``weight_bits``-bit integer weight and an ``act_bits``-bit integer activation: the
    multiply scales with the product of the widths, the add with the wider one (``INT_SCALING_RULE``
    when both are equal).

    Example:
        >>> op = mixed_op_energy(4, 3)
        >>> op.name, round(op.mac_j * 1e12, 4)
        ('int4x3', 0.0525)
        >>> mixed_op_energy(8, 8).mac_j == op_energy(8, "int").mac_j
        True
    """
    for name, bits in (("weight_bits", weight_bits), ("act_bits", act_bits)):
        if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
            raise ValueError(f"{name}={bits!r} must be a positive integer")
    mult = INT8_OPS_45NM[0] * (weight_bits / 8) * (act_bits / 8)
    add = INT8_OPS_45NM[1] * max(weight_bits, act_bits) / 8
    return OpEnergy(f"int{weight_bits}x{act_bits}", max(weight_bits, act_bits), mult, add)


def twin_activation_bits(num_steps: int) -> int:
    """Activation width of a standard twin bit-matched to a ``num_steps``-step spiking model:
    ``ceil(log2(T + 1))`` bits hold a spike count 0..T, what a neuron's T binary outputs carry.

    Example:
        >>> [twin_activation_bits(t) for t in (1, 2, 4, 16)]
        [1, 2, 3, 5]
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps={num_steps!r} must be a positive integer")
    return math.ceil(math.log2(num_steps + 1))


def layer_op_energy(preset: EnergyPreset, weight_bits: int | None) -> OpEnergy:
    """Arithmetic of one layer: the preset's unless its weights are quantized to fewer than 32 bits.

    A quantized layer (``weight_bits`` b < 32) computes in b-bit integers (see ``INT_SCALING_RULE``).
    """
    if weight_bits is None or weight_bits >= 32:
        return preset.ops
    return op_energy(int(weight_bits), "int")


# ---------------------------------------------------------------------------------------- memory
@dataclass(frozen=True)
class MemoryLevel:
    """A memory that holds up to ``capacity_bytes`` and costs ``access_j`` per 64-bit access.

    Example:
        >>> select_memory_level(20 * 1024).name
        'sram-32kb'
    """

    name: str
    capacity_bytes: float
    access_j: float  # joules per 64-bit access


MEMORY_LEVELS: tuple[MemoryLevel, ...] = (
    MemoryLevel("sram-8kb", 8 * 1024, 10 * PJ),
    MemoryLevel("sram-32kb", 32 * 1024, 20 * PJ),
    MemoryLevel("sram-1mb", 1024**2, 100 * PJ),
    MemoryLevel("dram", math.inf, 1.3e-9),  # Horowitz gives 1.3-2.6 nJ; the low end is used
)
WORD_BITS = 64


def get_memory_level(name: str) -> MemoryLevel:
    """The memory level called ``name``; ``ValueError`` lists the allowed names."""
    for level in MEMORY_LEVELS:
        if level.name == name:
            return level
    raise ValueError(f"memory_level={name!r} is not allowed; allowed: {', '.join(m.name for m in MEMORY_LEVELS)}")


def select_memory_level(weight_bytes: float) -> MemoryLevel:
    """The smallest memory in ``MEMORY_LEVELS`` that holds ``weight_bytes`` of weights."""
    if not weight_bytes >= 0:
        raise ValueError(f"weight_bytes={weight_bytes!r} must be >= 0")
    return next(level for level in MEMORY_LEVELS if weight_bytes <= level.capacity_bytes)


def memory_energy(bits: float, level: MemoryLevel) -> float:
    """Joules to move ``bits`` through ``level``: ``bits / 64`` accesses (partial words pro rata).

    Example:
        >>> memory_energy(128, get_memory_level("sram-8kb")) == 2 * 10e-12
        True
    """
    if not bits >= 0:
        raise ValueError(f"bits={bits!r} must be >= 0")
    return bits / WORD_BITS * level.access_j


# -------------------------------------------------------------------------------------- dataflow
# How a layer's T time steps are scheduled on the accelerator, and whether elementwise epilogues are
# fused into the layer before them; it decides how often weights, membrane potentials and
# intermediate activations cross the memory boundary (compute is the same under all of them).
DATAFLOWS: dict[str, str] = {
    "step-major": (
        "the network runs one time step at a time (as a neuromorphic core does): every layer reads its "
        "weights once per step it runs, and every neuron reads and writes its membrane every step"
    ),
    "time-batched": (
        "each layer runs all T steps of its input before the next layer starts (hstlab's multi-step "
        "execution; parallel time batching, Lee, Zhang & Li, HPCA 2022): a layer reads its weights once "
        "per call and reuses them for every step, and a neuron keeps its membrane in a register across "
        "the steps of one call, reading and writing it once per call"
    ),
    "fused": (
        "time-batched, and each Linear/Conv layer runs its elementwise epilogue in the same kernel (as "
        "inference compilers fuse Conv+BatchNorm+ReLU, and as neuromorphic cores accumulate synaptic input "
        "straight into the membrane): an activation function or spiking neuron whose input is a Linear/Conv "
        "output (through folded BatchNorm, pooling, dropout or reshapes) takes it from the accumulator, so "
        "it is not read, and, when nothing else reads that output (a residual add, a copy, the caller), "
        "it is not written either; the activation's or neuron's own output is written as usual"
    ),
}


DATAFLOW_HELP = ("weights and membranes moved every step (step-major), once per layer call (time-batched), "
                 "or once per call with activations and neurons run inside the layer before them (fused)")


def check_dataflow(name: str) -> str:
    """``name`` if it is one of ``DATAFLOWS``; else ``ValueError`` naming the allowed values."""
    if name not in DATAFLOWS:
        raise ValueError(f"dataflow={name!r} is not allowed; allowed: {', '.join(DATAFLOWS)}")
    return name


# ------------------------------------------------------------------------------- elementwise ops
# MAC-equivalents per element for non-linear layers that run on real values (counted as MACs).
ELEMENTWISE_MACS: dict[str, float] = {
    "layernorm": 4.0,  # mean, variance, normalize, affine
    "groupnorm": 4.0,
    "rmsnorm": 3.0,
    "softmax": 3.0,  # exp (as one MAC), sum, divide
    "gelu": 4.0,
    "silu": 4.0,
    "sigmoid": 4.0,
    "tanh": 4.0,
}
# Accumulate-equivalents per element for elementwise layers cheaper than a multiply (counted as ACs).
ELEMENTWISE_ACS: dict[str, float] = {
    "relu": 1.0,  # one comparison, priced as an add
    "shiftmax": 3.0,  # bipolar attention's base-2 softmax per score: max-subtract, sum of shifted 1s, shift-divide
}
# Elementwise kinds that a fused Linear/Conv epilogue can apply in registers (the "fused" dataflow);
# normalizations and softmax need whole rows and stay separate kernels.
EPILOGUE_KINDS: frozenset[str] = frozenset({"relu", "gelu", "silu", "sigmoid", "tanh", "neuron"})
