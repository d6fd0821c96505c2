"""Energy units for display: one formatter for the CLI, the explorer, model cards and charts.

Example:
    >>> format_joules(9.48e-05), format_joules(3.1e-12, digits=2), format_joules(None)
    ('94.8 µJ', '3.1 pJ', 'n/a')
    >>> energy_unit(3e-6)
    ('µJ', 1e-06)
"""

from __future__ import annotations

import math
from typing import Any

ENERGY_UNITS = (("J", 1.0), ("mJ", 1e-3), ("µJ", 1e-6), ("nJ", 1e-9), ("pJ", 1e-12))


def energy_unit(max_joules: float) -> tuple[str, float]:
    """A readable unit for energies up to ``max_joules``: ``(unit, joules per unit)``."""
    value = abs(float(max_joules)) if max_joules is not None and math.isfinite(max_joules) else 0.0
    for unit, scale in ENERGY_UNITS:
        if value >= scale:
            return unit, scale
    return ENERGY_UNITS[-1]


def format_joules(value: Any, digits: int = 3, missing: str = "n/a") -> str:
    """``value`` joules in the largest unit that keeps it >= 1, with ``digits`` significant digits;
    ``missing`` for None or a non-finite value."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    unit, scale = energy_unit(value)
    return f"{value / scale:.{digits}g} {unit}"
