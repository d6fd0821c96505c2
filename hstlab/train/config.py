"""One frozen, validated record of how a model is trained (the training twin of ``HSTConfig``).

The recipe registry (:mod:`hstlab.train.recipes`) stores one per preset and dataset, the CLI
fills its flags' defaults from it, and a run directory records the one it used. Every default
of the optimiser and schedule lives here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

WARMUP_RANGE = (0.0, 0.2)  # fraction of the steps spent warming up; 1-5 % is typical, 0 disables it


@dataclass(frozen=True)
class TrainConfig:
    """How to train: schedule, optimiser, batch, augmentation and data options.

    Example:
        >>> tc = TrainConfig(epochs=18, lr=5e-3, augment_shift=2)
        >>> TrainConfig.from_dict(tc.to_dict()) == tc
        True
        >>> tc.replace(lr=float("nan"))
        Traceback (most recent call last):
        ...
        ValueError: lr=nan must be a finite number > 0
    """

    epochs: int = 5
    lr: float = 1e-3
    batch_size: int = 32
    augment_shift: int = 0  # move each training sample by up to this many pixels (frames only)
    warmup_frac: float = 0.03  # linear warm-up over this fraction of the steps, then cosine decay
    weight_decay: float = 0.01  # AdamW decay on weights with >= 2 dims
    grad_clip: float | None = 1.0  # global gradient-norm clip (None: off)
    time_bins: int | None = None  # sequence datasets: bins per sample (frames use the preset's T)
    limit: int | None = None  # first N samples per split (None: all)
    dataset_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset_options", dict(self.dataset_options or {}))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field, its value and what is allowed."""
        for name in ("epochs", "batch_size"):
            _integer(name, getattr(self, name), minimum=1)
        _integer("augment_shift", self.augment_shift, minimum=0)
        for name in ("time_bins", "limit"):
            if getattr(self, name) is not None:
                _integer(name, getattr(self, name), minimum=1, none_ok=True)
        _number("lr", self.lr, low=0.0, low_open=True)
        _number("weight_decay", self.weight_decay, low=0.0)
        _number("warmup_frac", self.warmup_frac, low=WARMUP_RANGE[0], high=WARMUP_RANGE[1])
        if self.grad_clip is not None:
            _number("grad_clip", self.grad_clip, low=0.0, low_open=True, none_ok=True)
        if not all(isinstance(k, str) for k in self.dataset_options):
            raise ValueError(f"dataset_options={self.dataset_options!r} must map option names (str) to values")

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied and validated; unknown names are refused."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown training field(s) {unknown}; allowed: {sorted(known)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are refused, naming the allowed ones."""
        if not isinstance(data, dict):
            raise ValueError(f"a training config must be a JSON object, got {type(data).__name__}")
        return cls().replace(**data)


def _integer(name: str, value: Any, minimum: int, none_ok: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        extra = " or None" if none_ok else ""
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}{extra}")


def _number(name: str, value: Any, low: float, high: float | None = None, low_open: bool = False,
            none_ok: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (high is None or value <= high)
    if not ok:
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        allowed = f"in [{low:g}, {high:g}]" if high is not None else bound
        extra = " or None" if none_ok else ""
        raise ValueError(f"{name}={value!r} must be a finite number {allowed}{extra}")
