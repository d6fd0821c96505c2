"""Live curves as a PNG that a running notebook cell replaces in place (``update_display``).

Why a PNG and not the Bokeh plots of :meth:`hstlab.viz.LiveCurves.layout`: a Bokeh/Panel plot in
Jupyter is updated through a comm that the *browser* opens, and the kernel handles that opening
only between cells. While a cell blocks in ``trainer.fit()`` (or under Run All, where the next
cell is already queued) the updates wait, then arrive all at once when the cell ends. A display
update is an ordinary IOPub message the kernel sends at once from the running cell: JupyterLab
and classic Jupyter redraw it immediately, an executed file (nbconvert, nbmake) keeps the last
update, and an image needs no JavaScript, so it shows in untrusted notebooks and fetches nothing.

Example:
    >>> import pandas as pd
    >>> steps = pd.DataFrame({"step": [1.0, 2.0], "epoch": [0.0, 0.0], "loss": [2.3, 2.1]})
    >>> png = render_png(steps, steps.iloc[:0], ("loss",), {"loss": "loss"})
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
"""

from __future__ import annotations

import base64
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from io import BytesIO
from typing import Any

import numpy as np
import pandas as pd

TRAIN, EPOCH, VALIDATION = "#1f77b4", "black", "#d62728"  # the colours of LiveCurves.layout()
PANEL_SIZE_IN = (4.7, 2.6)  # one metric panel; two columns at 100 dpi fit a 1,000 px column
DPI = 100
DRAW_SHARE = 9.0  # wait at least this many draw times between draws: <= 10 % of wall time


def render_png(
    steps: pd.DataFrame,
    epochs: pd.DataFrame,
    columns: Sequence[str],
    titles: Mapping[str, str],
    cols: int = 2,
) -> bytes:
    """Draw one panel per column (step line, epoch markers, dashed validation) as PNG bytes.

    ``steps`` and ``epochs`` hold a ``step`` column and the metric columns (``epochs`` also
    ``val_<column>``), as in :attr:`LiveCurves.buffer` / :attr:`LiveCurves.epoch_buffer`.
    Uses a bare matplotlib ``Figure`` (Agg canvas): no pyplot state, safe in any thread.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = max(1, min(cols, len(columns)))
    rows = math.ceil(len(columns) / cols)
    fig = Figure(figsize=(PANEL_SIZE_IN[0] * cols, PANEL_SIZE_IN[1] * rows), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, name in zip(axes, columns):
        ax.set_title(titles.get(name, name), fontsize=10)
        ax.set_xlabel("optimizer step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if name in steps and len(steps):
            ax.plot(steps["step"], steps[name], color=TRAIN, lw=1.2, label="train")
        if name in epochs and len(epochs):
            ax.plot(epochs["step"], epochs[name], "o", color=EPOCH, ms=4, label="train (epoch)")
            val = f"val_{name}"
            if val in epochs and epochs[val].notna().any():
                ax.plot(epochs["step"], epochs[val], "--", color=VALIDATION, label="validation")
        if ax.lines:
            ax.legend(fontsize=7, loc="best")
        else:
            ax.text(0.5, 0.5, "waiting for data", ha="center", va="center", transform=ax.transAxes,
                    color="grey")
    for ax in axes[len(columns):]:
        ax.set_visible(False)
    w, h = fig.get_size_inches()  # fixed margins in inches: tight_layout would cost a third draw
    fig.subplots_adjust(left=0.75 / w, right=1 - 0.15 / w, bottom=0.5 / h, top=1 - 0.3 / h,
                        wspace=0.9 / PANEL_SIZE_IN[0], hspace=1.0 / PANEL_SIZE_IN[1])
    out = BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


class NotebookImage:
    """One output area a running cell redraws: ``show`` displays, ``update`` replaces it.

    Throttled: ``update`` redraws at most every ``interval_s`` seconds, and never spends more
    than about a tenth of the wall time drawing (the interval grows to 9x the last draw time), so
    the IOPub rate limit cannot be reached and training is not slowed by the chart;
    ``update(force=True)`` always draws (the final state). Any error while drawing or sending
    (a closed front end, no IPython) is reported once as a warning and turns the view off:
    training never fails because of its chart.

    Example:
        >>> view = NotebookImage(lambda: b"\\x89PNG...", summary=lambda: "step 3", interval_s=0)
        >>> view.bundle()["text/plain"]
        'step 3'
    """

    def __init__(self, draw: Any, summary: Any = None, interval_s: float = 1.0) -> None:
        if not interval_s >= 0:
            raise ValueError(f"interval_s={interval_s!r} must be a number >= 0")
        self.draw = draw  # () -> PNG bytes
        self.summary = summary or (lambda: "live training curves")
        self.interval_s = float(interval_s)
        self.handle: Any = None
        self.failed: str | None = None
        self.draws = 0
        self._last = -math.inf
        self._cost = 0.0

    def bundle(self) -> dict[str, str]:
        """The MIME bundle shown: ``image/png`` (base64) and a ``text/plain`` summary."""
        t0 = time.perf_counter()
        png = self.draw()
        self._cost = time.perf_counter() - t0
        out = {"text/plain": str(self.summary())}
        if png:
            out["image/png"] = base64.b64encode(png).decode("ascii")
        return out

    def show(self) -> Any:
        """Display the current state in the running cell; returns the IPython display handle."""
        from IPython.display import display

        self.handle = self._guard(lambda: display(self.bundle(), raw=True, display_id=True))
        self._last = time.monotonic()
        return self.handle

    def due(self) -> bool:
        """True when an ``update`` would draw now (the interval since the last draw passed)."""
        wait = max(self.interval_s, DRAW_SHARE * self._cost)
        return self.handle is not None and time.monotonic() - self._last >= wait

    def update(self, force: bool = False) -> bool:
        """Redraw when due (or ``force``); returns whether a new image was sent."""
        if self.handle is None or self.failed or not (force or self.due()):
            return False
        self._last = time.monotonic()
        sent = self._guard(lambda: self.handle.update(self.bundle(), raw=True)) is not False
        self.draws += sent
        return sent

    def _guard(self, action: Any) -> Any:
        try:
            return action()
        except Exception as exc:  # the chart must never stop training
            self.failed = f"{type(exc).__name__}: {exc}"
            self.handle = None
            warnings.warn(f"live chart turned off: {self.failed}", RuntimeWarning, stacklevel=3)
            return False
