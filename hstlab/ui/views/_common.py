"""Small layout helpers shared by the views (no maths: formatting and error panes only)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import panel as pn

from hstlab.units import format_joules


def joules(value: float | None) -> str:
    """``8.7e-05`` -> ``'87 µJ'`` (display only)."""
    return format_joules(value)


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


MAIN_PLOT_WIDTH = 800  # px: the widest plot the main area beside the sidebar holds at a 1400 px window


def hv_pane(obj: Any, **kwargs: Any) -> Any:
    """A HoloViews object in its own pane (HoloMap widgets below; axes not linked across panes),
    narrowed to :data:`MAIN_PLOT_WIDTH` where ``hstlab.viz`` sized it for a notebook column."""
    if isinstance(obj, pn.viewable.Viewable):
        return obj
    import holoviews as hv

    width = hv.Store.lookup_options("bokeh", obj, "plot").kwargs.get("width")
    if isinstance(width, int) and width > MAIN_PLOT_WIDTH:
        obj = obj.opts(width=MAIN_PLOT_WIDTH, backend="bokeh")
    return pn.pane.HoloViews(obj, widget_location="bottom", linked_axes=False, **kwargs)


class NumberField(pn.viewable.Viewer):
    """A text box for one number: typed text is parsed explicitly, never silently reverted.

    The text follows ``owner.<name>``; typed text within :mod:`hstlab.ui.limits` is handed to
    ``apply(name, value)``, anything else to ``reject(ValueError)`` (the owner's one rejection
    path) and stays in the box, with :attr:`invalid` holding the message, until it is fixed.

    Example:
        >>> import param
        >>> class Owner(param.Parameterized):
        ...     n_layer = param.Integer(default=2)
        >>> owner, refused = Owner(), []
        >>> field = NumberField(owner, "n_layer", lambda n, v: setattr(owner, n, v), refused.append)
        >>> field.input.value = "1.5"
        >>> field.invalid
        "n_layer='1.5' is not a whole number: allowed 1 to 24"
        >>> field.input.value = "3"
        >>> owner.n_layer, field.invalid
        (3, '')
    """

    def __init__(
        self,
        owner: Any,
        name: str,
        apply: Callable[[str, Any], Any],
        reject: Callable[[Exception], Any],
        label: str | None = None,
        **kwargs: Any,
    ) -> None:
        from hstlab.ui.limits import allowed

        super().__init__()
        self.owner, self.field, self._apply, self._reject = owner, name, apply, reject
        self.invalid = ""
        self._syncing = False
        label = label or owner.param[name].label or name
        where = name if label == name else f"{label}, {name}"
        self.input = pn.widgets.TextInput(
            label=f"{where} ({allowed(name)})", value=self._text(), **kwargs
        )
        self.input.param.watch(self._typed, "value")
        owner.param.watch(self.sync, name)

    def _text(self) -> str:
        return str(getattr(self.owner, self.field))

    def sync(self, *_: Any) -> None:
        """Show the owner's value (clears a pending invalid text)."""
        self.invalid = ""
        self._syncing = True
        try:
            self.input.value = self._text()
        finally:
            self._syncing = False

    def _typed(self, event: Any) -> None:
        if self._syncing:
            return
        from hstlab.ui.limits import parse_number

        try:
            value = parse_number(self.field, event.new)
        except ValueError as exc:
            self.invalid = str(exc)
            self._reject(exc)
            return
        self.invalid = ""
        self._apply(self.field, value)

    def __panel__(self) -> pn.viewable.Viewable:
        return self.input


MEASURING = "⏳ measuring …"
NOT_MEASURED = "⚠ not measured"


def stale_mark(busy: bool) -> str:
    """What stands in for a result of the shown model that is not measured yet (or failed)."""
    return MEASURING if busy else NOT_MEASURED


def is_measuring(stale: list[str], busy: bool, result: str) -> bool:
    """``result`` ('energy', 'inspection', 'comparison') is shown for an earlier model and its
    job is running (the views then show a spinner over it)."""
    return busy and result in stale


def busy_indicator(state: Any, result: str) -> pn.Row:
    """A spinner and a line, visible while ``result`` of the shown model is being measured."""
    showing = pn.bind(is_measuring, state.param.stale, state.param.busy, result)
    return pn.Row(
        pn.indicators.LoadingSpinner(value=showing, size=18, width=18, height=18),
        pn.pane.Markdown(f"measuring the new model's {result}; the {result} shown is of the "
                         "previous model", margin=(0, 5)),
        visible=showing, css_classes=[f"hst-busy-{result}"], sizing_mode="stretch_width",
    )

