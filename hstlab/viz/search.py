"""Search results: accuracy against energy per sample, every trial, the Pareto front highlighted.

Takes the ``trials`` DataFrame of :class:`hstlab.search.SearchResult` (one row per trial with
``val_accuracy``, ``energy_per_sample_j``, ``pareto`` and design columns); hovering a point
shows its design.
"""

from __future__ import annotations

from typing import Any

import holoviews as hv
import pandas as pd

from hstlab.units import energy_unit
from hstlab.viz._util import bokeh_opts

NEEDED = ("val_accuracy", "energy_per_sample_j", "pareto")
HOVER = ("number", "design", "modes", "kinds", "num_steps", "weight_bits", "membrane_bits", "mask_ratio",
         "params", "train_seconds")


def pareto_plot(trials: Any, title: str = "Layer search: accuracy vs energy") -> hv.Overlay:
    """Scatter of every trial (grey) with the Pareto front as red markers joined by a step line.

    Energy is shown in the unit that fits the largest value; hover shows the design (stem|attention|MLP
    letters, attention kinds, T, bits) of each point.

    Example:
        >>> df = pd.DataFrame({"val_accuracy": [0.9, 0.8, 0.7], "energy_per_sample_j": [5e-6, 1e-6, 2e-6],
        ...                    "pareto": [True, True, False], "design": ["S|SS|SS", "T|TT|TT", "S|TT|SS"]})
        >>> plot = pareto_plot(df)
        >>> [type(e).__name__ for e in plot]
        ['Scatter', 'Curve', 'Scatter']
    """
    if not isinstance(trials, pd.DataFrame):
        raise ValueError(f"trials is a {type(trials).__name__}; expected the DataFrame SearchResult.trials")  # noqa: TRY004
    missing = [c for c in NEEDED if c not in trials.columns]
    if missing:
        raise ValueError(f"trials lacks column(s) {', '.join(missing)}; expected {', '.join(NEEDED)}")
    if trials.empty:
        raise ValueError("trials has no rows; run at least one trial")
    unit, scale = energy_unit(float(trials["energy_per_sample_j"].max()))
    data = trials.copy()
    data["energy"] = data["energy_per_sample_j"] / scale
    hover = [c for c in HOVER if c in data.columns]
    energy = hv.Dimension("energy", label="energy per sample", unit=unit)
    accuracy = hv.Dimension("val_accuracy", label="validation accuracy")
    vdims = [accuracy, *hover]
    others = bokeh_opts(hv.Scatter(data[~data["pareto"].astype(bool)], energy, vdims, label="trial"),
                        color="#7f7f7f", alpha=0.6, size=8, tools=["hover"])
    front = data[data["pareto"].astype(bool)].sort_values("energy")
    line = bokeh_opts(hv.Curve(front, energy, accuracy, label="Pareto front"),
                      interpolation="steps-post", color="#d62728", line_width=2)
    points = bokeh_opts(hv.Scatter(front, energy, vdims, label="Pareto trial"),
                        color="#d62728", size=11, tools=["hover"])
    return bokeh_opts(others * line * points, title=title, width=620, height=380, legend_position="bottom_right",
                      show_grid=True)
