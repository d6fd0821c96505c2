"""Event-camera data: ON/OFF frames over time and an (x, y, t) view of raw events.

Frames are ``[T, C, H, W]`` with C = 2 or C = 1. With two channels the channel index is the
polarity p, as tonic's ``ToFrame`` (and ``hstlab.data``) bin them: channel 0 = OFF (p = 0),
channel 1 = ON (p = 1). Raw events are a tonic-style structured array with fields x, y, t, p.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd

from hstlab.viz._util import (
    bokeh_opts,
    check_index,
    check_ndim,
    ensure_backend,
    pick_indices,
    to_numpy,
)

X = hv.Dimension("x", label="x (pixel)")
Y = hv.Dimension("y", label="y (pixel)")
TIME_MS = hv.Dimension("t", label="t (ms)")
POLARITY = hv.Dimension("polarity", label="polarity")
POLARITY_COLORS = {"ON": "#d62728", "OFF": "#1f77b4"}
BACKENDS = ("auto", "bokeh", "plotly")


def _frames(frames: Any, sample: int) -> np.ndarray:
    arr = to_numpy(frames, "frames").astype(np.float64)
    check_ndim(arr, "frames", (4, 5), "[T, C, H, W] or [T, B, C, H, W] with C = 1 or 2 (ON, OFF)")
    if arr.ndim == 5:
        arr = arr[:, check_index(sample, "sample", arr.shape[1])]  # [T, C, H, W]
    if arr.shape[1] not in (1, 2):
        raise ValueError(
            f"frames has {arr.shape[1]} channels (shape {arr.shape}); allowed: 1 or 2 (ON, OFF)"
        )
    return arr


def event_frames(frames: Any, sample: int = 0, on_channel: int = 1) -> hv.HoloMap:
    """Frames over time as a ``HoloMap`` keyed by time step (slider; ``.layout()`` for a grid).

    With two channels each pixel shows ON - OFF counts (red = ON, blue = OFF, white = none or
    balanced; ON is channel ``on_channel``, 1 in tonic's order); with one channel it shows the
    count. A 5-D ``[T, B, C, H, W]`` batch takes ``sample``.

    Example:
        >>> hmap = event_frames(x, sample=0)  # x: [T, B, 2, H, W] event frames
        >>> grid = hmap.layout().cols(4)
    """
    arr = _frames(frames, sample)  # [T, C, H, W]
    signed = arr.shape[1] == 2
    if on_channel not in (0, 1):
        raise ValueError(f"on_channel={on_channel!r} is not allowed; allowed: 0, 1")
    on, off = arr[:, on_channel], arr[:, 1 - on_channel]  # [T, H, W] each
    value = on - off if signed else arr[:, 0]  # [T, H, W]
    bound = max(float(np.abs(value).max()), 1e-9)
    vdim = hv.Dimension("events", label="ON - OFF events" if signed else "events")
    rows, cols = np.arange(value.shape[1]), np.arange(value.shape[2])
    items = {}
    for t in range(value.shape[0]):
        image = hv.Image((cols, rows, value[t]), kdims=[X, Y], vdims=[vdim])
        items[t] = bokeh_opts(
            image,
            title=f"Events, time bin {t}" + (" (red ON, blue OFF)" if signed else ""),
            cmap="coolwarm" if signed else "fire",
            clim=(-bound, bound) if signed else (0.0, bound),
            colorbar=True,
            tools=["hover"],
            invert_yaxis=True,
            data_aspect=1,
            frame_width=240,
        )
    return hv.HoloMap(items, kdims=[hv.Dimension("t", label="time bin")])


def _events_frame(events: Any, max_events: int) -> pd.DataFrame:
    names = getattr(getattr(events, "dtype", None), "names", None) or list(
        getattr(events, "columns", [])
    )
    missing = [f for f in ("x", "y", "t", "p") if f not in names]
    if missing:
        raise ValueError(
            f"events lacks field(s) {', '.join(missing)} (has {', '.join(map(str, names)) or 'none'}); "
            "expected a structured array or DataFrame with x, y, t, p"
        )
    keep = pick_indices(len(events), max_events)
    df = pd.DataFrame({f: np.asarray(events[f])[keep] for f in ("x", "y")})
    df["t"] = np.asarray(events["t"])[keep] / 1000.0  # tonic timestamps are µs
    p = np.asarray(events["p"])[keep]
    df["polarity"] = np.where(p > 0, "ON", "OFF")
    return df


def event_cloud(
    events: Any, max_events: int = 20000, backend: str = "auto"
) -> hv.Scatter3D | hv.Layout:
    """Raw events of one sample in (x, y, t in ms from tonic µs), ON red and OFF blue.

    With ``backend="plotly"`` (or ``"auto"`` when plotly is installed) this is an
    ``hv.Scatter3D`` styled for the plotly backend. Otherwise (``"bokeh"``, or ``"auto"``
    without plotly) it falls back to an ``hv.Layout`` of two Bokeh projections, x-t and y-t.
    More than ``max_events`` events are subsampled evenly in time order (title says so).

    Example:
        >>> cloud = event_cloud(events)  # events: tonic structured array (x, y, t, p)
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not allowed; allowed: {', '.join(BACKENDS)}")
    has_plotly = importlib.util.find_spec("plotly") is not None
    if backend == "plotly" and not has_plotly:
        raise ValueError(
            "backend='plotly' needs the plotly package; install it or use backend='bokeh'"
        )
    df = _events_frame(events, max_events)
    shown = (
        f" ({len(df)} of {len(events)} events)" if len(df) < len(events) else f" ({len(df)} events)"
    )
    if backend == "plotly" or (backend == "auto" and has_plotly):
        ensure_backend("plotly")
        cloud = hv.Scatter3D(df, kdims=[X, Y, TIME_MS], vdims=[POLARITY])
        return cloud.opts(
            backend="plotly", color="polarity", cmap=POLARITY_COLORS, size=2, title=f"Events{shown}"
        )
    views = []
    for axis in (X, Y):
        scatter = hv.Scatter(df, kdims=[TIME_MS], vdims=[axis, POLARITY])
        views.append(
            bokeh_opts(
                scatter,
                title=f"Events, {axis.name}-t projection{shown}",
                color="polarity",
                cmap=POLARITY_COLORS,
                size=2,
                alpha=0.6,
                tools=["hover"],
                width=450,
                height=300,
                show_legend=True,
            )
        )
    return hv.Layout(views)
