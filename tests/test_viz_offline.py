"""hstlab.viz plots render offline: HoloViews' notebook output links no stylesheet on a CDN.

Checked in a fresh interpreter, as a notebook kernel is: a Panel server started earlier in the same
process (the explorer tests) makes Panel resolve its stylesheets to server paths instead of CDN
URLs, which are then neither on the CDN nor inlined.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = textwrap.dedent("""
    import holoviews as hv
    import torch

    from hstlab import viz

    plot = viz.spike_raster((torch.rand(8, 12) < 0.3).float())  # first viz call installs it
    data, _ = hv.renderer("bokeh").components(plot)  # what the notebook displays
    print(data["text/html"])
""")


def test_plot_output_inlines_panel_stylesheets() -> None:
    html = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT, capture_output=True, text=True,
                          check=True, timeout=120).stdout
    assert "cdn.holoviz.org" not in html and "cdn.bokeh.org" not in html
    assert "ImportedStyleSheet" not in html and "InlineStyleSheet" in html  # same CSS, in the file
