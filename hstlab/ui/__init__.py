"""The explorer: GUI-free ``param`` state plus thin Panel views (``panel serve apps/explorer.py``).

Example:
    >>> from hstlab.ui import ExplorerState
    >>> state = ExplorerState(preset="tiny")
    >>> state.set_layer(0, "attn_mode", "standard")
    >>> state.cfg.modes
    'HS'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hstlab._lazy import lazy_exports

if TYPE_CHECKING:  # type checkers see the lazy names
    from hstlab.ui.app import ExplorerApp, create_app, serve
    from hstlab.ui.samples import Sample, SampleSource
    from hstlab.ui.state import ExplorerState, Inspection
    from hstlab.ui.training import TrainSession
    from hstlab.ui.views import BuildView, EnergyView, InspectView, LayerTable, TrainView

# Loaded on first use, so that importing hstlab.ui.cli (every `hstlab` command) does not import Panel.
_EXPORTS = {
    "ExplorerApp": "hstlab.ui.app",
    "create_app": "hstlab.ui.app",
    "serve": "hstlab.ui.app",
    "Sample": "hstlab.ui.samples",
    "SampleSource": "hstlab.ui.samples",
    "ExplorerState": "hstlab.ui.state",
    "Inspection": "hstlab.ui.state",
    "TrainSession": "hstlab.ui.training",
    "BuildView": "hstlab.ui.views",
    "EnergyView": "hstlab.ui.views",
    "InspectView": "hstlab.ui.views",
    "LayerTable": "hstlab.ui.views",
    "TrainView": "hstlab.ui.views",
}

__all__ = [
    "BuildView",
    "EnergyView",
    "ExplorerApp",
    "ExplorerState",
    "InspectView",
    "Inspection",
    "LayerTable",
    "Sample",
    "SampleSource",
    "TrainSession",
    "TrainView",
    "create_app",
    "serve",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
