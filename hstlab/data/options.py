"""Dataset options: the type and range of each, checked in one place before a dataset loads.

Each dataset declares its options as :class:`Option` values (see ``hstlab/data/registry.py``);
:func:`check_options` rejects unknown names, wrong types, NaN/infinite numbers and values out of
range with a :class:`~hstlab.data.errors.DataOptionError` naming the option and what is allowed.

Example:
    >>> check_options("demo", {"window_ms": 50}, {"window_ms": WINDOW_MS})
    {'window_ms': 50.0}
    >>> check_options("demo", {"window_ms": float("nan")}, {"window_ms": WINDOW_MS})
    Traceback (most recent call last):
    ...
    hstlab.data.errors.DataOptionError: option window_ms=nan of dataset 'demo' is not allowed; ...
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hstlab.data.errors import DataOptionError


@dataclass(frozen=True)
class Option:
    """One option: ``kind`` "int", "float" or "bool"; bounds inclusive unless ``above`` (min < v).

    Example:
        >>> Option("int", minimum=1, maximum=9).allowed()
        'an integer in [1, 9]'
    """

    kind: str
    minimum: float | None = None
    maximum: float | None = None
    above: bool = False  # the minimum itself is excluded
    none_ok: bool = False  # None (JSON null) means "the default"

    def allowed(self) -> str:
        """The allowed values in words."""
        if self.kind == "bool":
            text = "true or false"
        else:
            noun = "an integer" if self.kind == "int" else "a finite number"
            lo, hi = self.minimum, self.maximum
            if lo is not None and hi is not None and not self.above:
                text = f"{noun} in [{_num(lo)}, {_num(hi)}]"
            else:
                parts = [f"{'>' if self.above else '>='} {_num(lo)}"] if lo is not None else []
                parts += [f"<= {_num(hi)}"] if hi is not None else []
                text = " ".join([noun, " and ".join(parts)]).strip()
        return text + (" (or null for the default)" if self.none_ok else "")

    def check(self, dataset: str, name: str, value: Any) -> Any:
        """``value`` as a plain int/float/bool, or :class:`DataOptionError`."""
        if value is None and self.none_ok:
            return None
        if self.kind == "bool":
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
            raise self._error(dataset, name, value)
        ok_type = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
        if self.kind == "float":
            ok_type = ok_type or isinstance(value, (float, np.floating))
        if not ok_type:
            raise self._error(dataset, name, value)
        number = int(value) if self.kind == "int" else float(value)
        if self.kind == "float" and not math.isfinite(number):
            raise self._error(dataset, name, value)
        lo, hi = self.minimum, self.maximum
        if lo is not None and (number <= lo if self.above else number < lo):
            raise self._error(dataset, name, value)
        if hi is not None and number > hi:
            raise self._error(dataset, name, value)
        return number

    def _error(self, dataset: str, name: str, value: Any) -> DataOptionError:
        return DataOptionError(
            f"option {name}={value!r} of dataset {dataset!r} is not allowed; "
            f"allowed: {self.allowed()}"
        )


def _num(x: float | None) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def check_options(
    dataset: str, options: Mapping[str, Any], declared: Mapping[str, Option]
) -> dict[str, Any]:
    """Checked copies of ``options``; unknown names raise, listing the dataset's options."""
    out = {}
    for key, value in options.items():
        if key not in declared:
            raise DataOptionError(
                f"option {key}={value!r} is not known for dataset {dataset!r}; "
                f"allowed: {', '.join(declared)}"
            )
        out[key] = declared[key].check(dataset, key, value)
    return out


# the options shared by several datasets (each dataset lists the ones it takes)
LIMIT = Option("int", minimum=1, none_ok=True)  # first N per split, class-balanced
SEED = Option("int", minimum=0, maximum=2**32 - 1)
WINDOW_MS = Option("float", minimum=0, above=True)  # the frame window; >= 1 us per bin, see frames
WINDOW_MS_OR_DEFAULT = Option("float", minimum=0, above=True, none_ok=True)
FLAG = Option("bool")
DOWNSAMPLE_128 = Option("int", minimum=1, maximum=128)  # a 128-pixel sensor keeps >= 1 pixel
