"""Thin ``pn.viewable.Viewer`` views over :class:`hstlab.ui.ExplorerState` and ``TrainSession``."""

from hstlab.ui.views.build import BuildView, LayerTable
from hstlab.ui.views.energy import EnergyView
from hstlab.ui.views.inspect import InspectView
from hstlab.ui.views.train import TrainView

__all__ = ["BuildView", "EnergyView", "InspectView", "LayerTable", "TrainView"]
