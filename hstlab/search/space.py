"""The design space of a layer search: which parts spike, which attention, how many steps, how many bits.

A :class:`SearchSpace` lists the allowed values of each design choice; :meth:`SearchSpace.sample`
draws one point with an Optuna trial and returns the config it describes plus a flat record of
the choices (the row a Pareto table shows).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from hstlab.config import (
    ALLOWED_BITS,
    ALLOWED_MEMBRANE_BITS,
    ATTENTION_KINDS,
    MODES,
    HSTConfig,
)

LETTER = {"spiking": "S", "standard": "T"}
SPIKING_KINDS = tuple(k for k in ATTENTION_KINDS if k != "softmax")  # softmax is the standard layers' kind


def _tuple_field(name: str, value: Any, allowed: tuple, kind: type | tuple[type, ...]) -> tuple:
    """``value`` as a non-empty tuple of distinct allowed entries, or a ValueError naming ``name``."""
    if isinstance(value, (str, int, float)):
        value = (value,)
    try:
        values = tuple(value)
    except TypeError:
        raise ValueError(f"{name}={value!r} must be a sequence of values from: "
                         f"{', '.join(map(str, allowed))}") from None
    if not values:
        raise ValueError(f"{name}=() is empty; give at least one of: {', '.join(map(str, allowed))}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, kind) or v not in allowed:
            raise ValueError(f"{name} holds {v!r}, which is not allowed; allowed: {', '.join(map(str, allowed))}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name}={values!r} repeats a value")
    return values


@dataclass(frozen=True)
class SearchSpace:
    """Allowed values of each design choice; every layer picks its own attention/MLP mode and kind.

    - ``stem_modes``: the tokenizer and positional encoding (config field ``tokenizer_mode``).
    - ``attn_modes`` / ``mlp_modes``: each layer's attention half and MLP half.
    - ``attention_kinds``: the attention of a layer whose attention spikes (a standard
      attention half is always softmax attention).
    - ``num_steps`` (T), ``weight_bits``, ``membrane_bits`` (32: float), ``mask_ratios``.

    At least one of the mode fields must allow ``"spiking"`` (a search over standard networks
    only has nothing to decide about spiking layers).

    Example:
        >>> space = SearchSpace(num_steps=(2, 4), weight_bits=(8, 32))
        >>> space.size(n_layer=2)
        288
        >>> SearchSpace(stem_modes=("standard",), attn_modes=("standard",), mlp_modes=("standard",))
        Traceback (most recent call last):
        ...
        ValueError: stem_modes, attn_modes and mlp_modes allow only 'standard': the space has no spiking option; add 'spiking' to at least one of them
    """

    stem_modes: tuple[str, ...] = MODES
    attn_modes: tuple[str, ...] = MODES
    mlp_modes: tuple[str, ...] = MODES
    attention_kinds: tuple[str, ...] = ("ssa", "sdsa")
    num_steps: tuple[int, ...] = (2, 4)
    weight_bits: tuple[int, ...] = (8, 32)
    membrane_bits: tuple[int, ...] = (32,)
    mask_ratios: tuple[float, ...] = (0.0,)

    def __post_init__(self) -> None:
        checks = {
            "stem_modes": (MODES, str), "attn_modes": (MODES, str), "mlp_modes": (MODES, str),
            "attention_kinds": (SPIKING_KINDS, str), "weight_bits": (ALLOWED_BITS, int),
            "membrane_bits": (ALLOWED_MEMBRANE_BITS, int),
        }
        for name, (allowed, kind) in checks.items():
            object.__setattr__(self, name, _tuple_field(name, getattr(self, name), allowed, kind))
        steps = self.num_steps if not isinstance(self.num_steps, int) else (self.num_steps,)
        steps = tuple(steps)
        if not steps or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in steps) \
                or len(set(steps)) != len(steps):
            raise ValueError(f"num_steps={self.num_steps!r} must be distinct integers >= 1 (time steps T)")
        object.__setattr__(self, "num_steps", steps)
        ratios = self.mask_ratios if not isinstance(self.mask_ratios, (int, float)) else (self.mask_ratios,)
        ratios = tuple(float(r) if isinstance(r, (int, float)) and not isinstance(r, bool) else r for r in ratios)
        if not ratios or any(not isinstance(r, float) or not 0.0 <= r < 1.0 for r in ratios) \
                or len(set(ratios)) != len(ratios):
            raise ValueError(f"mask_ratios={self.mask_ratios!r} must be distinct numbers in [0, 1)")
        object.__setattr__(self, "mask_ratios", ratios)
        if "spiking" not in self.stem_modes + self.attn_modes + self.mlp_modes:
            raise ValueError("stem_modes, attn_modes and mlp_modes allow only 'standard': the space has no "
                             "spiking option; add 'spiking' to at least one of them")

    def to_dict(self) -> dict[str, list]:
        """JSON-ready form (lists), the fingerprint a resumed search must match."""
        return {f.name: list(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown search space field(s) {unknown}; allowed: {sorted(known)}")
        return cls(**{k: tuple(v) for k, v in data.items()})

    def size(self, n_layer: int) -> int:
        """Number of distinct designs for a model of ``n_layer`` layers."""
        kinds = len(self.attention_kinds)
        attn = ("spiking" in self.attn_modes) * kinds + ("standard" in self.attn_modes)
        per_layer = attn * len(self.mlp_modes)
        rest = len(self.stem_modes) * len(self.num_steps) * len(self.weight_bits) \
            * len(self.membrane_bits) * len(self.mask_ratios)
        return rest * per_layer ** n_layer

    def sample(self, trial: Any, base: HSTConfig) -> tuple[HSTConfig, dict[str, Any]]:
        """Draw one design with ``trial`` (an ``optuna.Trial``); returns ``(cfg, record)``.

        The attention kind of a layer is a parameter only when that layer's attention spikes.
        """
        stem = trial.suggest_categorical("stem_mode", list(self.stem_modes))
        steps = trial.suggest_categorical("num_steps", list(self.num_steps))
        wbits = trial.suggest_categorical("weight_bits", list(self.weight_bits))
        mbits = trial.suggest_categorical("membrane_bits", list(self.membrane_bits))
        ratio = trial.suggest_categorical("mask_ratio", list(self.mask_ratios))
        cfg = dataclasses.replace(base, tokenizer_mode=stem, num_steps=steps, weight_bits=wbits,
                                  membrane_bits=mbits, mask_ratio=ratio)
        attn, mlp, kinds = [], [], []
        for i in range(base.n_layer):
            a = trial.suggest_categorical(f"layer{i}.attn_mode", list(self.attn_modes))
            m = trial.suggest_categorical(f"layer{i}.mlp_mode", list(self.mlp_modes))
            kind = trial.suggest_categorical(f"layer{i}.attention", list(self.attention_kinds)) \
                if a == "spiking" else "softmax"
            # the global mask ratio applies to every layer: drop per-layer overrides of the preset
            cfg = cfg.with_layer(i, attn_mode=a, mlp_mode=m, attention=kind, mask_ratio=None)
            attn.append(LETTER[a])
            mlp.append(LETTER[m])
            kinds.append(kind)
        return cfg, design_record(cfg)


def design_record(cfg: HSTConfig) -> dict[str, Any]:
    """The design choices of ``cfg`` as one flat row (what a search varies).

    ``design`` reads stem | attention halves | MLP halves, one letter per layer (S spiking,
    T standard), e.g. ``S|ST|SS``.

    Example:
        >>> design_record(HSTConfig.from_preset("tiny").with_modes(attn="ST"))["design"]
        'S|ST|SS'
    """
    layers = cfg.resolved_layers()
    attn = "".join(LETTER[la.attn_mode] for la in layers)
    mlp = "".join(LETTER[la.mlp_mode] for la in layers)
    stem = LETTER[cfg.stem_mode]
    return {
        "design": f"{stem}|{attn}|{mlp}", "stem": stem, "attn": attn, "mlp": mlp, "modes": cfg.modes,
        "kinds": ",".join(la.attention_kind for la in layers), "num_steps": cfg.num_steps,
        "weight_bits": cfg.weight_bits, "membrane_bits": cfg.membrane_bits,
        "mask_ratio": float(cfg.mask_ratio),
        "spiking_parts": stem.count("S") + attn.count("S") + mlp.count("S"),
    }
