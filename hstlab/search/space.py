"""The design space of a layer search: which parts spike, which attention, how many steps, how many bits.

A :class:`SearchSpace` lists the allowed values of each design choice; :meth:`SearchSpace.sample`
draws one point with an Optuna trial and returns the config it describes plus a flat record of
the choices (the row a Pareto table shows). :meth:`SearchSpace.check_fits` refuses, before any
trial, a space with a design the preset cannot build (a statten ``attn_block`` that does not divide
a ``num_steps`` value, an ``experts`` count that does not divide the width, ...). Fields the search
does not vary (``attn_block``, ``experts``, ``mlp_kind``, the stages) come from the preset, per
layer.
"""

from __future__ import annotations

import dataclasses
import itertools
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

    def check_fits(self, base: HSTConfig) -> None:
        """Raise ``ValueError`` unless ``base`` builds every design of the space.

        Each layer's validity depends on the global fields and its own choices only, so every
        ``num_steps`` value x attention choice x MLP mode is tried on all layers at once, then each
        value of the other fields. The error names the search-space values of the failing design and
        the config's own message (which names the config field, e.g. ``attn_block``).

        Example:
            >>> base = HSTConfig.from_preset("tiny")  # attn_block=2
            >>> SearchSpace(attention_kinds=("ssa", "statten"), num_steps=(2, 3)).check_fits(base)
            Traceback (most recent call last):
            ...
            ValueError: the search space does not fit preset 'tiny': num_steps=3, attention_kinds 'statten' (attn_modes 'spiking'), mlp_modes 'spiking': attn_block=2 does not divide num_steps=3 (attention='statten' splits the steps into blocks); allowed: 1, 3. Drop those values from the search space or change the preset
        """
        attn = [("spiking", k) for k in self.attention_kinds if "spiking" in self.attn_modes]
        attn += [("standard", "softmax")] if "standard" in self.attn_modes else []
        first = {"stem_mode": self.stem_modes[0], "weight_bits": self.weight_bits[0],
                 "membrane_bits": self.membrane_bits[0], "mask_ratio": self.mask_ratios[0]}
        designs = [dict(first, num_steps=t, attn=a, mlp=m)
                   for t, a, m in itertools.product(self.num_steps, attn, self.mlp_modes)]
        for name, values in (("stem_mode", self.stem_modes), ("weight_bits", self.weight_bits),
                             ("membrane_bits", self.membrane_bits), ("mask_ratio", self.mask_ratios)):
            designs += [dict(designs[0], **{name: v}) for v in values[1:]]
        for d in designs:
            (mode, kind), mlp = d["attn"], d["mlp"]
            try:
                _design(base, d["stem_mode"], d["num_steps"], d["weight_bits"], d["membrane_bits"], d["mask_ratio"],
                        [(mode, mlp, kind)] * base.n_layer)
            except ValueError as err:
                where = (f"num_steps={d['num_steps']}, attention_kinds {kind!r} (attn_modes {mode!r}), "
                         f"mlp_modes {mlp!r}" if mode == "spiking" else
                         f"num_steps={d['num_steps']}, attn_modes {mode!r}, mlp_modes {mlp!r}")
                extra = [f"{field} {d[n]!r}" for n, field in (("stem_mode", "stem_modes"), ("weight_bits", "weight_bits"),
                                                                  ("membrane_bits", "membrane_bits"),
                                                                  ("mask_ratio", "mask_ratios")) if d[n] != first[n]]
                raise ValueError(f"the search space does not fit preset {base.name!r}: "
                                 f"{', '.join([where, *extra])}: {err}. Drop those values from the search space "
                                 "or change the preset") from None

    def sample(self, trial: Any, base: HSTConfig) -> tuple[HSTConfig, dict[str, Any]]:
        """Draw one design with ``trial`` (an ``optuna.Trial``); returns ``(cfg, record)``.

        The attention kind of a layer is a parameter only when that layer's attention spikes (and
        is attention: a conv stage's layer mixes tokens with its separable convolution). The design
        is applied to ``base`` in one step; the preset's per-layer ``attn_block``, ``experts`` and
        ``mlp_kind`` stay as they are.
        """
        stem = trial.suggest_categorical("stem_mode", list(self.stem_modes))
        steps = trial.suggest_categorical("num_steps", list(self.num_steps))
        wbits = trial.suggest_categorical("weight_bits", list(self.weight_bits))
        mbits = trial.suggest_categorical("membrane_bits", list(self.membrane_bits))
        ratio = trial.suggest_categorical("mask_ratio", list(self.mask_ratios))
        choices = []
        for i in range(base.n_layer):
            a = trial.suggest_categorical(f"layer{i}.attn_mode", list(self.attn_modes))
            m = trial.suggest_categorical(f"layer{i}.mlp_mode", list(self.mlp_modes))
            if base.layer(i).block == "conv":
                kind = None  # no attention to choose
            elif a == "spiking":
                kind = trial.suggest_categorical(f"layer{i}.attention", list(self.attention_kinds))
            else:
                kind = "softmax"
            choices.append((a, m, kind))
        try:
            cfg = _design(base, stem, steps, wbits, mbits, ratio, choices)
        except ValueError as err:  # check_fits refuses such a space before the first trial
            raise ValueError(f"trial {trial.number}: the sampled design does not fit preset {base.name!r}: {err} "
                             "(SearchSpace.check_fits(base) lists what to drop)") from None
        return cfg, design_record(cfg)


def _design(base: HSTConfig, stem: str, steps: int, wbits: int, mbits: int, ratio: float,
            layers: list[tuple[str, str, str | None]]) -> HSTConfig:
    """``base`` with one design applied in one step (``layers``: ``(attn_mode, mlp_mode, attention)``
    per layer, attention None to keep the preset's); the config validates it as a whole."""
    specs = []
    for spec, (a, m, kind) in zip(base.layers, layers):
        # the global mask ratio applies to every layer: drop per-layer overrides of the preset
        kind_field = {} if kind is None else {"attention": kind}
        specs.append(dataclasses.replace(spec, attn_mode=a, mlp_mode=m, mask_ratio=None, **kind_field))
    return dataclasses.replace(base, tokenizer_mode=stem, num_steps=steps, weight_bits=wbits, membrane_bits=mbits,
                               mask_ratio=ratio, layers=tuple(specs))


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
