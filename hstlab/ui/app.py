"""The explorer app: one :class:`ExplorerState` and :class:`TrainSession` per browser session."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import panel as pn
import param

from hstlab.ui.offline import TEMPLATE, configure
from hstlab.ui.pool import ordered_publisher
from hstlab.ui.runs import RunFolders, shared_runs_dirs
from hstlab.ui.state import DEFAULT_PRETRAINED, NO_PRETRAINED, ExplorerState
from hstlab.ui.training import TrainSession
from hstlab.ui.views import BuildView, EnergyView, InspectView, TrainView

TABS = ("Build", "Inspect", "Train", "Energy")
DEFAULT_ADDRESS = "127.0.0.1"
THREADS = 8  # browser events run in this many worker threads, off the server's event loop
TITLE = "hstlab explorer"
INTRO = ("Build an HST-Net variant, look inside it on real input, train it and compare its energy. "
         "Hover the ? beside a control for what it means.")
SIDEBAR_WIDTH = 360  # px: the model's fields; the tabs get the rest of the window


def default_runs_dir() -> Path:
    """``$HSTLAB_RUNS`` or ``runs/explorer`` (relative to the working directory)."""
    return Path(os.environ.get("HSTLAB_RUNS", "runs/explorer"))


def enable_threads(n: int = THREADS) -> None:
    """Run browser events in worker threads (:class:`~hstlab.ui.pool.SessionOrderedPool`).

    A rebuild then never holds the event loop: other sessions keep answering while one builds,
    and each session's events still run one at a time, in the order they arrived. Document
    updates from the threads are scheduled on the loop by Panel. The pool size is ``n``, or
    Panel's ``config.nthreads`` when set (``panel serve --num-threads``, ``PANEL_NUM_THREADS``).
    """
    from hstlab.ui.pool import SessionOrderedPool

    workers = pn.config.nthreads or n
    if not hasattr(pn.state, "_thread_pool"):  # a Panel without it: its own pool, unordered
        pn.config.nthreads = workers
        return
    pool = pn.state._thread_pool  # Panel's pool (private; no public way to supply one)
    if isinstance(pool, SessionOrderedPool):
        return
    if pool is None:
        pn.config.nthreads = workers  # Panel now dispatches events to state._thread_pool
        pool = pn.state._thread_pool
    pn.state._thread_pool = SessionOrderedPool(workers)
    if pool is not None:
        pool.shutdown(wait=False)


class ExplorerApp(pn.viewable.Viewer):
    """Build, Inspect, Train and Energy tabs over one state (create one per session).

    Example:
        >>> app = ExplorerApp(state=ExplorerState(preset="tiny"), session=TrainSession())
        >>> [name for name, _ in app.tabs]  # doctest: +SKIP
    """

    state = param.ClassSelector(class_=ExplorerState)
    session = param.ClassSelector(class_=TrainSession)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.views = {
            "Build": BuildView(state=self.state),
            "Inspect": InspectView(state=self.state),
            "Train": TrainView(state=self.state, session=self.session),
            "Energy": EnergyView(state=self.state, session=self.session),
        }
        self.tabs = pn.Tabs(*self.views.items(), dynamic=True, css_classes=["hst-tabs"],
                            sizing_mode="stretch_width")
        self.tabs.param.watch(self._on_tab, "active")
        self.views["Train"].inspect_button.on_click(self._show_inspect)
        self._on_tab()

    def _on_tab(self, *_: Any) -> None:
        """Record spikes and attention only while the Inspect tab is shown, and measure the energy
        variants only while the Energy tab is (faster rebuilds)."""
        shown = TABS[self.tabs.active]
        self.state.param.update(live_inspection=shown == "Inspect", live_comparison=shown == "Energy")

    def _show_inspect(self, *_: Any) -> None:
        """After "Inspect trained model" (which loads the run first): open the Inspect tab."""
        if not self.state.error:
            self.tabs.active = TABS.index("Inspect")

    def sidebar(self) -> pn.viewable.Viewable:
        """The model's fields (shown beside every tab)."""
        return pn.Column(pn.pane.Markdown(INTRO), self.views["Build"].controls(),
                         sizing_mode="stretch_width")

    def template(self) -> pn.template.BaseTemplate:
        """The served page: the fields in a sidebar, the tabs in the main area (sized to the window)."""
        return TEMPLATE(title=TITLE, sidebar=[self.sidebar()], main=[self.tabs],
                        sidebar_width=SIDEBAR_WIDTH)

    def __panel__(self) -> pn.viewable.Viewable:
        """One column (notebooks): the fields above the tabs."""
        return pn.Column(pn.pane.Markdown(f"## {TITLE}"), self.sidebar(), self.tabs,
                         sizing_mode="stretch_width")


def create_app(preset: str | None = None, runs_dir: str | Path | None = None,
               pretrained: str | None = None) -> ExplorerApp:
    """A fresh app with its own state and training session (call once per browser session).

    The state measures in the background (``deferred``): a change answers with the new model at
    once and the energy, Inspect recording and comparison follow, marked stale until then.

    With neither ``preset`` nor ``pretrained`` it opens on the zoo's trained
    :data:`~hstlab.ui.state.DEFAULT_PRETRAINED`; with a ``preset`` alone, on an untrained build.
    Runs are written under ``runs_dir / <session id>`` (default :func:`default_runs_dir`);
    Load run reads only there and in ``$HSTLAB_EXPLORER_RUNS`` (see :mod:`hstlab.ui.runs`).
    """
    if preset is None and pretrained is None:
        pretrained = DEFAULT_PRETRAINED
    session_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    folders = RunFolders(own=root / session_id, shared=shared_runs_dirs())
    # the Build tab opens first; Load run and model cards stay inside the session's folders
    state = ExplorerState(preset=preset or "hst-small", pretrained=pretrained or NO_PRETRAINED,
                          live_inspection=False, deferred=True, runs=folders)
    app = ExplorerApp(state=state, session=TrainSession(runs_dir=folders.own))
    app.session.use_recipe(state.preset, state.dataset)  # the Train tab starts from the recipe
    doc = pn.state.curdoc
    state.publisher = ordered_publisher(doc)  # measured results redraw in the tab's event order
    if doc is not None and doc.session_context is not None:  # served: stop its run with the tab
        doc.on_session_destroyed(lambda _ctx: app.session.stop() if app.session.running else None)
    return app


def serve(
    port: int = 5006, address: str = DEFAULT_ADDRESS, show: bool = False, **kwargs: Any
) -> Any:
    """Serve the explorer on ``address:port`` (localhost by default); one app per session."""
    configure()
    enable_threads()
    return pn.serve(
        {"explorer": lambda: create_app().template()},
        port=port,
        address=address,
        show=show,
        websocket_origin=[f"{address}:{port}", f"localhost:{port}"],
        title=TITLE,
        **kwargs,
    )
