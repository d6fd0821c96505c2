"""One config drives every HST-Net variant: global fields plus optional per-layer overrides.

Every field is a string, number, bool or tuple of those, so a config serializes to JSON and
back exactly. Invalid values raise ``ValueError`` naming the field, the value and what is
allowed.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any

MODES = ("spiking", "standard")
MODE_LETTERS = {"S": "spiking", "T": "standard"}
ATTENTION_KINDS = ("ssa", "sdsa", "qk", "qk_channel", "conv", "softmax")
NEURONS = ("lif", "plif", "alif")
SURROGATES = ("atan", "sigmoid", "fast_sigmoid", "triangle")
RESETS = ("hard", "soft")
FIRING_RULES = (">", ">=")  # a neuron fires on H > θ (snnTorch) or H >= θ (SpikingJelly)
TOKENIZERS = ("sps", "events", "linear")
POS_ENCODINGS = ("cpg", "sincos", "learned", "none")
RESIDUALS = ("add", "sew_add", "sew_and", "sew_iand", "membrane")
MASK_POLICIES = ("random", "significance")
HEADS = ("classify", "sequence")
ALLOWED_BITS = (2, 3, 4, 5, 6, 7, 8, 16, 32)
ALLOWED_MEMBRANE_BITS = (4, 6, 8, 12, 16, 32)  # 32: float membranes


def _choice(field_name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{field_name}={value!r} is not allowed; allowed: {', '.join(map(str, allowed))}")


def _positive_int(field_name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{field_name}={value!r} must be an integer >= {minimum}")


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

    @property
    def attention_kind(self) -> str:
        """The attention actually built: a standard-mode layer always uses softmax attention."""
        return self.attention if self.attn_mode == "spiking" else "softmax"


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
    head: str = "classify"  # classify -> [B, C]; sequence -> [L, B, C]
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
    # quantization
    weight_bits: int = 32
    membrane_bits: int = 32  # < 32: fixed-point membranes in [-4θ, 4θ), step θ / 2**(bits - 3)
    # per-layer overrides and training-time mode schedule [(epoch, "SSTT"), ...]
    layers: tuple[LayerSpec, ...] = field(default_factory=tuple)
    mode_schedule: tuple[tuple[int, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.layers and isinstance(self.n_layer, int) and self.n_layer >= 1:
            object.__setattr__(self, "layers", tuple(LayerSpec() for _ in range(self.n_layer)))
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field, its value and what is allowed."""
        for name in ("n_layer", "n_embd", "n_head", "num_steps", "num_classes", "patch_size",
                     "event_subbins", "seq_len", "conv_kernel", "tim_kernel"):
            _positive_int(name, getattr(self, name))
        if self.n_embd % self.n_head:
            divisors = [h for h in range(1, self.n_embd + 1) if self.n_embd % h == 0]
            raise ValueError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}; "
                f"allowed n_head for this width: {divisors}"
            )
        if not self.mlp_ratio > 0:
            raise ValueError(f"mlp_ratio={self.mlp_ratio!r} must be > 0")
        _choice("head", self.head, HEADS)
        _choice("tokenizer", self.tokenizer, TOKENIZERS)
        if self.tokenizer_mode is not None:
            _choice("tokenizer_mode", self.tokenizer_mode, MODES)
        _choice("pos_encoding", self.pos_encoding, POS_ENCODINGS)
        _choice("attention", self.attention, ATTENTION_KINDS)
        _choice("attn_mode", self.attn_mode, MODES)
        _choice("mlp_mode", self.mlp_mode, MODES)
        _choice("residual", self.residual, RESIDUALS)
        _choice("mask_policy", self.mask_policy, MASK_POLICIES)
        _choice("neuron", self.neuron, NEURONS)
        _choice("surrogate", self.surrogate, SURROGATES)
        _choice("reset", self.reset, RESETS)
        _choice("firing_rule", self.firing_rule, FIRING_RULES)
        _choice("weight_bits", self.weight_bits, ALLOWED_BITS)
        _choice("membrane_bits", self.membrane_bits, ALLOWED_MEMBRANE_BITS)
        _check_ratio("mask_ratio", self.mask_ratio)
        if not 0.0 <= self.tim_alpha <= 1.0:
            raise ValueError(f"tim_alpha={self.tim_alpha!r} must be in [0, 1]")
        for name in ("tau", "alif_tau"):
            if not getattr(self, name) > 1.0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be > 1 (charge divides by tau)")
        for name in ("threshold", "attn_threshold", "surrogate_alpha", "attn_scale", "cpg_wmax"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be > 0")
        if self.cpg_neurons < 2 or self.cpg_neurons % 2:
            raise ValueError(f"cpg_neurons={self.cpg_neurons!r} must be an even integer >= 2 (sin/cos pairs)")
        self._validate_input_shape()
        self._validate_layers()
        self._validate_schedule()

    def _validate_input_shape(self) -> None:
        shape = self.input_shape
        if not isinstance(shape, tuple) or not all(isinstance(s, int) and s > 0 for s in shape):
            raise ValueError(f"input_shape={shape!r} must be a tuple of positive integers")
        if self.tokenizer in ("sps", "events") and len(shape) != 3:
            raise ValueError(f"input_shape={shape!r} must be (C, H, W) for tokenizer={self.tokenizer!r}")
        if self.tokenizer == "linear" and len(shape) != 1:
            raise ValueError(f"input_shape={shape!r} must be (C,) for tokenizer='linear'")
        if self.tokenizer == "sps" and len(self.sps_pools) != 4:
            raise ValueError(f"sps_pools={self.sps_pools!r} must have 4 entries, one per stem stage")
        if self.sps_channels and (len(self.sps_channels) != 3 or not all(
                isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in self.sps_channels)):
            raise ValueError(f"sps_channels={self.sps_channels!r} must be () or 3 positive integers "
                             "(widths of the first three stem stages; the last is n_embd)")
        if not isinstance(self.sps_pool_first, bool):
            raise ValueError(f"sps_pool_first={self.sps_pool_first!r} must be True or False")
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
            if not isinstance(spec, LayerSpec):
                raise ValueError(f"layers[{i}]={spec!r} must be a LayerSpec")
            checks = (("attn_mode", MODES), ("mlp_mode", MODES), ("attention", ATTENTION_KINDS),
                      ("residual", RESIDUALS), ("mask_policy", MASK_POLICIES))
            for name, allowed in checks:
                value = getattr(spec, name)
                if value is not None:
                    _choice(f"layers[{i}].{name}", value, allowed)
            if spec.mask_ratio is not None:
                _check_ratio(f"layers[{i}].mask_ratio", spec.mask_ratio)

    def _validate_schedule(self) -> None:
        for entry in self.mode_schedule:
            if len(entry) != 2:
                raise ValueError(f"mode_schedule entry {entry!r} must be (epoch, modes)")
            epoch, modes = entry
            _positive_int("mode_schedule epoch", epoch, minimum=0)
            _check_mode_letters("mode_schedule modes", modes, self.n_layer)

    # ------------------------------------------------------------------ derived values
    def layer(self, index: int) -> ResolvedLayer:
        """The settings of layer ``index`` with the global fields filling every ``None``."""
        spec = self.layers[index]
        pick = lambda name: getattr(self, name) if getattr(spec, name) is None else getattr(spec, name)  # noqa: E731
        return ResolvedLayer(index=index, **{f.name: pick(f.name) for f in fields(LayerSpec)})

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
        new_layers = list(self.layers)
        new_layers[index] = dataclasses.replace(new_layers[index], **overrides)
        return dataclasses.replace(self, layers=tuple(new_layers))

    def with_depth(self, n_layer: int) -> HSTConfig:
        """Change depth, keeping the first layers' overrides and adding default layers."""
        _positive_int("n_layer", n_layer)
        layers = tuple(self.layers[:n_layer]) + tuple(LayerSpec() for _ in range(n_layer - len(self.layers)))
        schedule = tuple(e for e in self.mode_schedule if len(e[1]) == n_layer)
        return dataclasses.replace(self, n_layer=n_layer, layers=layers, mode_schedule=schedule)

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
    def from_dict(cls, data: dict[str, Any]) -> HSTConfig:
        """Inverse of :meth:`to_dict` (also accepts lists where tuples are stored, as JSON gives)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; allowed: {sorted(known)}")
        values = dict(data)
        if "input_shape" in values:
            values["input_shape"] = tuple(values["input_shape"])
        if "sps_pools" in values:
            values["sps_pools"] = tuple(bool(p) for p in values["sps_pools"])
        if "sps_channels" in values:
            values["sps_channels"] = tuple(int(c) for c in values["sps_channels"])
        if "layers" in values:
            values["layers"] = tuple(
                spec if isinstance(spec, LayerSpec) else LayerSpec(**spec) for spec in values["layers"]
            )
        if "mode_schedule" in values:
            values["mode_schedule"] = tuple((int(e), str(m)) for e, m in values["mode_schedule"])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> HSTConfig:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> HSTConfig:
        """A named published or built-in configuration; see :func:`hstlab.list_presets`."""
        from hstlab.presets import get_preset

        return get_preset(name, **overrides)


def _check_ratio(field_name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{field_name}={value!r} must be a number in [0, 1)")


def _check_mode_letters(field_name: str, letters: Any, n_layer: int) -> None:
    if not isinstance(letters, str) or len(letters) != n_layer or set(letters) - set(MODE_LETTERS):
        raise ValueError(
            f"{field_name}={letters!r} must be {n_layer} letters (one per layer), each S (spiking) or T (standard)"
        )
