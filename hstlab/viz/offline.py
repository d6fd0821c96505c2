"""Plots that render offline: Panel's stylesheets inline in HoloViews' notebook output.

``hv.extension("bokeh", inline=True)`` inlines the BokehJS bundle, but HoloViews renders each
plot's Panel wrapper without Panel's own inlining step, so every plot output still links four
small stylesheets (``listpanel.css``, ``loading.css``, the theme's ``default.css`` and
``native.css``) on ``cdn.holoviz.org``: 8 to 26 failed requests per notebook on an offline machine.
:func:`inline_stylesheets` makes HoloViews' notebook renderer replace those links by the same CSS
from the installed Panel (about 7 KB a plot). Every ``hstlab.viz`` plot function calls it on first
use, so notebooks need not.

Example:
    >>> inline_stylesheets()
    >>> import holoviews.plotting.renderer as r
    >>> getattr(r.render_model, "inlines_stylesheets", False)
    True
"""

from __future__ import annotations

from typing import Any


def inline_model_stylesheets(model: Any) -> None:
    """Replace each CDN stylesheet link of ``model`` and its children by the installed CSS."""
    from bokeh.models import UIElement
    from panel.io.notebook import patch_inline_stylesheets

    for sub in model.select({"type": UIElement}):
        patch_inline_stylesheets(sub)


def inline_stylesheets() -> None:
    """Make HoloViews' notebook output carry Panel's stylesheets inline (idempotent)."""
    import holoviews.plotting.renderer as renderer

    if getattr(renderer.render_model, "inlines_stylesheets", False):
        return
    plain_model, plain_bundle = renderer.render_model, renderer.render_mimebundle

    def render_model(model: Any, *args: Any, **kwargs: Any) -> Any:
        inline_model_stylesheets(model)
        return plain_model(model, *args, **kwargs)

    def render_mimebundle(model: Any, *args: Any, **kwargs: Any) -> Any:
        inline_model_stylesheets(model)
        return plain_bundle(model, *args, **kwargs)

    render_model.inlines_stylesheets = True  # type: ignore[attr-defined]
    render_mimebundle.inlines_stylesheets = True  # type: ignore[attr-defined]
    renderer.render_model, renderer.render_mimebundle = render_model, render_mimebundle
