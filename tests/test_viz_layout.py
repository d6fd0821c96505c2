"""hstlab.viz plots fit a 1,000 px notebook column (hstlab.viz.palette.PLOT_WIDTH) and keep one
colour per variant; the browser test (test_notebook_layout_browser.py) checks real notebooks."""

from __future__ import annotations

import holoviews as hv
import pandas as pd
import pytest

from hstlab import viz
from hstlab.viz.palette import PLOT_WIDTH, VARIANT_COLORS


def _width(element) -> int:
    """The plot's width; for a plot sized by its frame (data_aspect), frame plus 160 px of axes
    and legend (the browser test measures the real page)."""
    fig = hv.render(element, backend="bokeh")
    return fig.width if fig.width is not None else fig.frame_width + 160


def _layers(n: int) -> pd.DataFrame:
    return pd.DataFrame({"name": [f"stages.{i}.block.attn.q_lif" for i in range(n)], "kind": "Linear",
                         "mode": "S", "macs": 1e6, "acs": 2e5, "input_rate": 0.1,
                         "compute_j": 1e-6, "memory_j": 2e-7})


@pytest.mark.parametrize("n", [4, 47])
def test_layer_bars_never_pass_the_plot_width(n: int) -> None:
    for bars in (viz.layer_energy_bars(_layers(n)), viz.layer_ops_bars(_layers(n))):
        fig = hv.render(bars, backend="bokeh")
        assert fig.width <= PLOT_WIDTH
        lying = bars.opts.get("plot").kwargs.get("invert_axes", False)
        assert lying == (n == 47), "few layers stand upright, many lie down one row each"
        if lying:
            assert fig.height >= 18 * n


def test_comparison_and_scatter_fit_and_colour_by_variant() -> None:
    totals = {f"{m}{i}": 1e-5 * (i + 1) for i in range(10) for m in ("TT", "SS")}
    assert _width(viz.energy_comparison(totals)) <= PLOT_WIDTH
    acc = {k: 0.5 for k in totals}
    plot = viz.accuracy_energy_scatter({"TT": 3e-4, "ST": 1e-4, "SS": 9e-5, "SS int8": 5e-5},
                                       {"TT": 0.9, "ST": 0.8, "SS": 0.7, "SS int8": 0.6})
    assert _width(plot) <= PLOT_WIDTH
    colors = dict(zip(plot.get(0).data["variant"], plot.get(0).data["color"]))
    assert colors == {"TT": VARIANT_COLORS["standard"], "ST": VARIANT_COLORS["hybrid"],
                      "SS": VARIANT_COLORS["spiking"], "SS int8": VARIANT_COLORS["int8"]}
    with pytest.raises(ValueError, match="accuracy lacks variant"):
        viz.accuracy_energy_scatter(totals, {k: v for k, v in acc.items() if k != "TT0"})


def test_side_by_side_views_fit_two_to_a_row() -> None:
    df = pd.DataFrame({"variant": ["ANN", "+spiking", "+CPG-PE"], "accuracy": [0.95, 0.91, 0.93],
                       "energy_j": [2e-4, 3e-5, 3.1e-5]})
    assert sum(_width(view) for view in viz.ablation_waterfall(df)) <= PLOT_WIDTH
    views = list(viz.posenc_views("cpg", num_positions=16, n_neurons=8).values())
    for left, right in (views[:2], views[2:]):
        assert _width(left) + _width(right) <= PLOT_WIDTH


def test_heatmaps_side_by_side_list_only_their_own_layers() -> None:
    import torch

    a = {"stem": torch.ones(4, 2, 8), "blocks.0": torch.zeros(4, 2, 8)}  # [T, B, N]
    b = {"stem": torch.ones(4, 2, 8), "blocks.0": torch.zeros(4, 2, 8), "blocks.1": torch.ones(4, 2, 8)}
    layout = hv.Layout([viz.firing_rate_heatmap(a), viz.firing_rate_heatmap(b)]).cols(2)
    grid = hv.render(layout, backend="bokeh")
    figures = [child[0] if isinstance(child, tuple) else child for child in grid.children]
    factors = [list(f.y_range.factors) for f in figures]
    assert sorted(map(len, factors)) == [2, 3], factors
