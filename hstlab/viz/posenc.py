"""CPG positional encoding views: oscillator phase portrait, phase vs spike code, similarity.

The same views work for the sinusoidal encoding (continuous, no spikes) for comparison; the
maths lives in :mod:`hstlab.layers.posenc` (``cpg_phases``, ``cpg_code``, ``sincos_code``).
Even channel ``2i`` is ``sin(ω_i p)``, odd channel ``2i+1`` is ``cos(ω_i p)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd

from hstlab.registry import Registry
from hstlab.viz._util import bokeh_opts, check_index, check_ndim, pick_indices, to_numpy
from hstlab.viz.palette import PLOT_WIDTH

POSITION = hv.Dimension("position", label="position p")
SIN = hv.Dimension("sin", label="x_2i = sin(ω_i p)", range=(-1.1, 1.1))
COS = hv.Dimension("cos", label="x_2i+1 = cos(ω_i p)", range=(-1.1, 1.1))
PHASE = hv.Dimension("value", label="oscillator state", range=(-1.1, 1.1))
CHANNEL = hv.Dimension("channel", label="PE channel")
PAIR = hv.Dimension("pair", label="oscillator pair i")
SIMILARITY = hv.Dimension("similarity", label="similarity")

SIMILARITY_METRICS: Registry[Callable[[np.ndarray], np.ndarray]] = Registry("similarity metric")


@SIMILARITY_METRICS.register("cosine")
def _cosine(code: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(code, axis=1, keepdims=True)  # [P, 1]
    unit = np.divide(code, norms, out=np.zeros_like(code), where=norms > 0)
    return unit @ unit.T  # [P, P]


@SIMILARITY_METRICS.register("dot")
def _dot(code: np.ndarray) -> np.ndarray:
    return code @ code.T  # [P, P]


@SIMILARITY_METRICS.register("hamming")
def _hamming(code: np.ndarray) -> np.ndarray:
    """Fraction of equal channels (1 = identical codes); meant for binary codes."""
    return (code[:, None, :] == code[None, :, :]).mean(axis=-1)  # [P, P]


def _table(x: Any, name: str) -> np.ndarray:
    arr = to_numpy(x, name).astype(np.float64)
    check_ndim(arr, name, 2, "[positions, channels]")
    return arr


def _pairs(n_channels: int, pairs: int | Sequence[int]) -> np.ndarray:
    n_pairs = n_channels // 2
    if n_pairs == 0:
        raise ValueError(f"phases has {n_channels} channel(s); need at least 2 (one sin/cos pair)")
    if isinstance(pairs, (int, np.integer)) and not isinstance(pairs, bool):
        return pick_indices(n_pairs, int(pairs))
    return np.asarray([check_index(i, "pairs", n_pairs) for i in pairs], dtype=np.int64)


def phase_portrait(
    phases: Any,
    pairs: int | Sequence[int] = 4,
    threshold: float | None = None,
    title: str = "Oscillator phase portrait",
) -> hv.Overlay:
    """Each oscillator pair i as points in the (x_2i, x_2i+1) plane, one point per position.

    ``phases`` is ``[P, N]`` continuous states (``cpg_phases`` or ``sincos_code``); ``pairs`` a
    count (evenly spaced) or pair indices. All pairs lie on the unit circle (drawn grey); fast
    pairs go round it, slow ones cover a short arc. With ``threshold`` the lines x = θ and
    y = θ mark where each neuron of the pair spikes (right of / above the line). The result is
    an Overlay: circle, ``NdOverlay`` of ``Scatter`` keyed by pair, threshold lines.

    Example:
        >>> portrait = phase_portrait(cpg_phases(64, 16), pairs=3, threshold=0.8)
    """
    arr = _table(phases, "phases")  # [P, N]
    idx = _pairs(arr.shape[1], pairs)
    positions = np.arange(arr.shape[0])
    scatters = {
        int(i): bokeh_opts(
            hv.Scatter(
                (arr[:, 2 * i], arr[:, 2 * i + 1], positions), kdims=[SIN], vdims=[COS, POSITION]
            ),
            size=6,
            alpha=0.8,
            tools=["hover"],
        )
        for i in idx
    }
    circle = bokeh_opts(hv.Ellipse(0, 0, 2), color="lightgray")
    parts: list[Any] = [circle, hv.NdOverlay(scatters, kdims=[PAIR])]
    if threshold is not None:
        parts.append(bokeh_opts(hv.VLine(float(threshold)), color="red", line_dash="dashed"))
        parts.append(bokeh_opts(hv.HLine(float(threshold)), color="red", line_dash="dashed"))
    return bokeh_opts(
        hv.Overlay(parts),
        title=title,
        data_aspect=1,
        frame_width=300,
        xlabel=SIN.label,
        ylabel=COS.label,
        legend_position="right",
        shared_axes=False,
    )


def code_vs_phase(
    phases: Any,
    code: Any = None,
    channels: Sequence[int] = (0, 1),
    threshold: float | None = None,
    title: str = "Oscillator state and spike code",
) -> hv.Overlay:
    """Continuous sin/cos of chosen channels over positions, with the spikes of the code marked.

    ``code`` (``[P, N]`` binary, e.g. ``cpg_code``) is drawn as markers on the curve where the
    channel spikes; leave it ``None`` for a continuous encoding such as sincos.

    Example:
        >>> view = code_vs_phase(cpg_phases(64, 16), cpg_code(64, 16), channels=[0, 1], threshold=0.8)
    """
    arr = _table(phases, "phases")  # [P, N]
    spikes = None if code is None else _table(code, "code")
    if spikes is not None and spikes.shape != arr.shape:
        raise ValueError(f"code has shape {spikes.shape}; expected the phases shape {arr.shape}")
    chans = [check_index(c, "channels", arr.shape[1]) for c in channels]
    if not chans:
        raise ValueError("channels=[] is empty; pass at least one channel index")
    positions = np.arange(arr.shape[0])
    curves = {
        c: bokeh_opts(
            hv.Curve((positions, arr[:, c]), kdims=[POSITION], vdims=[PHASE]), tools=["hover"]
        )
        for c in chans
    }
    parts: list[Any] = [hv.NdOverlay(curves, kdims=[CHANNEL])]
    if spikes is not None:
        rows = [
            pd.DataFrame(
                {
                    "position": positions[spikes[:, c] > 0],
                    "value": arr[spikes[:, c] > 0, c],
                    "channel": c,
                }
            )
            for c in chans
        ]
        marks = pd.concat(rows, ignore_index=True)
        parts.append(
            bokeh_opts(
                hv.Scatter(marks, kdims=[POSITION], vdims=[PHASE, CHANNEL], label="spike"),
                marker="triangle",
                size=8,
                color="black",
                tools=["hover"],
            )
        )
    if threshold is not None:
        parts.append(bokeh_opts(hv.HLine(float(threshold)), color="red", line_dash="dashed"))
    return bokeh_opts(
        hv.Overlay(parts), title=title, width=600, height=300, legend_position="right"
    )


def code_image(code: Any, title: str = "Positional code") -> hv.Image:
    """The whole table, position (rows, top to bottom) x channel: spike code or continuous values.

    Example:
        >>> image = code_image(cpg_code(64, 32), title="CPG-PE spike code")
    """
    arr = _table(code, "code")  # [P, N]
    binary = bool(np.isin(arr, (0.0, 1.0)).all())
    element = hv.Image(
        (np.arange(arr.shape[1]), np.arange(arr.shape[0]), arr),
        kdims=[CHANNEL, POSITION],
        vdims=[hv.Dimension("code", label="spike" if binary else "value")],
    )
    return bokeh_opts(
        element,
        title=title,
        cmap="gray_r" if binary else "coolwarm",
        clim=(0.0, 1.0) if binary else (-1.0, 1.0),
        colorbar=not binary,
        tools=["hover"],
        invert_yaxis=True,
        shared_axes=False,
        width=420,
        height=360,
    )


def position_similarity(code: Any, metric: str = "cosine", title: str | None = None) -> hv.Image:
    """Position x position similarity of a positional code (cosine, dot or hamming).

    Example:
        >>> position_similarity(cpg_code(64, 32)).data["similarity"].shape
        (64, 64)
    """
    arr = _table(code, "code")  # [P, N]
    sim = SIMILARITY_METRICS.get(metric)(arr)  # [P, P]
    pos = np.arange(arr.shape[0])
    element = hv.Image(
        (pos, pos, sim),
        kdims=[hv.Dimension("p2", label="position p'"), hv.Dimension("p1", label="position p")],
        vdims=[SIMILARITY.clone(label=f"{metric} similarity")],
    )
    return bokeh_opts(
        element,
        title=title or f"Position similarity ({metric})",
        cmap="kbc",
        colorbar=True,
        tools=["hover"],
        invert_yaxis=True,
        shared_axes=False,
        width=400,
        height=360,
    )


POSENC_KINDS: Registry[Callable[..., tuple[Any, Any, float | None]]] = Registry("posenc view kind")


@POSENC_KINDS.register("cpg")
def _cpg_tables(num_positions: int, n_neurons: int, w_max: float, threshold: float) -> tuple:
    from hstlab.layers.posenc import cpg_code, cpg_phases

    return (
        cpg_phases(num_positions, n_neurons, w_max),
        cpg_code(num_positions, n_neurons, w_max, threshold),
        threshold,
    )


@POSENC_KINDS.register("sincos")
def _sincos_tables(num_positions: int, n_neurons: int, w_max: float, threshold: float) -> tuple:
    from hstlab.layers.posenc import sincos_code

    table = sincos_code(num_positions, n_neurons, w_max)
    return table, None, None


def posenc_views(
    kind: str = "cpg",
    num_positions: int = 64,
    n_neurons: int = 32,
    w_max: float = 10000.0,
    threshold: float = 0.8,
    pairs: int | Sequence[int] = 4,
) -> dict[str, hv.Element | hv.Overlay]:
    """All four views for ``kind`` ("cpg" or "sincos"): phase_portrait, code_vs_phase, code, similarity.

    The caller owns layout; the views are sized so two side by side fit ``PLOT_WIDTH``, e.g.
    ``hv.Layout(list(posenc_views("cpg").values())).cols(2)``.

    Example:
        >>> cpg, sincos = posenc_views("cpg"), posenc_views("sincos")
    """
    phases, code, th = POSENC_KINDS.get(kind)(num_positions, n_neurons, w_max, threshold)
    name = "CPG-PE" if kind == "cpg" else "sincos"
    table = phases if code is None else code
    return {
        "phase_portrait": phase_portrait(
            phases, pairs, th, title=f"{name}: oscillator phase portrait"
        ),
        "code_vs_phase": bokeh_opts(code_vs_phase(
            phases, code, (0, 1), th, title=f"{name}: state vs spike code (pair 0)"
        ), width=PLOT_WIDTH // 2),
        "code": code_image(
            table, title=f"{name}: {'spike code' if code is not None else 'values'}"
        ),
        "similarity": position_similarity(table, title=f"{name}: position similarity (cosine)"),
    }
