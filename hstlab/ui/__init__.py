"""The explorer: GUI-free ``param`` state plus thin Panel views (``panel serve apps/explorer.py``).

Example:
    >>> from hstlab.ui import ExplorerState
    >>> state = ExplorerState(preset="tiny")
    >>> state.set_layer(0, "attn_mode", "standard")
    >>> state.cfg.modes
    'TS'
"""

from hstlab.ui.app import ExplorerApp, create_app, serve
from hstlab.ui.samples import Sample, SampleSource
from hstlab.ui.state import ExplorerState, Inspection
from hstlab.ui.training import TrainSession
from hstlab.ui.views import BuildView, EnergyView, InspectView, LayerTable, TrainView

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
