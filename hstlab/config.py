"""One config drives every HST-Net variant: global fields plus optional per-layer overrides.

Every field is a string, number, bool or tuple of those, so a config serializes to JSON and
back exactly. Invalid values raise ``ValueError`` naming the field, the value and what is
allowed. Types are checked from the dataclass annotations (a new field needs no extra code:
bools must be bools, integers integers, floats finite numbers; lists become tuples), float
ranges come from ``FLOAT_RANGES`` and choices from the tuples below.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import numbers
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

# Name tuples that declare a registry's names (ATTENTION_KINDS, MLP_KINDS, NEURONS, SURROGATES,
# TOKENIZERS, POS_ENCODINGS, RESIDUALS, STAGE_EMBEDS): the torch modules build their registries
# from them (``Registry(kind, declared=...)``) and register each implementation under a declared
# name, so config validation and the CLI know the names without importing torch.
# tests/test_registries.py checks each declared name has exactly one implementation.
MODES = ("spiking", "standard")
MODE_LETTERS = {"S": "spiking", "T": "standard"}
ATTENTION_KINDS = ("ssa", "sdsa", "qk", "qk_channel", "conv", "softmax", "statten", "emsa", "bipolar", "lateral",
                   "spikegpt")
MLP_KINDS = ("mlp", "emsp")  # spiking MLP halves: Spikformer's MLP or SEMM's channel-wise experts (EMSP)
NON_CAUSAL_KINDS = ("statten",)  # attention kinds with no causal=True form
NEURONS = ("lif", "plif", "alif", "ilif", "ternary")
SURROGATES = ("atan", "sigmoid", "fast_sigmoid", "triangle")
RESETS = ("hard", "soft")
THRESHOLD_BALANCE = ("off", "hold", "learn")  # adaptive threshold balancing (hstlab.neurons.balance)
FIRING_RULES = (">", ">=")  # a neuron fires on H > θ (snnTorch) or H >= θ (SpikingJelly)
TOKENIZERS = ("sps", "events", "linear")
POS_ENCODINGS = ("cpg", "sincos", "learned", "none")
RESIDUALS = ("add", "sew_add", "sew_and", "sew_iand", "membrane")
MASK_POLICIES = ("random", "significance")
HEADS = ("classify", "classify_steps", "sequence")
ALLOWED_BITS = (2, 3, 4, 5, 6, 7, 8, 16, 32)
ALLOWED_MEMBRANE_BITS = (4, 6, 8, 12, 16, 32)  # 32: float membranes
MAX_LAYERS = 1024  # n_layer above this is refused before any layer is created (validation stays fast)
MAX_DIVISORS_SHOWN = 12  # the n_head error lists at most this many divisors of n_embd
STAGE_KINDS = ("conv", "transformer")  # a stage's blocks: separable-conv blocks or attention blocks
STAGE_EMBEDS = ("conv", "speds")  # a stage's downsampling patch embedding (hstlab.staged)
STAGE_PROJECTIONS = ("linear", "repconv")  # how a transformer stage computes Q, K, V and the output
REPCONV_KINDS = ("ssa", "sdsa", "qk", "qk_channel", "statten", "emsa")  # spiking kinds with linear Q/K/V (repconv)

# Range of every float field, as (low, high, low_inclusive, high_inclusive); None: unbounded.
# Types come from the dataclass annotations; a test checks every float field has a range here.
FLOAT_RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "mlp_ratio": (0.0, None, False, False),
    "cpg_threshold": (-1.0, 1.0, True, True),  # compared with sin/cos in [-1, 1]
    "cpg_wmax": (0.0, None, False, False),
    "attn_scale": (0.0, None, False, False),
    "attn_threshold": (0.0, None, False, False),
    "tim_alpha": (0.0, 1.0, True, True),
    "mask_ratio": (0.0, 1.0, True, False),
    "tau": (1.0, None, False, False),  # charge divides by tau
    "threshold": (0.0, None, False, False),
    "surrogate_alpha": (0.0, None, False, False),
    "alif_beta": (0.0, None, True, False),
    "alif_tau": (1.0, None, False, False),
    "ternary_alpha": (0.0, None, False, False),  # ternary spikes {-α, 0, α}: α > 0
    "threshold_balance_rate": (0.0, 1.0, False, False),
}


def _show(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (hostile values can be huge)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 15]}...<{len(text)} chars>"


def _choice(field_name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{field_name}={_show(value)} is not allowed; allowed: {', '.join(map(str, allowed))}")


def _positive_int(field_name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{field_name}={_show(value)} must be an integer >= {minimum}")


def _check_range(field_name: str, value: float, bounds: tuple[float | None, float | None, bool, bool]) -> None:
    low, high, low_in, high_in = bounds
    below = low is not None and (value < low or (value == low and not low_in))
    above = high is not None and (value > high or (value == high and not high_in))
    if below or above:
        left = "(-inf" if low is None else ("[" if low_in else "(") + f"{low:g}"
        right = "inf)" if high is None else f"{high:g}" + ("]" if high_in else ")")
        raise ValueError(f"{field_name}={_show(value)} must be a finite number in {left}, {right}")


def divisors(n: int) -> list[int]:
    """Divisors of ``n`` in increasing order, found in O(sqrt n).

    Example:
        >>> divisors(30)
        [1, 2, 3, 5, 6, 10, 15, 30]
    """
    small, large = [], []
    for d in range(1, math.isqrt(n) + 1):
        if n % d == 0:
            small.append(d)
            if d != n // d:
                large.append(n // d)
    return small + large[::-1]


def _coerce(label: str, value: Any, hint: Any) -> Any:
    """``value`` checked against the type annotation ``hint`` and normalized (lists become tuples,
    integers in float fields become floats, mappings in dataclass fields become that dataclass).
    Raises ``ValueError`` naming ``label``. Bools are never numbers and strings never bools."""
    return _checker(hint)(label, value)


def _fail(label: str, value: Any, wanted: str) -> ValueError:
    return ValueError(f"{label}={_show(value)} must be {wanted}, not a {type(value).__name__}")


def _check_bool(label: str, value: Any) -> bool:
    if value is True or value is False:
        return value
    if type(value).__module__ == "numpy" and type(value).__name__ in ("bool_", "bool"):
        return bool(value)  # numpy's bool (from tables and arrays) is a bool; its 0/1 ints are not
    raise _fail(label, value, "True or False")


def _check_int(label: str, value: Any) -> int:
    if type(value) is int:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _fail(label, value, "an integer")
    return int(value)  # numpy integers


def _check_float(label: str, value: Any) -> float:
    if type(value) is not float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise _fail(label, value, "a number")
        try:
            value = float(value)
        except OverflowError:
            raise ValueError(f"{label}={_show(value)} must be a finite number") from None
    if not math.isfinite(value):
        raise ValueError(f"{label}={_show(value)} must be a finite number")
    return value


def _check_str(label: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    raise _fail(label, value, "a string")


@functools.cache
def _checker(hint: Any) -> Callable[[str, Any], Any]:
    """A function ``(label, value) -> normalized value`` for the annotation ``hint``, built once."""
    simple = {bool: _check_bool, int: _check_int, float: _check_float, str: _check_str}
    if hint in simple:
        return simple[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # X | None
        allows_none = type(None) in args
        inner = _checker(next(a for a in args if a is not type(None)))
        return lambda label, value: None if value is None and allows_none else inner(label, value)
    if origin is typing.Literal:
        def check_literal(label: str, value: Any) -> Any:
            if value not in args:
                raise ValueError(f"{label}={_show(value)} is not allowed; allowed: {', '.join(map(str, args))}")
            return value
        return check_literal
    if origin is tuple:
        variadic = len(args) == 2 and args[1] is Ellipsis
        items = [_checker(a) for a in (args[:1] if variadic else args)]

        def check_tuple(label: str, value: Any) -> tuple:
            if not isinstance(value, (tuple, list)):
                raise _fail(label, value, "a tuple (or list)")
            if variadic:
                return tuple(items[0](f"{label}[{i}]", v) for i, v in enumerate(value))
            if len(value) != len(items):
                raise ValueError(f"{label}={_show(value)} must have {len(items)} items, got {len(value)}")
            return tuple(check(f"{label}[{i}]", v) for i, (check, v) in enumerate(zip(items, value)))
        return check_tuple
    if dataclasses.is_dataclass(hint):
        def check_dataclass(label: str, value: Any) -> Any:
            if isinstance(value, Mapping):
                _check_keys(hint, value, label)
                value = hint(**value)
            if not isinstance(value, hint):
                raise _fail(label, value, f"a {hint.__name__} or a dict of its fields")
            changed = {k: v for k, v in _normalized(value, f"{label}.").items() if v is not getattr(value, k)}
            return dataclasses.replace(value, **changed) if changed else value
        return check_dataclass
    raise TypeError(f"no type check for annotation {hint!r}")  # a field with a new kind of type


@functools.cache
def _field_checkers(cls: type) -> tuple[tuple[str, Callable[[str, Any], Any]], ...]:
    """``(field name, checker)`` for every field of a config dataclass, from its resolved annotations."""
    hints = typing.get_type_hints(cls)
    return tuple((f.name, _checker(hints[f.name])) for f in fields(cls))


def _field_types(cls: type) -> dict[str, Any]:
    """``{field name: resolved type annotation}`` of a config dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def _normalized(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Every field of ``obj`` type-checked and normalized (see :func:`_coerce`); raises ``ValueError``
    naming ``prefix`` + the field."""
    return {name: check(prefix + name if prefix else name, getattr(obj, name))
            for name, check in _field_checkers(type(obj))}


def _apply_normalized(obj: Any) -> None:
    for name, value in _normalized(obj).items():
        if value is not getattr(obj, name):
            object.__setattr__(obj, name, value)


def _check_keys(cls: type, data: Any, what: str) -> None:
    if not isinstance(data, Mapping):
        raise ValueError(f"{what} must be a dict of field values, got {type(data).__name__}")
    known = [f.name for f in fields(cls)]
    unknown = sorted(map(str, set(data) - set(known)))
    if unknown:
        raise ValueError(f"unknown {what} field(s) {unknown}; allowed: {sorted(known)}")


@dataclass(frozen=True)
class LayerSpec:
    """Per-layer overrides; ``None`` follows the global field of :class:`HSTConfig`.

    Example:
        >>> LayerSpec(attn_mode="standard", tim=True).attn_mode
        'standard'
    """

    attn_mode: str | None = None
    mlp_mode: str | None = None
    attention: str | None = None
    residual: str | None = None
    tim: bool | None = None
    mask_ratio: float | None = None
    mask_policy: str | None = None
    attn_block: int | None = None
    experts: int | None = None
    mlp_kind: str | None = None

    def validate(self, prefix: str = "") -> None:
        """Raise ``ValueError`` naming the first invalid field (``prefix`` + name). A spec is
        validated when a config uses it (with ``prefix="layers[i]."``) or by :meth:`from_dict`."""
        _normalized(self, prefix)
        self._validate_values(prefix)

    def _validate_values(self, prefix: str) -> None:
        for name, allowed in _LAYER_CHOICES.items():
            if getattr(self, name) is not None:
                _choice(prefix + name, getattr(self, name), allowed)
        if self.mask_ratio is not None:
            _check_range(prefix + "mask_ratio", self.mask_ratio, FLOAT_RANGES["mask_ratio"])
        for name in ("attn_block", "experts"):
            if getattr(self, name) is not None:
                _positive_int(prefix + name, getattr(self, name))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerSpec:
        """A spec from ``{field: value}``; unknown fields raise ``ValueError`` listing the allowed ones."""
        _check_keys(cls, data, "LayerSpec")
        spec = cls(**data)
        spec.validate()
        return spec


_LAYER_CHOICES = {"attn_mode": MODES, "mlp_mode": MODES, "attention": ATTENTION_KINDS,
                  "residual": RESIDUALS, "mask_policy": MASK_POLICIES, "mlp_kind": MLP_KINDS}


@dataclass(frozen=True)
class StageSpec:
    """One stage of a staged (hierarchical) model: a downsampling patch embedding, then ``depth`` blocks.

    ``kind``: ``transformer`` (attention blocks, ``attention`` kind, ``None`` follows the config's)
    or ``conv`` (Meta-SpikeFormer's separable-conv token mixer and 3x3-conv MLP). ``embed``: the
    patch embedding entering the stage, which divides the spatial grid by ``stride``: ``conv``
    (Meta-SpikeFormer: [neuron] conv ``embed_kernel`` x ``embed_kernel`` with bias, BN) or
    ``speds`` (QKFormer's spiking patch embedding with deformed shortcut; stride 1, 2, 4 or 8 for
    the first stage, 1 or 2 later). ``projection``: ``linear`` or Meta-SpikeFormer's
    re-parameterisable ``repconv`` Q/K/V/output projections. See :mod:`hstlab.staged`.

    Example:
        >>> StageSpec(depth=2, n_embd=64, n_head=4, kind="conv").kind
        'conv'
    """

    depth: int = 1
    n_embd: int = 64
    n_head: int = 1
    kind: str = "transformer"
    attention: str | None = None
    mlp_ratio: float | None = None  # None follows HSTConfig.mlp_ratio
    embed: str = "conv"
    stride: int = 2
    embed_kernel: int = 3  # embed="conv": the conv's odd kernel side
    projection: str = "linear"

    def _validate_values(self, prefix: str, first: bool) -> None:
        _positive_int(prefix + "depth", self.depth)
        if self.depth > MAX_LAYERS:
            raise ValueError(f"{prefix}depth={self.depth} is above the limit of {MAX_LAYERS} layers")
        for name in ("n_embd", "n_head", "stride", "embed_kernel"):
            _positive_int(prefix + name, getattr(self, name))
        if self.n_embd % self.n_head:
            raise ValueError(f"{prefix}n_embd={self.n_embd} is not divisible by {prefix}n_head={self.n_head}; "
                             f"allowed n_head for this width: {divisors(self.n_embd)[:MAX_DIVISORS_SHOWN]}")
        _choice(prefix + "kind", self.kind, STAGE_KINDS)
        _choice(prefix + "embed", self.embed, STAGE_EMBEDS)
        _choice(prefix + "projection", self.projection, STAGE_PROJECTIONS)
        if self.attention is not None:
            _choice(prefix + "attention", self.attention, ATTENTION_KINDS)
        if self.projection == "repconv" and self.attention is not None and self.attention not in REPCONV_KINDS:
            raise ValueError(f"{prefix}projection='repconv' replaces linear Q/K/V projections; attention "
                             f"{self.attention!r} has none; allowed with repconv: {', '.join(REPCONV_KINDS)}")
        if self.kind == "conv" and (self.attention is not None or self.projection != "linear"):
            raise ValueError(f"{prefix}kind='conv' has no attention: {prefix}attention must be None and "
                             f"{prefix}projection 'linear', got {self.attention!r} and {self.projection!r}")
        if self.mlp_ratio is not None:
            _check_range(prefix + "mlp_ratio", self.mlp_ratio, FLOAT_RANGES["mlp_ratio"])
            if int(self.n_embd * self.mlp_ratio) < 1:
                raise ValueError(f"{prefix}mlp_ratio={self.mlp_ratio!r} gives an MLP hidden width of 0 "
                                 f"for {prefix}n_embd={self.n_embd}; it must be >= 1")
        if self.embed == "conv" and self.embed_kernel % 2 == 0:
            raise ValueError(f"{prefix}embed_kernel={self.embed_kernel} must be odd (the conv pads "
                             "kernel // 2 on each side)")
        strides = (1, 2, 4, 8) if first else (1, 2)
        if self.embed == "speds" and self.stride not in strides:
            where = "the first stage" if first else "a later stage"
            raise ValueError(f"{prefix}stride={self.stride} is not allowed for embed='speds' in {where}; "
                             f"allowed: {', '.join(map(str, strides))}")


@dataclass(frozen=True)
class ResolvedLayer:
    """A layer's settings with every override applied (no ``None`` left)."""

    index: int
    attn_mode: str
    mlp_mode: str
    attention: str
    residual: str
    tim: bool
    mask_ratio: float
    mask_policy: str
    attn_block: int
    experts: int
    mlp_kind: str
    stage: int | None = None  # staged configs: the stage this layer belongs to
    block: str = "transformer"  # the stage's kind: "transformer" or "conv"

    @property
    def attention_kind(self) -> str:
        """The attention actually built: a standard-mode layer always uses softmax attention; a
        conv-stage layer mixes tokens with a separable convolution ("sepconv")."""
        if self.block == "conv":
            return "sepconv"
        return self.attention if self.attn_mode == "spiking" else "softmax"

    @property
    def mlp_built(self) -> str:
        """The MLP kind actually built: a standard-mode MLP half is always the GELU MLP ("mlp")."""
        return self.mlp_kind if self.mlp_mode == "spiking" else "mlp"


@dataclass(frozen=True)
class HSTConfig:
    """Everything needed to build an HST-Net; ``layers`` holds one :class:`LayerSpec` per layer.

    Example:
        >>> cfg = HSTConfig(n_layer=2, n_embd=32, n_head=2, num_steps=2)
        >>> cfg.with_modes("ST").layer(1).attn_mode
        'standard'
    """

    name: str = "custom"
    # shape of the network
    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    mlp_ratio: float = 4.0
    num_steps: int = 4  # T: spiking time steps
    num_classes: int = 10
    head: str = "classify"  # classify -> [B, C]; classify_steps -> [T, B, C] in training (TET), [B, C] in eval; sequence -> [L, B, C]
    # input and tokenizer
    input_shape: tuple[int, ...] = (2, 34, 34)  # per step: (C, H, W) for frames, (C,) for sequences
    tokenizer: str = "sps"
    tokenizer_mode: str | None = None  # spiking or standard stem; None follows layer 0's attn_mode
    sps_pools: tuple[bool, ...] = (False, True, True, True)  # max-pool after each of the 4 stem stages
    sps_channels: tuple[int, ...] = ()  # widths of the first 3 stem stages; () means D/8, D/4, D/2
    sps_pool_first: bool = False  # stem stage order conv-BN-pool-neuron (pool the membrane input, not spikes)
    patch_size: int = 4  # events tokenizer: spatial patch side
    event_subbins: int = 4  # events tokenizer: sub-bins per step for the spike-timing embedding
    seq_len: int = 32  # linear tokenizer: longest sequence (bins become tokens)
    # positional encoding
    pos_encoding: str = "cpg"
    cpg_neurons: int = 32  # N_n oscillator neurons (pairs of sin/cos)
    cpg_threshold: float = 0.8
    cpg_wmax: float = 10000.0
    # attention
    attention: str = "ssa"
    attn_mode: str = "spiking"
    mlp_mode: str = "spiking"
    attn_scale: float = 0.125
    attn_threshold: float = 0.5
    conv_kernel: int = 3
    causal: bool = False
    grad_stabilization: bool = False
    attn_block: int = 2  # statten: time steps per spatial-temporal block (must divide num_steps)
    experts: int = 4  # emsa: head-wise experts (D splits into this many heads); emsp: channel groups
    mlp_kind: str = "mlp"  # spiking MLP halves: "mlp" (Spikformer) or "emsp" (SEMM experts)
    # temporal interaction, residuals, masking
    tim: bool = False
    tim_alpha: float = 0.5
    tim_kernel: int = 3
    residual: str = "sew_add"
    mask_ratio: float = 0.0
    mask_policy: str = "random"
    mask_in_eval: bool = False
    # neurons
    neuron: str = "lif"
    tau: float = 2.0
    threshold: float = 1.0
    reset: str = "hard"
    firing_rule: str = ">"  # fire on H > θ (snnTorch) or H >= θ (SpikingJelly, the released Spikformer/SDT)
    surrogate: str = "atan"
    surrogate_alpha: float = 2.0
    detach_reset: bool = True
    alif_beta: float = 0.2  # threshold jump after a spike
    alif_tau: float = 20.0  # threshold relaxation time constant
    spike_max: int = 4  # neuron="ilif": D, the largest integer spike (D binary virtual steps at inference)
    ternary_alpha: float = 1.0  # neuron="ternary": spike amplitude α of {-α, 0, α} (initial value if learned)
    ternary_learn_alpha: bool = True  # neuron="ternary": learn α (False: hold it fixed)
    threshold_balance: str = "off"  # per-layer thresholds from a warm-up on data, then "hold" or "learn"
    threshold_balance_rate: float = 0.1  # warm-up: fraction of neuron-steps set to cross the threshold
    # quantization
    weight_bits: int = 32
    membrane_bits: int = 32  # < 32: fixed-point membranes in [-4θ, 4θ), step θ / 2**(bits - 3)
    # per-layer overrides and training-time mode schedule [(epoch, "SSTT"), ...]
    layers: tuple[LayerSpec, ...] = field(default_factory=tuple)
    mode_schedule: tuple[tuple[int, str], ...] = field(default_factory=tuple)
    # staged (hierarchical) models: () is a flat model; see StageSpec and with_stages
    stages: tuple[StageSpec, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        _apply_normalized(self)
        self._validate_depth()
        if not self.layers:
            object.__setattr__(self, "layers", tuple(LayerSpec() for _ in range(self.n_layer)))
        self._validate_values()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field, its value and what is allowed.

        Every field's type comes from its annotation (bools must be bools, integers integers,
        floats finite numbers); ranges and choices from the tables above. Runs in microseconds
        for any config: sizes are checked by :func:`hstlab.sizing.estimate_size` at build time.
        """
        _normalized(self)
        self._validate_values()

    def _validate_values(self) -> None:
        """:meth:`validate` for a config whose fields already have their types."""
        self._validate_depth()
        for name in ("n_embd", "n_head", "num_steps", "num_classes", "patch_size",
                     "event_subbins", "seq_len", "conv_kernel", "tim_kernel", "attn_block", "experts",
                     "spike_max"):
            _positive_int(name, getattr(self, name))
        if self.n_embd % self.n_head:
            allowed = divisors(self.n_embd)
            shown = str(allowed[:MAX_DIVISORS_SHOWN])
            if len(allowed) > MAX_DIVISORS_SHOWN:
                shown = f"{shown[:-1]}, ... ({len(allowed) - MAX_DIVISORS_SHOWN} more)]"
            raise ValueError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}; "
                f"allowed n_head for this width: {shown}"
            )
        for name, bounds in FLOAT_RANGES.items():
            _check_range(name, getattr(self, name), bounds)
        if int(self.n_embd * self.mlp_ratio) < 1:
            raise ValueError(f"mlp_ratio={self.mlp_ratio!r} gives an MLP hidden width of "
                             f"int(n_embd * mlp_ratio) = 0 for n_embd={self.n_embd}; it must be >= 1")
        _choice("head", self.head, HEADS)
        _choice("tokenizer", self.tokenizer, TOKENIZERS)
        if self.tokenizer_mode is not None:
            _choice("tokenizer_mode", self.tokenizer_mode, MODES)
        _choice("pos_encoding", self.pos_encoding, POS_ENCODINGS)
        for name, allowed in _LAYER_CHOICES.items():
            _choice(name, getattr(self, name), allowed)
        _choice("neuron", self.neuron, NEURONS)
        _choice("surrogate", self.surrogate, SURROGATES)
        _choice("reset", self.reset, RESETS)
        _choice("firing_rule", self.firing_rule, FIRING_RULES)
        _choice("threshold_balance", self.threshold_balance, THRESHOLD_BALANCE)
        _choice("weight_bits", self.weight_bits, ALLOWED_BITS)
        _choice("membrane_bits", self.membrane_bits, ALLOWED_MEMBRANE_BITS)
        if self.neuron == "ilif" and self.membrane_bits < 32:
            raise ValueError(f"membrane_bits={self.membrane_bits} is not supported with neuron='ilif' (integer "
                             "spikes keep float membranes); allowed: membrane_bits=32, or another neuron")
        if self.cpg_neurons < 2 or self.cpg_neurons % 2:
            raise ValueError(f"cpg_neurons={self.cpg_neurons!r} must be an even integer >= 2 (sin/cos pairs)")
        self._validate_input_shape()
        self._validate_layers()
        self._validate_schedule()
        if self.stages:
            self._validate_stages()

    def _validate_depth(self) -> None:
        _positive_int("n_layer", self.n_layer)
        if self.n_layer > MAX_LAYERS:
            raise ValueError(f"n_layer={self.n_layer} is above the limit of {MAX_LAYERS} layers "
                             "(hstlab.config.MAX_LAYERS)")

    def _validate_input_shape(self) -> None:
        shape = self.input_shape
        if not all(s > 0 for s in shape):
            raise ValueError(f"input_shape={_show(shape)} must be a tuple of positive integers")
        if self.tokenizer in ("sps", "events") and len(shape) != 3:
            raise ValueError(f"input_shape={shape!r} must be (C, H, W) for tokenizer={self.tokenizer!r}")
        if self.tokenizer == "linear" and len(shape) != 1:
            raise ValueError(f"input_shape={shape!r} must be (C,) for tokenizer='linear'")
        if self.tokenizer == "sps" and len(self.sps_pools) != 4:
            raise ValueError(f"sps_pools={self.sps_pools!r} must have 4 entries, one per stem stage")
        if self.sps_channels and (len(self.sps_channels) != 3 or not all(c > 0 for c in self.sps_channels)):
            raise ValueError(f"sps_channels={self.sps_channels!r} must be () or 3 positive integers "
                             "(widths of the first three stem stages; the last is n_embd)")
        if self.tokenizer == "events" and (shape[1] % self.patch_size or shape[2] % self.patch_size):
            raise ValueError(f"input_shape={shape!r}: H and W must be divisible by patch_size={self.patch_size}")
        if self.head == "sequence" and self.tokenizer != "linear":
            raise ValueError(f"head='sequence' needs tokenizer='linear', got tokenizer={self.tokenizer!r}")

    def _validate_layers(self) -> None:
        if len(self.layers) != self.n_layer:
            raise ValueError(
                f"layers has {len(self.layers)} entries but n_layer={self.n_layer}; give one LayerSpec per layer"
            )
        for i, spec in enumerate(self.layers):
            spec._validate_values(f"layers[{i}].")
        for i, spec in enumerate(self.layers):
            self._validate_kind_fit(i, spec)

    def _validate_kind_fit(self, i: int, spec: LayerSpec, when: str = "") -> None:
        """The fields an attention or MLP kind needs fit the rest of the config (layer ``i`` with
        ``spec``; ``when`` names a mode-schedule entry that gives the layer its modes)."""
        try:
            self._check_kind_fit(i, spec)
        except ValueError as err:
            raise ValueError(f"{when}{err}") from None

    def _check_kind_fit(self, i: int, spec: LayerSpec) -> None:
        layer = self._resolve(i, spec)
        name = lambda field: f"layers[{i}].{field}" if getattr(spec, field) is not None else field  # noqa: E731
        kind = layer.attention_kind
        if kind == "statten" and self.num_steps % layer.attn_block:
            raise ValueError(f"{name('attn_block')}={layer.attn_block} does not divide num_steps={self.num_steps} "
                             f"(attention='statten' splits the steps into blocks); allowed: "
                             f"{', '.join(map(str, divisors(self.num_steps)))}")
        stage = self.stages[layer.stage] if layer.stage is not None else None
        if stage is not None and stage.projection == "repconv" and layer.attn_mode == "spiking" \
                and kind not in REPCONV_KINDS:
            raise ValueError(f"{name('attention')}={kind!r} does not fit stages[{layer.stage}].projection='repconv' "
                             "(it replaces linear Q/K/V projections, which this kind does not have); allowed in "
                             f"that stage: {', '.join(REPCONV_KINDS)}")
        if kind in NON_CAUSAL_KINDS and self.causal:
            allowed = [k for k in ATTENTION_KINDS if k not in NON_CAUSAL_KINDS]
            raise ValueError(f"{name('attention')}={kind!r} does not support causal=True (it computes Q (Kᵀ V) "
                             f"in linear order, which cannot mask later tokens); allowed with causal=True: "
                             f"{', '.join(allowed)}")
        if kind == "spikegpt" and layer.mlp_mode == "spiking" and layer.mlp_kind != "mlp":
            raise ValueError(f"{name('mlp_kind')}={layer.mlp_kind!r} does not apply with attention='spikegpt' (its "
                             "spiking MLP half is SpikeGPT's channel mix); allowed: mlp_kind='mlp'")
        if kind == "bipolar" and layer.tim:
            raise ValueError(f"{name('tim')}=True is not supported with attention='bipolar' (TIM's neurons would "
                             "make its ternary Q binary); allowed: tim=False, or an attention kind other than bipolar")
        if kind == "emsa" and self.n_embd % layer.experts:
            raise ValueError(f"{name('experts')}={layer.experts} does not divide n_embd={self.n_embd} "
                             f"(attention='emsa' makes one head per expert); allowed: "
                             f"{', '.join(map(str, divisors(self.n_embd)[:MAX_DIVISORS_SHOWN]))}")
        hidden = int(self.n_embd * self.mlp_ratio)
        if layer.mlp_built == "emsp" and hidden % layer.experts:
            raise ValueError(f"{name('experts')}={layer.experts} does not divide the MLP hidden width "
                             f"int(n_embd * mlp_ratio)={hidden} (mlp_kind='emsp' splits it into channel groups); "
                             f"allowed: {', '.join(map(str, divisors(hidden)[:MAX_DIVISORS_SHOWN]))}")

    def _validate_stages(self) -> None:
        """Stages: each valid, matching the global depth/width/heads, and dividing the input grid."""
        for i, stage in enumerate(self.stages):
            stage._validate_values(f"stages[{i}].", first=i == 0)
        depth, last = sum(s.depth for s in self.stages), self.stages[-1]
        hint = "; HSTConfig.with_stages(...) sets n_layer, n_embd and n_head from the stages"
        for name, want, what in (("n_layer", depth, "the stages' depths sum to"),
                                 ("n_embd", last.n_embd, "the last stage's n_embd is"),
                                 ("n_head", last.n_head, "the last stage's n_head is")):
            if getattr(self, name) != want:
                raise ValueError(f"{name}={getattr(self, name)} does not match stages: {what} {want}{hint}")
        for name, value, allowed in (("tokenizer", self.tokenizer, ("sps",)), ("head", self.head, ("classify", "classify_steps")),
                                     ("pos_encoding", self.pos_encoding, ("none",))):
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not allowed with stages (the first stage's patch "
                                 f"embedding reads the frames and carries position); allowed: {', '.join(allowed)}")
        h, w = self.input_shape[1:]
        for i, stage in enumerate(self.stages):
            if h % stage.stride or w % stage.stride:
                speds = (1, 2, 4, 8) if i == 0 else (1, 2)
                allowed = [d for d in divisors(math.gcd(h, w)) if stage.embed != "speds" or d in speds]
                raise ValueError(
                    f"stages[{i}].stride={stage.stride} does not fit the input: the {h}x{w} token grid entering "
                    f"stage {i} (input_shape={self.input_shape}) is not divisible by {stage.stride}; allowed "
                    f"strides here: {allowed[:MAX_DIVISORS_SHOWN]}")
            h, w = h // stage.stride, w // stage.stride
        for i in range(self.n_layer):
            spec, stage = self.layers[i], self.stage_of(i)
            if self.stages[stage].kind == "conv" and (spec.tim or (spec.mask_ratio or 0) > 0):
                raise ValueError(f"layers[{i}] is in conv stage {stage} (stages[{stage}].kind='conv'), which "
                                 f"has no attention: tim and mask_ratio do not apply; allowed: tim=False/None, "
                                 f"mask_ratio=0/None, got tim={spec.tim!r}, mask_ratio={spec.mask_ratio!r}")

    def _validate_schedule(self) -> None:
        for i, (epoch, modes) in enumerate(self.mode_schedule):
            _positive_int(f"mode_schedule[{i}][0] (epoch)", epoch, minimum=0)
            _check_mode_letters(f"mode_schedule[{i}][1] (modes)", modes, self.n_layer)
            for j, letter in enumerate(modes):  # the kinds must also fit the modes the schedule switches to
                mode = MODE_LETTERS[letter]
                spec = dataclasses.replace(self.layers[j], attn_mode=mode, mlp_mode=mode)
                self._validate_kind_fit(j, spec, when=f"mode_schedule[{i}][1]={modes!r} at epoch {epoch}: ")

    # ------------------------------------------------------------------ derived values
    def layer(self, index: int) -> ResolvedLayer:
        """The settings of layer ``index`` with the global fields filling every ``None`` (in a
        staged config a stage's ``attention`` comes before the global one)."""
        return self._resolve(index, self.layers[index])

    def _resolve(self, index: int, spec: LayerSpec) -> ResolvedLayer:
        pick = lambda name: getattr(self, name) if getattr(spec, name) is None else getattr(spec, name)  # noqa: E731
        values = {f.name: pick(f.name) for f in fields(LayerSpec)}
        if not self.stages:
            return ResolvedLayer(index=index, **values)
        stage = self.stage_of(index)
        kind = self.stages[stage].kind
        if spec.attention is None and self.stages[stage].attention is not None:
            values["attention"] = self.stages[stage].attention
        if kind == "conv":  # no attention in a conv stage: the global TIM / masking do not apply
            values.update(tim=False, mask_ratio=0.0)
        return ResolvedLayer(index=index, **values, stage=stage, block=kind)

    def stage_of(self, index: int) -> int:
        """The stage holding layer ``index`` (0 for a flat config)."""
        for stage, end in enumerate(itertools.accumulate(s.depth for s in self.stages)):
            if index < end:
                return stage
        return 0 if not self.stages else len(self.stages) - 1

    def stage_grids(self) -> list[tuple[int, int]]:
        """The ``(h, w)`` token grid of every stage (after its patch embedding); [] when flat."""
        grids, (h, w) = [], self.input_shape[1:] if self.stages else (0, 0)
        for stage in self.stages:
            h, w = h // stage.stride, w // stage.stride
            grids.append((h, w))
        return grids

    def resolved_layers(self) -> list[ResolvedLayer]:
        return [self.layer(i) for i in range(self.n_layer)]

    @property
    def stem_mode(self) -> str:
        """Mode of the tokenizer and positional encoding."""
        return self.tokenizer_mode or self.layer(0).attn_mode

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def num_tokens(self) -> int:
        """Tokens per step N (for the linear tokenizer: the longest sequence, ``seq_len``)."""
        if self.stages:
            h, w = self.stage_grids()[-1]
            return h * w
        if self.tokenizer == "sps":
            h, w = self.input_shape[1:]
            for pooled in self.sps_pools:  # MaxPool2d(3, stride 2, pad 1) gives ceil(size / 2)
                h, w = ((h + 1) // 2, (w + 1) // 2) if pooled else (h, w)
            return h * w
        if self.tokenizer == "events":
            return (self.input_shape[1] // self.patch_size) * (self.input_shape[2] // self.patch_size)
        return self.seq_len

    @property
    def input_steps(self) -> int:
        """Length of the input's leading time axis (events: ``num_steps * event_subbins``)."""
        if self.tokenizer == "events":
            return self.num_steps * self.event_subbins
        if self.tokenizer == "linear":
            return self.seq_len
        return self.num_steps

    @property
    def modes(self) -> str:
        """One letter per layer: S if both halves spike, T if both are standard, H if mixed."""
        letters = []
        for layer in self.resolved_layers():
            pair = {layer.attn_mode, layer.mlp_mode}
            letters.append("H" if len(pair) == 2 else ("S" if "spiking" in pair else "T"))
        return "".join(letters)

    # ------------------------------------------------------------------ builders
    def with_modes(self, modes: str | None = None, *, attn: str | None = None, mlp: str | None = None) -> HSTConfig:
        """Set per-layer modes with one letter per layer (S = spiking, T = standard).

        ``modes`` sets attention and MLP together; ``attn`` / ``mlp`` set one half.
        """
        new_layers = list(self.layers)
        for arg_name, letters, targets in (("modes", modes, ("attn_mode", "mlp_mode")),
                                           ("attn", attn, ("attn_mode",)), ("mlp", mlp, ("mlp_mode",))):
            if letters is None:
                continue
            _check_mode_letters(arg_name, letters, self.n_layer)
            for i, letter in enumerate(letters):
                new_layers[i] = dataclasses.replace(new_layers[i], **{t: MODE_LETTERS[letter] for t in targets})
        return dataclasses.replace(self, layers=tuple(new_layers))

    def with_layer(self, index: int, **overrides: Any) -> HSTConfig:
        """Return a copy with ``LayerSpec`` fields of layer ``index`` replaced."""
        if not 0 <= index < self.n_layer:
            raise ValueError(f"layer index {index} out of range for n_layer={self.n_layer}")
        _check_keys(LayerSpec, overrides, "LayerSpec")
        new_layers = list(self.layers)
        new_layers[index] = dataclasses.replace(new_layers[index], **overrides)
        return dataclasses.replace(self, layers=tuple(new_layers))

    def with_depth(self, n_layer: int) -> HSTConfig:
        """Change depth, keeping the first layers' overrides and adding default layers."""
        _positive_int("n_layer", n_layer)
        if self.stages:
            raise ValueError(f"n_layer={n_layer}: a staged config's depth is the sum of its stages' depths; "
                             "change them with with_stages(...)")
        layers = tuple(self.layers[:n_layer]) + tuple(LayerSpec() for _ in range(n_layer - len(self.layers)))
        schedule = tuple(e for e in self.mode_schedule if len(e[1]) == n_layer)
        return dataclasses.replace(self, n_layer=n_layer, layers=layers, mode_schedule=schedule)

    def with_stages(self, stages: Any) -> HSTConfig:
        """A staged copy: ``stages`` (StageSpecs or dicts) sets ``n_layer`` (their depths' sum),
        ``n_embd`` and ``n_head`` (the last stage's) and ``pos_encoding="none"``; per-layer
        overrides are kept for the first layers, as :meth:`with_depth`. ``()`` gives a flat config.

        Example:
            >>> cfg = HSTConfig(input_shape=(2, 32, 32)).with_stages(
            ...     [{"depth": 1, "n_embd": 32, "n_head": 2, "embed": "speds", "stride": 8},
            ...      {"depth": 2, "n_embd": 64, "n_head": 4, "embed": "speds"}])
            >>> cfg.n_layer, cfg.n_embd, cfg.stage_grids()
            (3, 64, [(4, 4), (2, 2)])
        """
        stages = _coerce("stages", stages, tuple[StageSpec, ...])
        if not stages:
            return dataclasses.replace(self, stages=())
        for i, stage in enumerate(stages):  # name the stage field before the totals are formed
            stage._validate_values(f"stages[{i}].", first=i == 0)
        n_layer = sum(s.depth for s in stages)
        _positive_int("n_layer", n_layer)
        layers = tuple(self.layers[:n_layer]) + tuple(LayerSpec() for _ in range(n_layer - len(self.layers)))
        schedule = tuple(e for e in self.mode_schedule if len(e[1]) == n_layer)
        return dataclasses.replace(self, stages=stages, n_layer=n_layer, n_embd=stages[-1].n_embd,
                                   n_head=stages[-1].n_head, pos_encoding="none", layers=layers,
                                   mode_schedule=schedule)

    def modes_at_epoch(self, epoch: int) -> str | None:
        """The mode letters the schedule asks for at ``epoch`` (None: no schedule entry applies)."""
        current = None
        for start, letters in sorted(self.mode_schedule):
            if epoch >= start:
                current = letters
        return current

    # ------------------------------------------------------------------ serialization
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HSTConfig:
        """Inverse of :meth:`to_dict` (also accepts lists where tuples are stored, as JSON gives).

        Example:
            >>> HSTConfig.from_dict({"n_layer": 1, "layers": [{"tim": True}]}).layer(0).tim
            True
        """
        _check_keys(cls, data, "config")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> HSTConfig:
        """Inverse of :meth:`to_json`; invalid JSON raises ``ValueError``."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, TypeError) as err:
            raise ValueError(f"config JSON could not be parsed: {err}") from None
        return cls.from_dict(data)

    @classmethod
    def parse_field(cls, name: str, text: str) -> Any:
        """The value of field ``name`` from command-line text (``--set name=text``), typed by the field.

        Bools take ``true``/``false`` (any case), numbers their usual spelling, strings their text,
        ``none``/``null`` gives None where a field allows it, and tuples and ``layers`` take JSON.
        The result is checked against the field's type; ranges are checked when the config is built.

        Example:
            >>> HSTConfig.parse_field("tim", "False"), HSTConfig.parse_field("mlp_ratio", "2")
            (False, 2.0)
            >>> HSTConfig.parse_field("sps_pools", "[true, false, true, true]")
            (True, False, True, True)
        """
        hints = _field_types(cls)
        if name not in hints:
            raise ValueError(f"unknown config field {name!r}; allowed: {sorted(hints)}")
        hint = hints[name]
        optional = type(None) in typing.get_args(hint)
        if optional and text.strip().lower() in ("none", "null"):
            return None
        base = next((a for a in typing.get_args(hint) if a is not type(None)), hint) if optional else hint
        word = text.strip()
        if base is bool:
            if word.lower() not in ("true", "false"):
                raise ValueError(f"{name}={text!r} must be true or false")
            return word.lower() == "true"
        if base is str:
            return word
        if base in (int, float):
            try:
                value = json.loads(word)
            except json.JSONDecodeError:
                raise ValueError(f"{name}={text!r} must be {'an integer' if base is int else 'a number'}") from None
            return _coerce(name, value, base)
        try:
            value = json.loads(word)
        except json.JSONDecodeError as err:
            raise ValueError(f"{name}={text!r} must be JSON ({err.msg})") from None
        if name == "layers" and isinstance(value, list):
            return tuple(LayerSpec.from_dict(item) if isinstance(item, Mapping) else item for item in value)
        return _coerce(name, value, base)

    @classmethod
    def parse_overrides(cls, items: list[str], flag: str = "--set") -> dict[str, Any]:
        """``["tim=true", "mlp_ratio=2"]`` -> ``{"tim": True, "mlp_ratio": 2.0}`` via :meth:`parse_field`.

        Example:
            >>> HSTConfig.parse_overrides(["weight_bits=8", "attention=sdsa"])
            {'weight_bits': 8, 'attention': 'sdsa'}
        """
        out: dict[str, Any] = {}
        for item in items:
            key, sep, text = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"{flag} {item!r} must be FIELD=VALUE")
            out[key.strip()] = cls.parse_field(key.strip(), text)
        return out

    @classmethod
    def from_preset(cls, name: str, /, **overrides: Any) -> HSTConfig:
        """A named published or built-in configuration; see :func:`hstlab.list_presets`."""
        from hstlab.presets import get_preset

        return get_preset(name, **overrides)


def _check_mode_letters(field_name: str, letters: Any, n_layer: int) -> None:
    if not isinstance(letters, str) or len(letters) != n_layer or set(letters) - set(MODE_LETTERS):
        raise ValueError(
            f"{field_name}={letters!r} must be {n_layer} letters (one per layer), each S (spiking) or T (standard)"
        )
