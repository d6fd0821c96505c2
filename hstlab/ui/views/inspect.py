"""Inspect tab: the chosen sample's events, spikes, membranes, attention maps and positional code."""

from __future__ import annotations

import threading
from typing import Any

import holoviews as hv
import panel as pn
import param

from hstlab import viz
from hstlab.glossary import GLOSSARY
from hstlab.ui.samples import build_dataset
from hstlab.ui.state import ExplorerState, Inspection
from hstlab.ui.views._common import busy_indicator, hv_pane, is_measuring, lazy, weights_pane

SECTIONS = ("Events", "Spikes", "Attention", "Spiking vs standard", "Positional code")
SECTION_HELP = {"Events": "plot:events", "Spikes": "plot:spikes", "Attention": "plot:attention",
                "Spiking vs standard": "plot:compare", "Positional code": "plot:posenc"}
MAX_GRID_FRAMES = 8  # more input frames than this: a slider instead of a grid
GRID_COLS = 2  # frames per row: two frames with their colour bars fit beside the sidebar at 1400 px


def events_view(insp: Inspection) -> Any:
    """Input frames (grid or slider) and, when the dataset has them, the raw events."""
    x = insp.sample.x[:, 0]  # [T, C, H, W]
    frames = viz.event_frames(x)
    parts = [hv_pane(frames.layout().cols(GRID_COLS) if len(frames) <= MAX_GRID_FRAMES else frames)]
    if insp.sample.events is not None and len(insp.sample.events):
        parts.append(hv_pane(viz.event_cloud(insp.sample.events, backend="bokeh")))
    return pn.Column(*parts)


def spikes_view(insp: Inspection, layer: str | None) -> Any:
    """Raster and membrane traces of one spiking layer, and the firing-rate heatmap of all (stacked)."""
    if not insp.spikes:
        return pn.pane.Markdown("This model has no spiking layer (every layer is standard).")
    layer = layer if layer in insp.spikes else next(iter(insp.spikes))
    parts = [hv_pane(viz.spike_raster(insp.spikes, layer))]
    if layer in insp.membranes:
        parts.append(hv_pane(viz.membrane_traces(insp.membranes, insp.thresholds, layer)))
    heatmap = hv_pane(viz.firing_rate_heatmap(insp.spikes))
    return pn.Column(*parts, heatmap, sizing_mode="stretch_width")  # stacked: fits beside the sidebar


STEP_VIEWS = {"mean over steps": "mean", "most active step": "peak", "one step (slider)": None}


def attention_view(insp: Inspection, layer: str | None, head: int, t: int,
                   steps: str = "mean over steps") -> Any:
    """One head's map: the mean over steps by default (spiking maps are empty at t=0, while the
    neurons charge), the most active step, or the step of the slider."""
    if not insp.attention:
        return pn.pane.Markdown("No attention maps recorded for this model.")
    layer = layer if layer in insp.attention else next(iter(insp.attention))
    maps = insp.attention[layer]  # [T, 1, H, N, N]
    head, t = min(head, maps.shape[2] - 1), min(t, maps.shape[0] - 1)
    which = STEP_VIEWS.get(steps)
    return hv_pane(viz.attention_map(insp.attention, layer, head=head, t=t if which is None else which))


def prediction_text(insp: Inspection) -> str:
    """``'predicts 3 (p = 0.97); label 3'`` for a classifier's recorded pass."""
    probs = insp.logits.softmax(-1)[0]  # [classes]
    top = int(probs.argmax())
    label = f"; label {insp.sample.label}" if insp.sample.label is not None else ""
    return f"predicts **{top}** (p = {float(probs[top]):.2f}){label}"


def comparison_view(pair: dict[str, Inspection]) -> Any:
    """The same sample through the trained spiking model and its trained standard twin: what
    each predicts, both models' first attention maps side by side, and where the spiking one
    fires."""
    spiking, standard = pair["spiking"], pair["standard"]
    maps = [hv_pane(viz.attention_map(insp.attention, next(iter(insp.attention)), t="mean"))
            for insp in (spiking, standard) if insp.attention]
    return pn.Column(
        pn.pane.Markdown("What to look for: both models see the same events. The spiking model's "
                         "attention map counts Q-K spike overlaps (no softmax), the twin's are "
                         "softmax probabilities; the heatmap shows how sparse the spiking layers are, "
                         "while the twin passes real-valued activations (nothing spikes, every unit "
                         "is read and written at every step)."),
        pn.Row(pn.pane.Markdown(f"**Spiking** (zoo: hst-small-digits-dvs): {prediction_text(spiking)}",
                                width=480),
               pn.pane.Markdown(f"**Standard twin** (zoo: hst-small-digits-dvs-standard): "
                                f"{prediction_text(standard)}", width=480)),
        pn.Row(*maps, css_classes=["hst-compare"]),
        hv_pane(viz.firing_rate_heatmap(spiking.spikes)),
    )


def posenc_view(cfg: Any) -> Any:
    """The CPG (or sin/cos) positional code of this config's tokens."""
    if cfg is None or cfg.pos_encoding not in ("cpg", "sincos"):
        kind = getattr(cfg, "pos_encoding", None)
        return pn.pane.Markdown(
            f"pos_encoding={kind!r} has no oscillator code to show (choose cpg or sincos)."
        )
    views = viz.posenc_views(
        cfg.pos_encoding,
        num_positions=cfg.num_tokens,
        n_neurons=cfg.cpg_neurons,
        w_max=cfg.cpg_wmax,
        threshold=cfg.cpg_threshold,
    )
    return hv_pane(hv.Layout(list(views.values())).cols(1))  # stacked: fits beside the sidebar


class InspectView(pn.viewable.Viewer):
    """Choose a sample and a layer/head/time step; every plot is an ``hstlab.viz`` element.

    Example:
        >>> view = InspectView(state=ExplorerState(preset="tiny"))
        >>> view.spike_layer in view.state.inspection.spikes
        True
    """

    state = param.ClassSelector(class_=ExplorerState)
    spike_layer = param.Selector(default=None, objects=[], label="spiking layer")
    attention_layer = param.Selector(default=None, objects=[], label="attention layer")
    head = param.Integer(default=0, bounds=(0, None))
    t = param.Integer(default=0, bounds=(0, None), label="time step")
    steps = param.Selector(default="mean over steps", objects=list(STEP_VIEWS), label="steps shown")
    section = param.Selector(default="Events", objects=list(SECTIONS), label="view")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.state.param.watch(self._choices, "inspection")
        self._choices()
        s = self.state
        self.sample_slider = pn.widgets.IntSlider.from_param(
            s.param.sample_index, start=0, end=1, css_classes=["hst-sample"]
        )
        self.build_button = pn.widgets.Button(
            label="Build digits-dvs (about 20 s)", color="primary", visible=False
        )
        self.build_button.on_click(self._build)
        self.source = pn.pane.Markdown(
            pn.bind(self._source_text, s.param.sample), css_classes=["hst-source"]
        )
        self.head_slider = pn.widgets.IntSlider.from_param(self.param.head, start=0, end=1)
        self.t_slider = pn.widgets.IntSlider.from_param(self.param.t, start=0, end=1)
        self._section_controls = {
            "Spikes": pn.widgets.Select.from_param(self.param.spike_layer, width=380),
            "Attention": pn.FlexBox(  # wraps instead of overflowing a narrow window
                pn.widgets.Select.from_param(self.param.attention_layer, width=300),
                self.head_slider,
                pn.widgets.Select.from_param(self.param.steps, width=170, css_classes=["hst-steps"]),
                self.t_slider,
            ),
        }
        s.param.watch(self._bounds, ["sample", "inspection"])
        self._bounds()

    def _choices(self, *_: Any) -> None:
        insp = self.state.inspection
        if insp is None:
            return
        for name, names in (
            ("spike_layer", list(insp.spikes)),
            ("attention_layer", list(insp.attention)),
        ):
            p = self.param[name]
            p.objects = names
            if getattr(self, name) not in names:
                setattr(self, name, names[0] if names else None)

    def _bounds(self, *_: Any) -> None:
        sample = self.state.sample
        if sample is None:
            return
        self.sample_slider.end = max(sample.size - 1, 1)
        self.sample_slider.disabled = not sample.from_data
        self.build_button.visible = (
            "not available" in sample.note and self.state.dataset == "digits-dvs"
        )
        insp = self.state.inspection
        if insp is not None and insp.attention:
            maps = next(iter(insp.attention.values()))  # [T, 1, H, N, N]
            self.head_slider.end = max(maps.shape[2] - 1, 1)
            self.t_slider.end = max(maps.shape[0] - 1, 1)

    @staticmethod
    def _source_text(sample: Any) -> str:
        if sample is None:
            return ""
        if sample.note:
            return f"**Input:** {sample.source}. ⚠ {sample.note}"
        return f"**Input:** {sample.source}"

    def _build(self, *_: Any) -> None:
        doc = pn.state.curdoc
        self.build_button.disabled = True
        self.build_button.label = "Building digits-dvs ..."

        def work() -> None:
            message = ""
            try:
                build_dataset(self.state.dataset)
            except Exception as exc:  # noqa: BLE001 - shown on the page
                message = f"{type(exc).__name__}: {exc}"

            def done() -> None:
                self.build_button.disabled = False
                self.build_button.label = "Build digits-dvs (about 20 s)"
                if not message:
                    self.state.reload_data()
                else:
                    self.state.error = message

            if doc is not None and doc.session_context is not None:
                doc.add_next_tick_callback(done)
            else:
                done()

        threading.Thread(target=work, name="hstlab-build-data", daemon=True).start()

    def _controls(self, section: str) -> Any:
        """The section's own controls and a line saying what its plots show."""
        what = pn.pane.Markdown(f"*What am I looking at?* {GLOSSARY[SECTION_HELP[section]]}",
                                sizing_mode="stretch_width", css_classes=["hst-what"])
        return pn.Column(what, self._section_controls.get(section, pn.Spacer(height=0)),
                         sizing_mode="stretch_width")

    def _content(
        self,
        insp: Inspection | None,
        section: str,
        spike_layer: str,
        attention_layer: str,
        head: int,
        t: int,
        steps: str,
        cfg: Any,
    ) -> Any:
        if section == "Positional code":
            return posenc_view(cfg)
        if section == "Spiking vs standard":
            return comparison_view(self.state.zoo_comparison())
        if insp is None:
            return pn.pane.Markdown("Recording ...")
        if section == "Spikes":
            return spikes_view(insp, spike_layer)
        if section == "Attention":
            return attention_view(insp, attention_layer, head, t, steps)
        return events_view(insp)

    def __panel__(self) -> pn.viewable.Viewable:
        s = self.state
        controls = pn.Row(
            pn.widgets.Select.from_param(s.param.dataset, width=200),
            self.sample_slider,
            self.build_button,
        )
        content = lazy(
            self._content,
            s.param.inspection,
            self.param.section,
            self.param.spike_layer,
            self.param.attention_layer,
            self.param.head,
            self.param.t,
            self.param.steps,
            s.param.cfg,
            css_classes=["hst-inspect-content"],
            loading=pn.bind(is_measuring, s.param.stale, s.param.busy, "inspection"),
        )
        return pn.Column(
            controls,
            self.source,
            weights_pane(s, "hst-inspect-weights"),
            busy_indicator(s, "inspection"),
            pn.widgets.RadioButtonGroup.from_param(self.param.section, css_classes=["hst-section"]),
            pn.panel(pn.bind(self._controls, self.param.section)),
            content,
            sizing_mode="stretch_width",
        )
