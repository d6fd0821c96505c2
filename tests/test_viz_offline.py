"""hstlab.viz plots render offline: HoloViews' notebook output links no stylesheet on a CDN."""

from __future__ import annotations

import holoviews as hv
import torch

from hstlab import viz


def test_plot_output_inlines_panel_stylesheets() -> None:
    plot = viz.spike_raster((torch.rand(8, 12) < 0.3).float())  # first viz call installs it
    data, _ = hv.renderer("bokeh").components(plot)  # what the notebook displays
    html = data["text/html"]
    assert "cdn.holoviz.org" not in html and "cdn.bokeh.org" not in html
    assert "ImportedStyleSheet" not in html and "InlineStyleSheet" in html  # same CSS, in the file
