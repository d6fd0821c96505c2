"""Serve the explorer without the internet: every script, style sheet and font from the app's server.

Panel's components name their style sheets by CDN address; Panel rewrites them to the
server's ``static/`` folder using the address stored on the model's document. A model that
is updated while it has no document falls back to the CDN: the panes of a hidden dynamic tab
(``pn.Tabs(dynamic=True)`` detaches them) and, in Panel 1.9, ``Markdown`` updates, which ask
``model.document``. The browser then asked ``cdn.holoviz.org`` for ``markdown.css`` and
``loading.css`` after every rebuild (a stray "¶" beside the headings and an unstyled JSON
block were the visible signs). :func:`serve_locally` makes that fallback the server's folder.

The page template (:data:`TEMPLATE`) is Bootstrap, the one of Panel's templates that loads no
web font (Fast, Material and Vanilla ask Google Fonts).

Example:
    >>> serve_locally()
    >>> import panel.reactive
    >>> panel.reactive.CDN_DIST
    'static/extensions/panel/'
"""

from __future__ import annotations

import panel as pn

TEMPLATE = pn.template.BootstrapTemplate


def serve_locally() -> None:
    """Style sheets of models updated without a document load from this server, not the CDN.

    For served apps only (a notebook or a saved HTML file has no such server folder).
    """
    import panel.reactive
    from panel.io.resources import LOCAL_DIST

    panel.reactive.CDN_DIST = LOCAL_DIST  # the fallback of Reactive._get_properties/_update_model


def configure() -> None:
    """Set up a served explorer: Panel's and HoloViews' resources inline or from this server."""
    import holoviews as hv

    pn.extension(inline=True)
    if "bokeh" not in hv.Store.renderers:
        hv.extension("bokeh", inline=True, logo=False)
    serve_locally()
