"""One frozen, validated record of how a model is trained (the training twin of ``HSTConfig``).

The recipe registry (:mod:`hstlab.train.recipes`) stores one per preset and dataset, the CLI
fills its flags' defaults from it, and a run directory records the one it used. Every default
of the optimiser and schedule lives here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any

# spike regularisers by name; hstlab.train.regularisers registers every one but "none" (a test checks)
REGULARISER_NAMES = ("none", "firing_rate", "hoyer")
PARALLEL_NAMES = ("ddp", "fsdp")  # how torchrun ranks split the model (hstlab.train.distributed.wrap_model)
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
    # training methods (hstlab.train.losses, hstlab.train.regularisers)
    loss: str | None = None  # None: the dataset kind's loss; e.g. "tet" for per-step logits
    loss_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"lam": 0.05} for TET
    regulariser: str = "none"  # "none", "firing_rate" or "hoyer", added to the loss
    regulariser_weight: float = 0.1  # its weight λ_reg
    regulariser_target: float = 0.1  # firing_rate: the target rate r* (events / neuron / step)
    # under torchrun: "ddp" replicates the model on every rank, "fsdp" shards it (FSDP2, hstlab.train.fsdp)
    parallel: str = "ddp"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset_options", dict(self.dataset_options or {}))
        object.__setattr__(self, "loss_options", dict(self.loss_options or {}))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field, its value and what is allowed (the
        rules of :data:`hstlab.train.checks.RULES`, which the trainer and CLI check too)."""
        from hstlab.train.checks import (
            RULES,
            check_args,  # imported here: checks reads this module's defaults
            check_methods,
        )

        check_args(**{f.name: getattr(self, f.name) for f in fields(self) if f.name in RULES})
        for name in ("dataset_options", "loss_options"):
            value = getattr(self, name)
            if not all(isinstance(k, str) for k in value):
                raise ValueError(f"{name}={value!r} must map option names (str) to values")
        check_methods(loss=self.loss, regulariser=self.regulariser)
        if self.parallel not in PARALLEL_NAMES:
            raise ValueError(f"parallel={self.parallel!r} is not allowed; allowed: {', '.join(PARALLEL_NAMES)}")

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every field's default, without building (and so validating) an instance."""
        return {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                for f in fields(cls)}

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

