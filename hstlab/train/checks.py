"""The allowed values of every training argument, in one table.

:func:`check_arg` is used by :class:`~hstlab.train.Trainer` (library: ``lr=nan must be ...``),
by :func:`~hstlab.train.run.train_run` before it writes anything, and by ``hstlab train``
before it starts (``--lr nan must be ...``), so the three never disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hstlab.train.config import WARMUP_RANGE, TrainConfig


@dataclass(frozen=True)
class Rule:
    """``kind`` "int" or "float"; the value must be >= ``low`` (> ``low`` if ``open_low``) and <= ``high``."""

    kind: str
    low: float
    open_low: bool = False
    high: float | None = None
    optional: bool = False  # None allowed
    note: str = ""

    def describe(self) -> str:
        what = "an integer" if self.kind == "int" else "a finite number"
        bound = f"in [{self.low}, {self.high}]" if self.high is not None else \
            f"{'>' if self.open_low else '>='} {self.low}"
        text = f"{what} {bound}"
        if self.optional:
            text += " or None"
        return text + (f" ({self.note})" if self.note else "")


# the run arguments stored in run.json, with train_run's defaults ("dataset" has none)
RUN_DEFAULTS: dict[str, Any] = {
    **TrainConfig.defaults(),  # the schedule, optimiser and data defaults
    "seed": 0, "loss": None, "loss_options": {}, "checkpoint_every": 50,
}

RULES: dict[str, Rule] = {
    "epochs": Rule("int", 1),
    "batch_size": Rule("int", 1),
    "eval_batch_size": Rule("int", 1, optional=True),
    "seed": Rule("int", 0),
    "lr": Rule("float", 0, open_low=True),
    "weight_decay": Rule("float", 0),
    "warmup_frac": Rule("float", WARMUP_RANGE[0], high=WARMUP_RANGE[1], note="1-5 % of the steps is typical"),
    "grad_clip": Rule("float", 0, open_low=True, optional=True, note="None: no clipping"),
    "max_seconds": Rule("float", 0, open_low=True, optional=True),
    "checkpoint_every": Rule("int", 0, note="0: only at epoch ends"),
    "limit": Rule("int", 1, optional=True, note="samples per split; None: all"),
    "time_bins": Rule("int", 1, optional=True),
    "augment_shift": Rule("int", 0, note="pixels; 0: off"),
    "bn_recalibration_batches": Rule("int", 0, note="0: off"),
    "regulariser_weight": Rule("float", 0, note="weight of the spike regulariser in the loss"),
    "regulariser_target": Rule("float", 0, note="target firing rate, events per neuron per step"),
}


def check_methods(loss: str | None = None, regulariser: str | None = None) -> None:
    """``loss`` (None or a ``LOSSES`` name) and ``regulariser`` (a ``REGULARISER_NAMES`` entry) or ``ValueError``."""
    from hstlab.train.config import REGULARISER_NAMES
    from hstlab.train.losses import LOSSES

    if loss is not None and loss not in LOSSES:
        raise ValueError(f"loss={loss!r} is not allowed; allowed: None (the dataset's), {', '.join(LOSSES.names())}")
    if regulariser is not None and regulariser not in REGULARISER_NAMES:
        raise ValueError(f"regulariser={regulariser!r} is not allowed; allowed: {', '.join(REGULARISER_NAMES)}")


def check_arg(name: str, value: Any, flag: str | None = None) -> Any:
    """Return ``value`` if it is allowed for ``name``, else raise ``ValueError`` naming it.

    ``flag`` names the command-line flag instead (``--lr nan must be ...``).

    Example:
        >>> check_arg("lr", 1e-3)
        0.001
        >>> check_arg("lr", float("nan"), flag="--lr")
        Traceback (most recent call last):
        ...
        ValueError: --lr nan must be a finite number > 0
    """
    rule = RULES[name]
    label = f"{flag} {value}" if flag else f"{name}={value!r}"
    if value is None and rule.optional:
        return value
    ok = not isinstance(value, bool)
    if ok and rule.kind == "int":
        ok = isinstance(value, int)
    elif ok:
        ok = isinstance(value, (int, float)) and math.isfinite(value)
    if ok:
        ok = value > rule.low if rule.open_low else value >= rule.low
        ok = ok and (rule.high is None or value <= rule.high)
    if not ok:
        raise ValueError(f"{label} must be {rule.describe()}")
    return value


def check_args(flags: dict[str, str] | None = None, **values: Any) -> None:
    """:func:`check_arg` on each ``name=value``; ``flags`` maps names to command-line flags."""
    for name, value in values.items():
        check_arg(name, value, (flags or {}).get(name))
