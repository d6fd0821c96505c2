"""Serve the explorer without the internet: every script, style sheet and font from the app's server.

Panel's components name their style sheets by CDN address and rewrite them to the server's
``static/`` folder when the page is rendered and whenever a model is made for a document.
One path misses that rewrite: a dynamic :class:`panel.Tabs` keeps the models of a tab while
it is hidden, detached from the document, and a pane updated in that state writes CDN
addresses into them (``Markdown`` asks ``model.document`` for the server's address, and a
detached model has none). When the tab is shown again those models are sent as they are, and
the browser asks ``cdn.holoviz.org`` for ``markdown.css`` and ``loading.css`` (a stray "¶"
beside the headings and an unstyled JSON block were the visible signs). :class:`LocalTabs`
rewrites the style sheets of the models it shows again, the same way Panel rewrites a page.

The page template (:data:`TEMPLATE`) is Bootstrap, the one of Panel's templates that loads no
web font.

Example:
    >>> tabs = LocalTabs(("A", "first"), ("B", "second"), dynamic=True)
    >>> local_dist(None)
    'static/extensions/panel/'
"""

from __future__ import annotations

from typing import Any

import panel as pn

TEMPLATE = pn.template.BootstrapTemplate  # no web fonts (Fast, Material, Vanilla load Google Fonts)


def configure() -> None:
    """Load Panel's and HoloViews' Bokeh resources inline (for notebooks; a served page gets them
    from its own server either way)."""
    import holoviews as hv

    pn.extension(inline=True)
    if "bokeh" not in hv.Store.renderers:
        hv.extension("bokeh", inline=True, logo=False)


def local_dist(doc: Any) -> str:
    """The address of Panel's static files that ``doc``'s page uses (its server's, never a CDN)."""
    from panel.io.resources import CDN_DIST, LOCAL_DIST

    dist = getattr(doc, "_template_variables", {}).get("dist_url") if doc is not None else None
    return dist if dist and dist != CDN_DIST else LOCAL_DIST


def localize(model: Any, dist_url: str) -> int:
    """Point every CDN style sheet under Bokeh ``model`` at ``dist_url``; returns how many were
    rewritten."""
    from bokeh.models import ImportedStyleSheet
    from panel.io.resources import CDN_DIST, patch_stylesheet

    changed = 0
    for sheet in model.select({"type": ImportedStyleSheet}):
        if str(sheet.url).startswith(CDN_DIST):
            patch_stylesheet(sheet, dist_url)
            changed += 1
    return changed


class LocalTabs(pn.Tabs):
    """``pn.Tabs`` whose tabs, shown again, load their style sheets from the app's server."""

    def _get_objects(self, model: Any, old_objects: Any, doc: Any, root: Any, comm: Any = None) -> Any:
        new_models, old_models = super()._get_objects(model, old_objects, doc, root, comm)
        dist_url = local_dist(doc)
        for panel in new_models:
            localize(panel, dist_url)
        return new_models, old_models
