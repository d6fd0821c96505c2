"""One palette for every hstlab chart: a fixed colour per model variant and per series.

A spiking model is blue, a standard one red and an int8 one green in every view (energy
comparison, training curves, notebooks), so a colour means the same thing everywhere.
:func:`variant_color` maps the names the library gives variants ("standard twin, int8",
"current (SS, 32-bit)", "all spiking" ...) to these colours.

Example:
    >>> variant_color("standard twin, int8") == VARIANT_COLORS["int8"]
    True
    >>> variant_color("current (SS, 32-bit)") == VARIANT_COLORS["spiking"]
    True
    >>> [variant_color(n) == VARIANT_COLORS[k] for n, k in
    ...  [("TT", "standard"), ("ST", "hybrid"), ("SS", "spiking"), ("TT int8, T=1", "int8")]]
    [True, True, True, True]
"""

from __future__ import annotations

from typing import Any

# The widest plot a view may draw: a 1,000 px notebook column minus Bokeh's toolbar (~40 px)
# beside it, so no plot or layout column overflows a notebook (tests/test_notebook_layout_browser).
PLOT_WIDTH = 940
VARIANT_COLORS: dict[str, str] = {
    "spiking": "#1f77b4",  # blue
    "standard": "#d62728",  # red
    "int8": "#2ca02c",  # green
    "8-bit": "#17becf",  # cyan: a spiking model with 8-bit weights
    "bit-matched": "#9467bd",  # purple
    "hybrid": "#ff7f0e",  # orange: spiking and standard layers mixed
}
SERIES_COLORS: dict[str, str] = {
    "train": "#1f77b4",
    "train (epoch)": "#000000",
    "validation": "#d62728",
    "compute": "#ff7f0e",
    "memory": "#9467bd",
    "MAC": "#d62728",
    "AC": "#2ca02c",
    "threshold": "#d62728",
}
# first match wins: the more specific words first
_VARIANT_WORDS = (("int8", "int8"), ("bit-matched", "bit-matched"), ("8-bit", "8-bit"),
                  ("standard", "standard"), ("hybrid", "hybrid"), ("spiking", "spiking"))


def variant_color(name: str) -> str:
    """The colour of a variant named ``name``; a model's own modes decide for "current (HS, ...)"
    or a bare "ST" (all S: spiking, all T: standard, mixed: hybrid)."""
    lowered = name.lower()
    for word, key in _VARIANT_WORDS:
        if word in lowered:
            return VARIANT_COLORS[key]
    # the modes string: inside "(...)" ("current (HS, 32-bit)") or the first word ("ST", "TT int8")
    words = (lowered.split("(")[1] if "(" in lowered else lowered).replace(",", " ").split()
    modes = words[0].upper() if words else ""
    if modes and set(modes) <= {"S", "T", "H"}:
        if set(modes) == {"T"}:
            return VARIANT_COLORS["standard"]
        if set(modes) != {"S"}:
            return VARIANT_COLORS["hybrid"]
    return VARIANT_COLORS["spiking"]


def integer_ticks(plot: Any, element: Any) -> None:
    """HoloViews hook: ticks of the x axis only at whole numbers (steps, epochs, time steps)."""
    for axis in plot.state.xaxis:
        ticker = getattr(axis, "ticker", None)
        if ticker is not None and hasattr(ticker, "min_interval"):
            ticker.min_interval = 1


def legend_only_with_data(plot: Any, element: Any) -> None:
    """HoloViews hook: a legend entry shows only while its series has points."""
    for legend in plot.state.legend:
        for item in legend.items:
            item.visible = any(_has_points(r) for r in item.renderers)


def _has_points(renderer: Any) -> bool:
    """True when the renderer's data has a row and every numeric column a finite value (a
    series of NaN, e.g. a metric the trainer does not report, draws nothing)."""
    import numpy as np

    data = getattr(getattr(renderer, "data_source", None), "data", {})
    columns = [np.asarray(values) for values in data.values()]
    if not columns or not any(len(c) for c in columns):
        return False
    numeric = [c for c in columns if c.dtype.kind in "fiu"]
    return all(np.isfinite(c.astype(float)).any() for c in numeric)
