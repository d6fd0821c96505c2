"""What the trainer tells its callbacks: one small event dataclass and the dispatch rule.

The trainer draws nothing; notebooks and apps draw from these events.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

EVENT_KINDS = ("step", "epoch", "fit_end")
HOOKS = {"step": "on_step_end", "epoch": "on_epoch_end", "fit_end": "on_fit_end"}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the last good checkpoint is kept on disk."""


@dataclass
class TrainEvent:
    """One report from :class:`hstlab.Trainer` to its callbacks.

    ``kind`` is ``"step"`` (after each optimizer step: train-batch loss/accuracy/firing rate),
    ``"epoch"`` (after each epoch: train averages plus ``val_*`` metrics and the energy per
    sample measured on one validation batch) or ``"fit_end"`` (best validation model,
    evaluated once on the test split). ``accuracy`` is ``None`` for count-prediction losses,
    whose score is ``bits_per_spike``. ``seconds`` is training wall time so far.

    Example:
        >>> ev = TrainEvent(kind="step", step=3, epoch=0, loss=0.7, accuracy=0.5)
        >>> ev.as_dict()["loss"]
        0.7
    """

    kind: str
    step: int
    epoch: int
    loss: float
    accuracy: float | None = None
    firing_rate: float | None = None
    energy_per_sample_j: float | None = None
    seconds: float = 0.0
    lr: float | None = None
    modes: str | None = None
    bits_per_spike: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    val_bits_per_spike: float | None = None
    val_firing_rate: float | None = None
    test_loss: float | None = None
    test_accuracy: float | None = None
    test_bits_per_spike: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"kind={self.kind!r} is not allowed; allowed: {', '.join(EVENT_KINDS)}")

    def as_dict(self) -> dict[str, Any]:
        """Flat dict (``extra`` merged in), handy for ``pandas.DataFrame`` rows."""
        row = asdict(self)
        row.update(row.pop("extra"))
        return row


def finite(value: float) -> bool:
    return math.isfinite(value)


Callback = Any  # an object with any of on_step_end/on_epoch_end/on_fit_end, or a callable(event)


def normalize_callbacks(callbacks: Callback | Iterable[Callback] | None) -> list[Callback]:
    """Accept one callback or a list; check each has a hook method or is callable."""
    if callbacks is None:
        return []
    if callable(callbacks) or any(hasattr(callbacks, h) for h in HOOKS.values()):
        callbacks = [callbacks]
    out = []
    for i, cb in enumerate(callbacks):
        if not (callable(cb) or any(hasattr(cb, h) for h in HOOKS.values())):
            raise ValueError(
                f"callbacks[{i}]={cb!r} has none of {', '.join(HOOKS.values())} and is not callable"
            )
        out.append(cb)
    return out


def dispatch(callbacks: list[Callback], event: TrainEvent) -> None:
    """Call ``on_<kind>_end(event)`` where defined; plain callables receive every event."""
    hook = HOOKS[event.kind]
    for cb in callbacks:
        method: Callable[[TrainEvent], Any] | None = getattr(cb, hook, None)
        if method is not None:
            method(event)
        elif callable(cb) and not any(hasattr(cb, h) for h in HOOKS.values()):
            cb(event)
