"""What a search can optimise: each objective names a measured trial value and a direction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hstlab.registry import Registry


@dataclass(frozen=True)
class Objective:
    """One objective: the trial value it reads (``key``) and whether larger is better."""

    name: str
    direction: str  # "maximize" or "minimize"
    description: str


OBJECTIVES: Registry[Objective] = Registry("objective")
for _o in (
    Objective("val_accuracy", "maximize", "validation accuracy of the best-validation model"),
    Objective("energy_per_sample_j", "minimize", "energy per sample (J) under the search's dataflow"),
    Objective("val_bits_per_spike", "maximize", "validation bits per spike (count-prediction losses)"),
    Objective("params", "minimize", "number of model parameters"),
    Objective("train_seconds", "minimize", "training wall time (s)"),
):
    OBJECTIVES.register(_o.name)(_o)

DEFAULT_OBJECTIVES = ("val_accuracy", "energy_per_sample_j")
SAMPLERS = ("tpe", "nsga2")  # Optuna's multi-objective TPE, NSGA-II


def check_objectives(names: Sequence[str] | str) -> tuple[Objective, ...]:
    """Objectives by name (a sequence or one comma-separated string); unknown or repeated -> ValueError.

    Example:
        >>> [o.direction for o in check_objectives("val_accuracy,energy_per_sample_j")]
        ['maximize', 'minimize']
        >>> check_objectives(["val_acc"])
        Traceback (most recent call last):
        ...
        ValueError: objectives: unknown objective 'val_acc'; allowed: val_accuracy, energy_per_sample_j, val_bits_per_spike, params, train_seconds
    """
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = tuple(names)
    allowed = ", ".join(OBJECTIVES.names())
    if not names:
        raise ValueError(f"objectives=() is empty; name at least one of: {allowed}")
    for n in names:
        if n not in OBJECTIVES:
            raise ValueError(f"objectives: unknown objective {n!r}; allowed: {allowed}")
    if len(set(names)) != len(names):
        raise ValueError(f"objectives={list(names)!r} repeats a name")
    return tuple(OBJECTIVES.get(n) for n in names)
