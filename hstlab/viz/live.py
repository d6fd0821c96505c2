"""Live training curves: trainer events -> ``hv.streams.Buffer`` -> one ``DynamicMap`` per metric.

Two views of the same rows, chosen by where the training runs:

- **A notebook cell that trains** (``trainer.fit()`` blocks the kernel): :meth:`LiveCurves.show`
  puts an image in the cell's output and redraws it in place while the cell runs (see
  :mod:`hstlab.viz.live_image` for why an image and not Bokeh). The call still blocks; the final
  state is always drawn, and an executed notebook file keeps it.
- **A Panel app or a training thread** (the kernel stays free): :meth:`LiveCurves.layout` gives
  interactive Bokeh plots fed by ``hv.streams.Buffer``; the explorer's Train tab uses them.

Example:
    >>> live = LiveCurves()
    >>> data = [(x[:, i], i % 2) for i in range(x.shape[1])]  # (frames [T, C, H, W], label)
    >>> trainer = Trainer(model, cfg, data, data, callbacks=[live])  # live(event) on every event
    >>> live.show()  # in the training cell: an image redrawn while fit() runs  # doctest: +SKIP
    >>> trainer.fit()  # doctest: +SKIP
    >>> live.layout()  # afterwards (or in a Panel app): interactive Bokeh plots  # doctest: +SKIP
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd

from hstlab.viz._util import bokeh_opts
from hstlab.viz.live_image import NotebookImage, render_png
from hstlab.viz.palette import SERIES_COLORS, integer_ticks, legend_only_with_data

METRICS = {
    "loss": hv.Dimension("loss", label="loss"),
    "accuracy": hv.Dimension("accuracy", label="accuracy"),
    "firing_rate": hv.Dimension("firing_rate", label="firing rate (spikes / neuron / step)"),
    "energy_per_sample_j": hv.Dimension(
        "energy_per_sample_uj", label="energy per sample", unit="µJ"
    ),
}
SCALE = {"energy_per_sample_j": 1e6}  # event attribute (J) -> buffer column (µJ)
BASE_COLUMNS = ("step", "epoch", "seconds")
STEP = hv.Dimension("step", label="optimizer step")


def _number(value: Any, scale: float = 1.0) -> float:
    """``None`` / non-numbers / inf -> NaN, so missing metrics leave gaps instead of failing."""
    try:
        out = float(value) * scale
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=np.float64) for c in columns})


class LiveCurves:
    """Stream training metrics into Bokeh plots while a :class:`hstlab.Trainer` runs.

    ``push(event)`` (or calling the object, so it is a trainer callback) takes any object with
    the ``TrainEvent`` attributes (kind, step, epoch, seconds, loss, accuracy, firing_rate,
    energy_per_sample_j and optional ``val_<metric>``). Step events go to :attr:`buffer` (a
    line per metric), epoch events to :attr:`epoch_buffer` (markers, and ``val_<metric>`` as a
    dashed line); ``fit_end`` only flushes. To keep a running trainer fast, step rows are sent
    at most every ``min_interval_s`` seconds (batched); epoch events and :meth:`flush` send
    at once (a redraw of the four Panel-rendered plots took ~30 ms per metric on a 2-core CPU,
    hence the default 0.5 s). Energy is shown in µJ.

    Example:
        >>> live = LiveCurves(min_interval_s=0)
        >>> live.push(TrainEvent(kind="step", step=1, epoch=0, loss=2.3, accuracy=0.1))
        >>> live.buffer.data["loss"].tolist()
        [2.3]
    """

    def __init__(
        self,
        metrics: Sequence[str] = tuple(METRICS),
        length: int = 10000,
        min_interval_s: float = 0.5,
    ) -> None:
        unknown = [m for m in metrics if m not in METRICS]
        if unknown or not metrics:
            raise ValueError(
                f"metrics={list(metrics)!r} is not allowed; allowed: {', '.join(METRICS)}"
            )
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValueError(f"length={length!r} must be an integer >= 1")
        if not min_interval_s >= 0:
            raise ValueError(f"min_interval_s={min_interval_s!r} must be a number >= 0")
        self.metrics = tuple(metrics)
        self.min_interval_s = float(min_interval_s)
        names = [METRICS[m].name for m in self.metrics]
        self.step_columns = (*BASE_COLUMNS, *names)
        self.epoch_columns = (*self.step_columns, *(f"val_{n}" for n in names))
        self.buffer = hv.streams.Buffer(_empty(self.step_columns), length=length, index=False)
        self.epoch_buffer = hv.streams.Buffer(
            _empty(self.epoch_columns), length=length, index=False
        )
        self._pending: list[dict[str, float]] = []
        self._last_send = -math.inf
        self._lock = threading.Lock()
        self.view: NotebookImage | None = None  # set by show()

    def row(self, event: Any) -> dict[str, float]:
        """The values ``push`` records for ``event`` (attributes read duck-typed)."""
        out = {c: _number(getattr(event, c, None)) for c in BASE_COLUMNS}
        for m in self.metrics:
            name, scale = METRICS[m].name, SCALE.get(m, 1.0)
            out[name] = _number(getattr(event, m, None), scale)
            out[f"val_{name}"] = _number(getattr(event, f"val_{m}", None), scale)
        return out

    def push(self, event: Any) -> None:
        """Record one event: cheap (a dict append; a ``Buffer.send`` at most every interval)."""
        kind = getattr(event, "kind", "step")
        if kind == "fit_end":
            self.flush()
            self._redraw(force=True)  # the final state is always drawn
            return
        row = self.row(event)
        if kind == "epoch":
            self.flush()
            frame = pd.DataFrame({c: [row[c]] for c in self.epoch_columns})
            with self._lock:
                self.epoch_buffer.send(frame)
            self._redraw()
            return
        with self._lock:
            self._pending.append(row)
        if time.monotonic() - self._last_send >= self.min_interval_s:
            self.flush()
        self._redraw()

    __call__ = push

    def flush(self) -> None:
        """Send the step rows batched since the last send."""
        with self._lock:
            rows, self._pending = self._pending, []
            if rows:
                self.buffer.send(pd.DataFrame({c: [r[c] for r in rows] for c in self.step_columns}))
            self._last_send = time.monotonic()

    def clear(self) -> None:
        """Drop all rows (e.g. before a new run)."""
        with self._lock:
            self._pending = []
            self.buffer.clear()
            self.epoch_buffer.clear()
        self._redraw(force=True)

    # ------------------------------------------------------------ notebook image view
    def png(self, cols: int = 2) -> bytes:
        """The current curves (pending rows included) as PNG bytes; see :meth:`show`."""
        self.flush()
        with self._lock:
            steps, epochs = self.buffer.data.copy(), self.epoch_buffer.data.copy()
        titles = {METRICS[m].name: METRICS[m].label + (f" ({METRICS[m].unit})" if METRICS[m].unit
                                                       else "") for m in self.metrics}
        names = [METRICS[m].name for m in self.metrics]
        return render_png(steps, epochs, names, titles, cols=cols)

    def summary(self) -> str:
        """One line on the latest step (the text shown next to the image, and in plain text)."""
        data = self.buffer.data
        if not len(data):
            return "live training curves: waiting for the first step"
        last = data.iloc[-1]
        values = ", ".join(f"{METRICS[m].name} {last[METRICS[m].name]:.4g}" for m in self.metrics
                           if math.isfinite(last[METRICS[m].name]))
        return f"step {int(last['step'])}, epoch {int(last['epoch'])}: {values}"

    def show(self, cols: int = 2, interval_s: float = 1.0) -> Any:
        """Display the curves as an image in the running cell and redraw it while training.

        Call it in the cell that trains (before ``fit``/``train_run``): every ``interval_s``
        seconds (longer if drawing is slow) the image is replaced in place, and once more at
        ``fit_end``. Returns the IPython display handle. A broken front end only turns the
        image off (with a warning); training goes on.
        """
        self.view = NotebookImage(lambda: self.png(cols), self.summary, interval_s)
        return self.view.show()

    def _redraw(self, force: bool = False) -> None:
        view = self.view
        if view is not None:
            view.update(force=force)

    def _train_curve(self, metric: str, data: pd.DataFrame) -> hv.Curve:
        curve = hv.Curve(data, STEP, [METRICS[metric], "epoch"], label="train")
        return bokeh_opts(curve, color=SERIES_COLORS["train"], tools=["hover"], framewise=True)

    def _epoch_marks(self, metric: str, data: pd.DataFrame) -> hv.Overlay:
        dim = METRICS[metric]
        val = data[["step", "epoch", f"val_{dim.name}"]].rename(
            columns={f"val_{dim.name}": dim.name}
        ).dropna()  # no validation value yet: no points, and no legend entry
        marks = hv.Scatter(data.dropna(subset=[dim.name]), STEP, [dim, "epoch"], label="train (epoch)")
        color = SERIES_COLORS["validation"]
        return hv.Overlay(
            [
                bokeh_opts(marks, color=SERIES_COLORS["train (epoch)"], size=7, tools=["hover"]),
                bokeh_opts(hv.Curve(val, STEP, [dim, "epoch"], label="validation"),
                           color=color, line_dash="dashed", tools=["hover"]),
                bokeh_opts(hv.Scatter(val, STEP, [dim, "epoch"], label="validation"),
                           color=color, size=8, marker="diamond", tools=["hover"]),  # one point shows
            ]
        )

    def plots(self) -> dict[str, hv.DynamicMap | hv.Overlay]:
        """Per metric: step line (DynamicMap on :attr:`buffer`) * epoch marks (on
        :attr:`epoch_buffer`), redrawn on every send; the caller owns the layout."""
        out = {}
        for m in self.metrics:
            dim = METRICS[m]
            train = hv.DynamicMap(
                lambda data, m=m: self._train_curve(m, data), streams=[self.buffer]
            )
            epochs = hv.DynamicMap(
                lambda data, m=m: self._epoch_marks(m, data), streams=[self.epoch_buffer]
            )
            out[m] = bokeh_opts(
                train * epochs,
                title=dim.label + (f" ({dim.unit})" if dim.unit else ""),
                width=470,  # two plots and their legends fit a 1,000 px notebook column
                height=260,
                legend_position="right",
                padding=0.05,
                hooks=[integer_ticks, legend_only_with_data],
            )
        return out

    def layout(self, cols: int = 2) -> hv.Layout:
        """All metric plots in one ``hv.Layout``."""
        return hv.Layout(list(self.plots().values())).cols(cols)
