"""Train tab: start/stop a background run, live curves, the comparison table of finished runs."""

from __future__ import annotations

from typing import Any

import panel as pn
import param

from hstlab.glossary import GLOSSARY, explain
from hstlab.ui.limits import TRAIN_LIMITS
from hstlab.ui.state import ExplorerState
from hstlab.ui.training import TrainSession
from hstlab.ui.views._common import NumberField, error_alert, weights_pane


class TrainView(pn.viewable.Viewer):
    """Controls of a :class:`TrainSession` over the explorer's current model.

    Example:
        >>> view = TrainView(state=ExplorerState(preset="tiny"), session=TrainSession())
        >>> view.start_button.disabled
        False
    """

    state = param.ClassSelector(class_=ExplorerState)
    session = param.ClassSelector(class_=TrainSession)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        t = self.session
        self.fields = {
            name: NumberField(t, name, t.set_setting, t.reject, css_classes=[f"hst-{name}"],
                              width=250, description=explain(name))
            for name in TRAIN_LIMITS
        }  # fmt: skip
        self.settings = {name: field.input for name, field in self.fields.items()}
        self.start_button = pn.widgets.Button(
            label="Start training", color="success", css_classes=["hst-start"]
        )
        self.stop_button = pn.widgets.Button(
            label="Stop",
            color="danger",
            css_classes=["hst-stop"],
            disabled=pn.bind(lambda r: not r, t.param.running),
        )
        self.inspect_button = pn.widgets.Button(
            label="Inspect trained model",
            color="primary",
            css_classes=["hst-inspect-trained"],
            visible=pn.bind(lambda _: t.last_run_dir is not None, t.param.runs),
        )
        self.recipe_button = pn.widgets.Button(label="Use the recipe", css_classes=["hst-recipe-button"])
        self.recipe_button.on_click(lambda _: self.use_recipe())
        self.recipe = pn.pane.Markdown(
            pn.bind(lambda text: f"**Settings:** {text}" if text else "", t.param.recipe),
            css_classes=["hst-recipe"], sizing_mode="stretch_width",
        )
        self.state.param.watch(self.use_recipe, ["preset", "dataset"])
        self.start_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: t.stop())
        self.inspect_button.on_click(lambda _: self.state.load_run(t.last_run_dir))
        self.load_error = error_alert(self.state, "hst-train-load-error")
        self.message = pn.pane.Alert(
            t.param.message,
            alert_type="warning",
            visible=pn.bind(bool, t.param.message),
            css_classes=["hst-train-message"],
        )
        self.status = pn.pane.Markdown(t.param.status, css_classes=["hst-train-status"])
        self.received = pn.pane.Markdown(
            pn.bind(lambda n: f"Chart points received: **{n}**", t.param.events_received),
            css_classes=["hst-points"],
        )
        self.curves = pn.pane.HoloViews(t.live.layout(cols=2), css_classes=["hst-live"])
        self.runs = pn.pane.DataFrame(
            t.param.runs, index=False, sizing_mode="stretch_width", css_classes=["hst-runs"]
        )

    def use_recipe(self, *_: Any) -> bool:
        """The recipe of the current preset on the current dataset fills the setting boxes."""
        return self.session.use_recipe(self.state.preset, self.state.dataset)

    def start(self) -> bool:
        """Start a run, unless a setting box holds text that was refused (its message is shown)."""
        bad = next((f.invalid for f in self.fields.values() if f.invalid), "")
        if bad:
            return self.session.reject(ValueError(f"Not started: {bad}"))
        return self.session.start(self.state)

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.pane.Markdown(
                pn.bind(lambda dataset: f"Trains a copy of the current model on **{dataset}** in "
                        "the background (one run per session); stopping keeps the checkpoint. "
                        f"*{GLOSSARY['limit'][0].upper()}{GLOSSARY['limit'][1:]}.*",
                        self.state.param.dataset),
                sizing_mode="stretch_width",
            ),
            pn.Row(self.recipe, self.recipe_button, sizing_mode="stretch_width"),
            pn.FlexBox(*self.settings.values()),
            pn.Row(self.start_button, self.stop_button, self.inspect_button),
            self.message,
            self.load_error,
            weights_pane(self.state, "hst-train-weights"),
            self.status,
            self.received,
            pn.pane.Markdown(GLOSSARY["plot:training"]),
            self.curves,
            pn.pane.Markdown("#### Finished runs"),
            self.runs,
            sizing_mode="stretch_width",
        )
