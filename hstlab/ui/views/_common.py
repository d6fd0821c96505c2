"""Small layout helpers shared by the views (no maths: formatting and error panes only)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import panel as pn

ENERGY_UNITS = (("J", 1.0), ("mJ", 1e-3), ("µJ", 1e-6), ("nJ", 1e-9), ("pJ", 1e-12))


def joules(value: float | None) -> str:
    """``8.7e-05`` -> ``'87.3 µJ'`` (display only)."""
    if value is None:
        return "n/a"
    for unit, scale in ENERGY_UNITS:
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-12:.3g} pJ"


def safe(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a view function so a bad selection shows a message instead of breaking the page."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the page must keep working
            return pn.pane.Alert(f"{type(exc).__name__}: {exc}", alert_type="warning")

    return wrapper


def lazy(fn: Callable[..., Any], *refs: Any, **kwargs: Any) -> pn.param.ParamFunction:
    """``pn.bind(fn, *refs)`` evaluated only when shown (hidden tabs cost nothing).

    Lazy content must stretch: with a fixed width it keeps the width of its first (empty)
    render and squeezes the plots that arrive later.
    """
    return pn.param.ParamFunction(
        pn.bind(safe(fn), *refs), lazy=True, sizing_mode="stretch_width", **kwargs
    )


def weights_pane(state: Any, css_class: str = "hst-weights") -> pn.pane.Markdown:
    """``**Weights:** trained: runs/x (val accuracy 0.97)``, following ``state.weights``."""
    return pn.pane.Markdown(
        pn.bind(lambda text: f"**Weights:** {text}", state.param.weights),
        css_classes=[css_class],
    )


def error_alert(state: Any, css_class: str = "hst-error") -> pn.pane.Alert:
    """``state.error`` inline (hidden while empty): the change was not applied."""
    return pn.pane.Alert(
        pn.bind(lambda e: f"**Not applied, the previous model is kept.** {e}", state.param.error),
        alert_type="danger",
        visible=pn.bind(bool, state.param.error),
        css_classes=[css_class],
    )


def hv_pane(obj: Any, **kwargs: Any) -> Any:
    """A HoloViews object in its own pane (HoloMap widgets below; axes not linked across panes)."""
    if isinstance(obj, pn.viewable.Viewable):
        return obj
    return pn.pane.HoloViews(obj, widget_location="bottom", linked_axes=False, **kwargs)
