"""Pure functions from hstlab objects (Recorder dicts, tensors, energy tables, trainer events)
to HoloViews elements. No Panel here; the caller owns layout.

Nothing is drawn or loaded at import time: the Bokeh backend is loaded on first use (without
``hv.extension``), so call ``hv.extension("bokeh")`` yourself in a notebook.
"""

from hstlab.viz._util import to_numpy
from hstlab.viz.attention import attention_dynamicmap, attention_holomap, attention_map
from hstlab.viz.config_table import layers_frame
from hstlab.viz.energy import (
    ablation_waterfall,
    accuracy_energy_scatter,
    energy_comparison,
    layer_energy_bars,
    layer_ops_bars,
    save_ablation_waterfall,
    waterfall_steps,
)
from hstlab.viz.events import event_cloud, event_frames
from hstlab.viz.live import LiveCurves
from hstlab.viz.posenc import (
    code_image,
    code_vs_phase,
    phase_portrait,
    posenc_views,
    position_similarity,
)
from hstlab.viz.search import pareto_plot
from hstlab.viz.spikes import firing_rate_heatmap, firing_rate_table, membrane_traces, spike_raster

__all__ = [
    "LiveCurves",
    "ablation_waterfall",
    "accuracy_energy_scatter",
    "attention_dynamicmap",
    "attention_holomap",
    "attention_map",
    "code_image",
    "code_vs_phase",
    "energy_comparison",
    "event_cloud",
    "event_frames",
    "firing_rate_heatmap",
    "firing_rate_table",
    "layer_energy_bars",
    "layer_ops_bars",
    "layers_frame",
    "membrane_traces",
    "pareto_plot",
    "phase_portrait",
    "posenc_views",
    "save_ablation_waterfall",
    "position_similarity",
    "spike_raster",
    "to_numpy",
    "waterfall_steps",
]
