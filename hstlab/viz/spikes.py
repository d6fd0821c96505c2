"""Spike rasters, membrane traces and firing-rate heatmaps from a Recorder's dicts.

Inputs are time first: ``rec.spikes[name]`` / ``rec.membranes[name]`` are ``[T, B, ...]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd

from hstlab.viz._util import (
    bokeh_opts,
    check_index,
    check_ndim,
    pick_indices,
    select_layer,
    to_numpy,
)
from hstlab.viz.palette import integer_ticks

TIME = hv.Dimension("t", label="time step")
NEURON = hv.Dimension("neuron", label="neuron (flat index)")
LAYER = hv.Dimension("layer", label="layer")
RATE = hv.Dimension("rate", label="firing rate", range=(0, None))
VOLT = hv.Dimension("v", label="membrane potential H_t (a.u.)")


def _per_sample(x: Any, name: str, sample: int) -> np.ndarray:
    """``[T, B, ...]`` -> ``[T, neurons]`` for one sample."""
    arr = to_numpy(x, name)
    check_ndim(arr, name, tuple(range(2, 9)), "[T, B, ...] (time first, then batch)")
    b = check_index(sample, "sample", arr.shape[1])
    return arr[:, b].reshape(arr.shape[0], -1)  # [T, N]


def spike_raster(
    spikes: Any, layer: str | None = None, sample: int = 0, max_neurons: int = 512
) -> hv.Scatter:
    """Raster plot (time step x neuron) of one recorded spiking layer for one sample.

    ``spikes`` is ``rec.spikes`` (dict name -> ``[T, B, ...]``) or one such tensor. Neurons
    beyond ``max_neurons`` are subsampled evenly (kept indices are the true flat indices) and
    the title says so.

    Example:
        >>> raster = spike_raster(rec.spikes, "blocks.0.mlp.branch.neuron1", sample=0)
        >>> type(raster).__name__
        'Scatter'
    """
    label, value = select_layer(spikes, layer, "spikes")
    s = _per_sample(value, "spikes", sample)  # [T, N]
    n_total = s.shape[1]
    keep = pick_indices(n_total, max_neurons)
    t_idx, n_pos = np.nonzero(s[:, keep] != 0)
    data = pd.DataFrame({"t": t_idx.astype(np.int64), "neuron": keep[n_pos]})
    shown = f" (showing {keep.size} of {n_total} neurons)" if keep.size < n_total else ""
    title = f"Spikes: {label}, sample {sample}{shown}"
    element = hv.Scatter(data, kdims=[TIME], vdims=[NEURON], label="spikes")
    return bokeh_opts(
        element,
        title=title,
        marker="square",
        size=max(2, min(8, int(400 / max(keep.size, 1)))),
        color="black",
        tools=["hover"],
        xlim=(-0.5, s.shape[0] - 0.5),
        ylim=(-0.5, n_total - 0.5),
        width=600,
        height=320,
        hooks=[integer_ticks],
    )


def _threshold_trace(threshold: Any, sample: int, neurons: np.ndarray, shape: tuple) -> Any:
    """A scalar threshold -> float; a per-neuron ``[T, B, ...]`` threshold -> ``[T, k]``."""
    arr = to_numpy(threshold, "threshold").astype(np.float64)
    if arr.size == 1:
        return float(arr.reshape(-1)[0])
    if arr.shape != shape:
        raise ValueError(
            f"threshold has shape {tuple(arr.shape)}; expected a scalar or the membrane shape {shape}"
        )
    return arr[:, sample].reshape(shape[0], -1)[:, neurons]  # [T, k]


def membrane_traces(
    membranes: Any,
    threshold: Any = None,
    layer: str | None = None,
    sample: int = 0,
    neurons: int | Sequence[int] = 8,
) -> hv.Overlay:
    """Membrane potential over time for a few neurons, with the firing threshold drawn.

    ``membranes`` is ``rec.membranes`` or one ``[T, B, ...]`` tensor; ``threshold`` is a float,
    ``rec.thresholds`` (dict) or a per-neuron ``[T, B, ...]`` tensor (adaptive threshold, drawn
    dashed per neuron). ``neurons`` is a count (evenly spaced) or explicit flat indices.

    Example:
        >>> traces = membrane_traces(rec.membranes, rec.thresholds, "blocks.0.mlp.branch.neuron1", neurons=4)
    """
    label, value = select_layer(membranes, layer, "membranes")
    arr = to_numpy(value, "membranes")
    v = _per_sample(arr, "membranes", sample)  # [T, N]
    n_total = v.shape[1]
    if isinstance(neurons, (int, np.integer)) and not isinstance(neurons, bool):
        idx = pick_indices(n_total, int(neurons))
    else:
        idx = np.asarray([check_index(n, "neurons", n_total) for n in neurons], dtype=np.int64)
        if idx.size == 0:
            raise ValueError("neurons=[] is empty; pass a count >= 1 or flat neuron indices")
    if isinstance(threshold, Mapping):
        threshold = threshold.get(label)
    t = np.arange(v.shape[0])
    curves = {
        int(n): bokeh_opts(hv.Curve((t, v[:, n]), kdims=[TIME], vdims=[VOLT]), tools=["hover"])
        for n in idx
    }
    overlay = hv.NdOverlay(curves, kdims=[NEURON])
    parts: list[Any] = [overlay]
    if threshold is not None:
        th = _threshold_trace(
            threshold, check_index(sample, "sample", arr.shape[1]), idx, arr.shape
        )
        if isinstance(th, float):
            parts.append(
                bokeh_opts(hv.HLine(th, label="threshold"), color="red", line_dash="dashed")
            )
            low, high = float(np.nanmin(v[:, idx])), float(np.nanmax(v[:, idx]))
            low, high = min(low, th), max(high, th)  # an HLine does not widen the axis: keep it in view
            pad = 0.05 * (high - low or 1.0)
            overlay = overlay.redim.range(**{VOLT.name: (low - pad, high + pad)})
            parts[0] = overlay
        else:
            for j, n in enumerate(idx):
                th_curve = hv.Curve(
                    (t, th[:, j]), kdims=[TIME], vdims=[VOLT], label=f"threshold {n}"
                )
                parts.append(bokeh_opts(th_curve, line_dash="dashed", color="red", alpha=0.6))
    title = f"Membrane potential: {label}, sample {sample}, {idx.size} of {n_total} neurons"
    return bokeh_opts(
        hv.Overlay(parts), title=title, width=600, height=320, legend_position="right",
        hooks=[integer_ticks],
    )


def firing_rate_table(spikes: Mapping[str, Any], sample: int | None = None) -> pd.DataFrame:
    """Tidy table (layer, t, rate, neurons) of mean firing rate per layer and time step.

    The rate averages over neurons and the batch (or one ``sample`` when given).

    Example:
        >>> table = firing_rate_table(rec.spikes)
        >>> list(table.columns)
        ['layer', 't', 'rate', 'neurons']
    """
    if not isinstance(spikes, Mapping) or not spikes:
        raise ValueError("spikes must be a non-empty dict name -> [T, B, ...] (e.g. rec.spikes)")
    rows = []
    for name, value in spikes.items():
        arr = to_numpy(value, f"spikes[{name!r}]").astype(np.float64)
        check_ndim(arr, f"spikes[{name!r}]", tuple(range(2, 9)), "[T, B, ...]")
        if sample is not None:
            arr = arr[:, check_index(sample, "sample", arr.shape[1])][:, None]
        flat = arr.reshape(arr.shape[0], -1)  # [T, B * N]
        neurons = flat.shape[1] // arr.shape[1]
        for t, rate in enumerate(flat.mean(axis=1)):
            rows.append({"layer": str(name), "t": t, "rate": float(rate), "neurons": neurons})
    return pd.DataFrame(rows, columns=["layer", "t", "rate", "neurons"])


def firing_rate_heatmap(spikes: Mapping[str, Any], sample: int | None = None) -> hv.HeatMap:
    """Heatmap of firing rate, layer (rows, model order top to bottom) x time step (columns).

    Example:
        >>> heat = firing_rate_heatmap(rec.spikes)
    """
    table = firing_rate_table(spikes, sample)
    which = "batch mean" if sample is None else f"sample {sample}"
    element = hv.HeatMap(
        table, kdims=[TIME, LAYER], vdims=[RATE, hv.Dimension("neurons", label="neurons")]
    )
    return bokeh_opts(
        element,
        title=f"Firing rate (spikes / neuron / step), {which}",
        cmap="fire",
        colorbar=True,
        tools=["hover"],
        invert_yaxis=True,
        clim=(0.0, max(float(table["rate"].max()), 1e-9)),
        shared_axes=False,  # in a Layout, each model lists its own layers (no empty rows)
        width=600,
        height=max(260, 60 + 22 * table["layer"].nunique()),
    )
