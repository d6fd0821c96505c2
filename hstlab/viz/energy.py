"""Energy charts: per-layer stacked bars, variant comparison, ablation waterfall.

Takes plain data (an EnergyReport's ``.layers`` DataFrame, or anything with ``.layers``; a dict
of totals; an ablation DataFrame), so it does not depend on the energy package.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd

from hstlab.units import energy_unit
from hstlab.viz._util import bokeh_opts
from hstlab.viz.palette import PLOT_WIDTH, SERIES_COLORS, variant_color

LAYER_COLUMNS = ("name", "kind", "mode", "macs", "acs", "input_rate", "compute_j", "memory_j")
ABLATION_COLUMNS = ("variant", "accuracy", "energy_j")
LABEL_PX = 80  # width of a comparison bar's label ("0.31×" over "acc 0.989") at 9pt
BAR_PX, ROW_PX = 28, 18  # room per layer: an upright bar's width, a lying bar's row height
EFFECT_COLORS = {"baseline": "#7f7f7f", "better": "#2ca02c", "worse": "#d62728", "final": "#1f77b4"}


def _checked_frame(df: Any, name: str, columns: tuple[str, ...], expected: str, empty: str) -> pd.DataFrame:
    """``df`` as a DataFrame with ``columns``, or a ValueError naming ``name`` and what is allowed."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(  # noqa: TRY004 - team rule: bad input is ValueError
            f"{name} is a {type(df).__name__}; expected {expected}"
        )
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {', '.join(missing)}; expected {', '.join(columns)}")
    if df.empty:
        raise ValueError(f"{name} has no rows; {empty}")
    return df.reset_index(drop=True)


def _layers_frame(layers: Any) -> pd.DataFrame:
    return _checked_frame(getattr(layers, "layers", layers), "layers", LAYER_COLUMNS,
                          "a DataFrame or an object with .layers", "the energy report measured no layer")


def _stacked(
    df: pd.DataFrame, parts: dict[str, str], scale: float, value: hv.Dimension
) -> pd.DataFrame:
    """Tidy rows (layer, part, value, kind, mode, input_rate) in layer order."""
    rows = []
    for _, row in df.iterrows():
        for part, column in parts.items():
            rows.append(
                {
                    "layer": str(row["name"]),
                    "part": part,
                    value.name: float(row[column]) / scale,
                    "kind": str(row["kind"]),
                    "mode": str(row["mode"]),
                    "input_rate": float(row["input_rate"]),
                }
            )
    return pd.DataFrame(rows)


def _bars(tidy: pd.DataFrame, value: hv.Dimension, title: str, colors: list[str],
          value_format: str | None = None) -> hv.Bars:
    """Stacked bars per layer: upright while every layer gets ``BAR_PX``, else lying down (one
    row per layer, first at the top) so the plot never gets wider than ``PLOT_WIDTH``;
    ``value_format`` (printf style) formats the value axis in either orientation."""
    extra = [
        hv.Dimension("kind"),
        hv.Dimension("mode"),
        hv.Dimension("input_rate", label="input rate"),
    ]
    element = hv.Bars(
        tidy, kdims=[hv.Dimension("layer"), hv.Dimension("part")], vdims=[value, *extra]
    )
    layers = tidy["layer"].nunique()
    name_px = 6 * min(int(tidy["layer"].str.len().max()), 40)  # rotated or left-hand names
    common = dict(stacked=True, title=title, color=hv.Cycle(colors), tools=["hover"],
                  shared_axes=False)
    upright = BAR_PX * layers <= PLOT_WIDTH - 60
    if value_format:
        common["yformatter" if upright else "xformatter"] = value_format
    if upright:
        return bokeh_opts(element, **common, xrotation=60, width=max(500, 60 + BAR_PX * layers),
                          height=260 + name_px, legend_position="top_right")
    return bokeh_opts(element, **common, invert_axes=True, invert_yaxis=True, width=PLOT_WIDTH,
                      height=120 + ROW_PX * layers, legend_position="top")


def layer_energy_bars(layers: Any) -> hv.Bars:
    """Per-layer energy per sample, compute and memory stacked (unit picked from the data).

    Example:
        >>> bars = layer_energy_bars(energy_report(model, x).layers)
    """
    df = _layers_frame(layers)
    unit, scale = energy_unit(float((df["compute_j"] + df["memory_j"]).max()))
    value = hv.Dimension("energy", label="energy per sample", unit=unit)
    tidy = _stacked(df, {"compute": "compute_j", "memory": "memory_j"}, scale, value)
    return _bars(tidy, value, "Energy per layer: compute vs memory",
                 [SERIES_COLORS["compute"], SERIES_COLORS["memory"]])


def layer_ops_bars(layers: Any) -> hv.Bars:
    """Per-layer operation counts per sample, MACs (real-valued input) and ACs (spikes) stacked.

    Example:
        >>> bars = layer_ops_bars(report.layers)
    """
    df = _layers_frame(layers)
    value = hv.Dimension("ops", label="operations per sample")
    tidy = _stacked(df, {"MAC": "macs", "AC": "acs"}, 1.0, value)
    return _bars(tidy, value, "Operations per layer: MAC vs AC",
                 [SERIES_COLORS["MAC"], SERIES_COLORS["AC"]], value_format="%.3g")


def energy_comparison(
    totals: Mapping[str, Any],
    accuracy: Mapping[str, float] | None = None,
    baseline: str | None = None,
) -> hv.Overlay:
    """Bars of total energy per sample by variant, labelled with the ratio to ``baseline``.

    ``totals`` maps a variant name to joules (or anything with ``.total_j``); ``baseline``
    defaults to the first entry; ``accuracy`` (same names) is added to labels and hover.

    Example:
        >>> chart = energy_comparison({"standard": 2e-4, "spiking": 3e-5, "int8": 5e-5}, {"spiking": 0.91})
    """
    if not isinstance(totals, Mapping) or not totals:
        raise ValueError("totals must be a non-empty dict variant -> joules")
    joules = {str(k): float(getattr(v, "total_j", v)) for k, v in totals.items()}
    base = str(baseline) if baseline is not None else next(iter(joules))
    if base not in joules:
        raise ValueError(f"baseline={baseline!r} is not in totals; allowed: {', '.join(joules)}")
    accuracy = dict(accuracy or {})
    unknown = [k for k in accuracy if k not in joules]
    if unknown:
        raise ValueError(
            f"accuracy has variant(s) {', '.join(unknown)} not in totals ({', '.join(joules)})"
        )
    unit, scale = energy_unit(max(joules.values()))
    value = hv.Dimension("energy", label="energy per sample", unit=unit)
    df = pd.DataFrame(
        {
            "variant": list(joules),
            "energy": [j / scale for j in joules.values()],
            "ratio": [j / joules[base] if joules[base] else np.nan for j in joules.values()],
            "accuracy": [accuracy.get(k, np.nan) for k in joules],
            "color": [variant_color(k) for k in joules],  # one colour per variant in every view
        }
    )
    df["text"] = [
        f"{r:.2f}×" + ("" if np.isnan(a) else f"\nacc {a:.3g}")
        for r, a in zip(df["ratio"], df["accuracy"])
    ]
    vdims = [value, hv.Dimension("ratio", label=f"ratio to {base}"), hv.Dimension("accuracy")]
    bars = bokeh_opts(
        hv.Bars(df, kdims=[hv.Dimension("variant")], vdims=[*vdims, "color"]),
        color="color",
        tools=["hover"],
        show_legend=False,
        padding=(0.05, (0, 0.2)),
        xrotation=30,  # long variant names do not overlap
    )
    labels = bokeh_opts(
        hv.Labels(df, kdims=["variant", "energy"], vdims=["text"]),
        text_baseline="bottom",
        text_font_size="9pt",
    )
    return bokeh_opts(
        hv.Overlay([bars, labels]),
        title=f"Energy per sample (ratio to {base}; axis from 0)",
        width=min(PLOT_WIDTH, max(560, LABEL_PX * len(df))),  # room for each bar's two-line label
        shared_axes=False,
        height=420,
    )


def accuracy_energy_scatter(
    totals: Mapping[str, Any],
    accuracy: Mapping[str, float],
    title: str = "Accuracy vs energy per sample",
) -> hv.Overlay:
    """One point per variant, energy per sample (x) against accuracy (y), coloured and named.

    ``totals`` maps a variant name to joules (or anything with ``.total_j``) and ``accuracy`` the
    same names to accuracies. Names sit right of their points, alternately above and below the
    line so neighbours do not overlap, inside the plot's padding so none is cut at the edge.

    Example:
        >>> plot = accuracy_energy_scatter({"TT": 3e-4, "SS": 9e-5}, {"TT": 0.99, "SS": 0.97})
        >>> sorted(plot.get(0).data["variant"])
        ['SS', 'TT']
    """
    if not isinstance(totals, Mapping) or not totals:
        raise ValueError("totals must be a non-empty dict variant -> joules")
    joules = {str(k): float(getattr(v, "total_j", v)) for k, v in totals.items()}
    missing = [k for k in joules if k not in accuracy]
    if missing:
        raise ValueError(f"accuracy lacks variant(s) {', '.join(missing)}; it needs every name in totals")
    unit, scale = energy_unit(max(joules.values()))
    energy = hv.Dimension("energy", label="energy per sample", unit=unit)
    df = pd.DataFrame({"variant": list(joules), "energy": [j / scale for j in joules.values()],
                       "accuracy": [float(accuracy[k]) for k in joules],
                       "color": [variant_color(k) for k in joules]}).sort_values("energy")
    span = float(df["energy"].max() - df["energy"].min()) or float(df["energy"].max()) or 1.0
    df["label_x"] = df["energy"] + 0.015 * span
    points = bokeh_opts(hv.Scatter(df, energy, ["accuracy", "variant", "color"]),
                        color="color", size=10, tools=["hover"], show_legend=False)
    above, below = df.iloc[::2], df.iloc[1::2]  # neighbours in energy alternate sides
    labels = [bokeh_opts(hv.Labels(part, ["label_x", "accuracy"], "variant"), text_align="left",
                         text_baseline=baseline, text_font_size="8pt", text_color="#333333")
              for part, baseline in ((above, "bottom"), (below, "top")) if len(part)]
    return bokeh_opts(hv.Overlay([points, *labels]), title=title, width=min(PLOT_WIDTH, 640),
                      height=380, xlabel=f"{energy.label} ({unit})", ylabel="accuracy",
                      padding=((0.05, 0.25), 0.12), shared_axes=False)


def _ablation_frame(ablation: pd.DataFrame) -> pd.DataFrame:
    return _checked_frame(ablation, "ablation", ABLATION_COLUMNS, "a DataFrame",
                          "the first row must be the baseline")


def waterfall_steps(values: np.ndarray, higher_is_better: bool) -> pd.DataFrame:
    """Bars of a waterfall: baseline from 0, one bar per step delta, and the final level.

    Returns columns x, start, end, delta, effect (baseline/better/worse/final).
    """
    rows = [{"x": 0, "start": 0.0, "end": values[0], "delta": values[0], "effect": "baseline"}]
    for i in range(1, len(values)):
        delta = values[i] - values[i - 1]
        better = delta >= 0 if higher_is_better else delta <= 0
        rows.append(
            {
                "x": i,
                "start": values[i - 1],
                "end": values[i],
                "delta": delta,
                "effect": "better" if better else "worse",
            }
        )
    rows.append(
        {
            "x": len(values),
            "start": 0.0,
            "end": values[-1],
            "delta": values[-1] - values[0],
            "effect": "final",
        }
    )
    return pd.DataFrame(rows)


def _zoom(levels: np.ndarray) -> tuple[float, float]:
    """y-range around the levels, so small accuracy steps stay visible (bars start off-axis)."""
    lo, hi = float(np.nanmin(levels)), float(np.nanmax(levels))
    span = hi - lo if hi > lo else max(abs(hi) * 0.05, 1e-3)
    return lo - 0.5 * span, hi + 0.3 * span


def _waterfall(
    steps: pd.DataFrame, names: list[str], value: hv.Dimension, title: str, zoom: bool
) -> hv.Overlay:
    steps = steps.assign(x0=steps["x"] - 0.4, x1=steps["x"] + 0.4, variant=names)
    steps["y0"], steps["y1"] = (
        steps[["start", "end"]].min(axis=1),
        steps[["start", "end"]].max(axis=1),
    )
    steps = steps.rename(columns={"end": value.name})
    vdims = ["variant", hv.Dimension("delta", unit=value.unit), value, "effect"]
    rects = bokeh_opts(
        hv.Rectangles(steps, kdims=["x0", "y0", "x1", "y1"], vdims=vdims),
        color="effect",
        cmap=EFFECT_COLORS,
        tools=["hover"],
        line_color="white",
        shared_axes=False,
    )
    level = steps[value.name].to_numpy()
    links = pd.DataFrame(
        {
            "x0": steps["x1"][:-2],
            "y0": level[:-2],
            "x1": steps["x0"][1:-1].to_numpy(),
            "y1": level[:-2],
        }
    )
    connectors = bokeh_opts(
        hv.Segments(links, kdims=["x0", "y0", "x1", "y1"]),
        color="gray",
        line_dash="dotted",
        shared_axes=False,
    )
    extra = {"ylim": _zoom(level)} if zoom else {"padding": (0.05, (0, 0.1))}
    ticks = list(zip(steps["x"].tolist(), names))
    return bokeh_opts(
        hv.Overlay([rects, connectors]),
        title=title,
        xticks=ticks,
        xrotation=45,
        xlabel="variant (cumulative)",
        shared_axes=False,
        ylabel=f"{value.label}" + (f" ({value.unit})" if value.unit else ""),
        width=PLOT_WIDTH // 2,  # two side by side fit a notebook column
        height=340,
        show_legend=False,
        **extra,
    )


def ablation_waterfall(ablation: pd.DataFrame) -> hv.Layout:
    """Two waterfalls, accuracy and energy per sample, of cumulative ablation steps.

    Rows are in cumulative order, the first is the baseline; each bar is the change from the
    previous row (green = better: accuracy up / energy down, red = worse) and the last bar is
    the final level.

    Example:
        >>> df = pd.DataFrame({"variant": ["ANN", "+spiking", "+CPG-PE"],
        ...                    "accuracy": [0.95, 0.91, 0.93], "energy_j": [2e-4, 3e-5, 3.1e-5]})
        >>> charts = ablation_waterfall(df)  # accuracy | energy
    """
    df = _ablation_frame(ablation)
    names = [str(v) for v in df["variant"]] + [f"final: {df['variant'].iloc[-1]}"]
    acc = df["accuracy"].to_numpy(dtype=np.float64)
    energy = df["energy_j"].to_numpy(dtype=np.float64)
    unit, scale = energy_unit(float(np.nanmax(np.abs(energy))))
    acc_view = _waterfall(
        waterfall_steps(acc, True),
        names,
        hv.Dimension("accuracy", label="accuracy"),
        "Ablation: accuracy (y-axis zoomed)",
        zoom=True,
    )
    energy_dim = hv.Dimension("energy", label="energy per sample", unit=unit)
    energy_view = _waterfall(
        waterfall_steps(energy / scale, False), names, energy_dim, "Ablation: energy", zoom=False
    )
    return hv.Layout([acc_view, energy_view])


def save_ablation_waterfall(ablation: pd.DataFrame, path: str | os.PathLike, title: str = "Ablation") -> Path:
    """:func:`ablation_waterfall` of the successful rows of a ``run_ablation`` table, saved as one
    HTML page with inline Bokeh resources (opens offline); a page saying so when no row finished.

    Example:
        >>> import tempfile
        >>> df = pd.DataFrame({"variant": ["baseline", "+cpg"], "status": ["ok", "ok"], "error": ["", ""],
        ...                    "accuracy": [0.9, 0.92], "energy_j": [2e-5, 2.1e-5]})
        >>> page = save_ablation_waterfall(df, Path(tempfile.mkdtemp()) / "ablation.html")
        >>> "Bokeh" in page.read_text()
        True
    """
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    df, path = ablation, Path(path)
    ok = df[(df["status"] == "ok") & df["accuracy"].notna() & df["energy_j"].notna()]
    if ok.empty:
        failed = "; ".join(f"{r['variant']}: {r['error']}" for _, r in df.iterrows())
        path.write_text(f"<!DOCTYPE html><html><body><h1>{title}</h1><p>No variant finished: {failed}</p>"
                        "</body></html>\n")
        return path
    chart = ablation_waterfall(ok[["variant", "accuracy", "energy_j"]].astype({"accuracy": float, "energy_j": float}))
    figure = hv.render(chart, backend="bokeh")  # plain Bokeh document: no Panel template (whose icons are CDN links)
    path.write_text(file_html(figure, INLINE, title=title))
    return path
