"""Build tab: preset, global fields, the per-layer toggle table, size and energy at a glance."""

from __future__ import annotations

import functools
import html
from typing import Any

import panel as pn
import param

from hstlab.config import ATTENTION_KINDS, MLP_KINDS, MODES, RESIDUALS
from hstlab.glossary import explain
from hstlab.ui.limits import parse_number
from hstlab.ui.state import LAYER_COLUMNS, ExplorerState, table_cell
from hstlab.ui.views._common import (
    NumberField,
    busy_indicator,
    error_alert,
    joules,
    stale_mark,
    weights_pane,
)

INT_FIELDS = ("n_layer", "n_embd", "n_head", "num_steps")
CHOICE_FIELDS = ("tokenizer_mode", "tokenizer", "pos_encoding", "neuron", "surrogate", "weight_bits", "membrane_bits")
COLUMN_LABELS = {
    "attn_mode": "attention mode",
    "mlp_mode": "MLP mode",
    "attention": "attention kind",
    "mlp_kind": "MLP kind",
    "tim": "TIM",
    "residual": "residual",
    "mask_ratio": "masking ratio",
}
CELL_WIDTH = 110  # seven layer columns fit beside the sidebar at 1400 px
FIELD_WIDTH = 150  # two choice fields side by side in the sidebar (number fields: one per row)
TEXT_COLUMNS = ("mask_ratio",)  # typed numbers, parsed by hstlab.ui.limits.parse_number


def _cell_widget(column: str, index: int) -> pn.widgets.Widget:
    css = [f"hst-layer-{index}-{column}"]
    options = {
        "attn_mode": MODES,
        "mlp_mode": MODES,
        "attention": ATTENTION_KINDS,
        "mlp_kind": MLP_KINDS,
        "residual": RESIDUALS,
    }
    if column in options:
        return pn.widgets.Select(options=list(options[column]), width=CELL_WIDTH, css_classes=css)
    if column == "tim":
        return pn.widgets.Checkbox(width=CELL_WIDTH, css_classes=css)
    return pn.widgets.TextInput(width=CELL_WIDTH, css_classes=css)  # parsed in LayerTable._edited


def column_heading(column: str) -> pn.pane.HTML:
    """A layer-table heading whose tooltip (hover) explains the column and its choices."""
    text = html.escape(explain(column), quote=True)
    return pn.pane.HTML(f'<b title="{text}" style="cursor:help">{COLUMN_LABELS[column]} (?)</b>',
                        width=CELL_WIDTH, css_classes=[f"hst-help-{column}"])


def stem_select(state: ExplorerState, **kwargs: Any) -> pn.widgets.Select:
    """The stem mode by its labels, both ways: Panel's ``Select.from_param`` sends the ``None`` of
    "follows layer 0" as an empty value, so the browser showed a blank box.

    Example:
        >>> state = ExplorerState(preset="tiny")
        >>> box = stem_select(state)
        >>> box.value
        'follows layer 0'
        >>> box.value = "spiking"
        >>> state.tokenizer_mode
        'spiking'
    """
    labels = state.param.tokenizer_mode.names  # label -> value (None: follows layer 0)
    label_of = {value: label for label, value in labels.items()}
    box = pn.widgets.Select(name=state.param.tokenizer_mode.label, options=list(labels),
                            value=label_of[state.tokenizer_mode], **kwargs)
    showing = []  # non-empty while the box follows the state (not an edit)

    def edited(event: Any) -> None:
        if not showing:
            state.set_field("tokenizer_mode", labels[event.new])

    def follow(event: Any) -> None:
        showing.append(True)
        try:
            box.value = label_of[event.new]
        finally:
            showing.pop()

    box.param.watch(edited, "value")
    state.param.watch(follow, "tokenizer_mode")
    return box


class LayerTable(pn.viewable.Viewer):
    """One row of toggles per layer, kept in sync with ``state.layers`` both ways.

    Example:
        >>> table = LayerTable(state=ExplorerState(preset="tiny"))
        >>> table.widget(0, "attn_mode").value = "standard"  # rebuilds the model
    """

    state = param.ClassSelector(class_=ExplorerState)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._rows: list[dict[str, pn.widgets.Widget]] = []
        self._syncing = False
        self._grid = pn.GridBox(ncols=len(LAYER_COLUMNS) + 1, css_classes=["hst-layer-table"])
        self.state.param.watch(self._sync, "layers")
        self._sync()

    def widget(self, index: int, column: str) -> pn.widgets.Widget:
        return self._rows[index][column]

    def _make_row(self, index: int) -> dict[str, pn.widgets.Widget]:
        row = {c: _cell_widget(c, index) for c in LAYER_COLUMNS}
        for column, w in row.items():
            w.param.watch(functools.partial(self._edited, index, column), "value")
        return row

    def _sync(self, *_: Any) -> None:
        table = self.state.layers
        self._syncing = True
        try:
            if len(table) != len(self._rows):
                self._rows = [self._make_row(i) for i in range(len(table))]
                header = [pn.pane.Markdown("")] + [column_heading(c) for c in LAYER_COLUMNS]
                cells = [
                    pn.pane.Markdown(f"**layer {i}**", width=70) for i in range(len(self._rows))
                ]
                self._grid.objects = header + [
                    w for i, row in enumerate(self._rows) for w in (cells[i], *row.values())
                ]
            for i, row in enumerate(self._rows):
                for column, w in row.items():
                    value = table_cell(column, table.at[i, column])
                    w.value = str(value) if column in TEXT_COLUMNS else value
        finally:
            self._syncing = False

    def _edited(self, index: int, column: str, event: param.parameterized.Event) -> None:
        if self._syncing:
            return
        value = event.new
        if column in TEXT_COLUMNS:
            try:
                value = parse_number(column, value)
            except ValueError as exc:
                self.state.reject(ValueError(f"layer {index}: {exc}"))
                return
        self.state.set_layer(index, column, value)

    def __panel__(self) -> pn.viewable.Viewable:
        return self._grid


class BuildView(pn.viewable.Viewer):
    """Preset and global fields, per-layer toggles, the inline error and the live summary.

    Example:
        >>> view = BuildView(state=ExplorerState(preset="tiny"))
        >>> view.summary_text()[:15]
        '**Parameters:**'
    """

    state = param.ClassSelector(class_=ExplorerState)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        s = self.state
        self.widgets: dict[str, pn.widgets.Widget] = {
            "preset": pn.widgets.Select.from_param(
                s.param.preset, css_classes=["hst-preset"], description=explain("preset"),
                sizing_mode="stretch_width",
            ),
            "pretrained": pn.widgets.Select.from_param(
                s.param.pretrained, css_classes=["hst-pretrained"],
                description=explain("pretrained"), sizing_mode="stretch_width",
            ),
        }
        self.fields = {
            name: NumberField(s, name, s.set_field, s.reject, css_classes=[f"hst-{name}"],
                              sizing_mode="stretch_width", description=explain(name))
            for name in INT_FIELDS
        }
        self.widgets.update({name: field.input for name, field in self.fields.items()})
        for name in CHOICE_FIELDS:
            make = stem_select if name == "tokenizer_mode" else (
                lambda state, name=name, **kw: pn.widgets.Select.from_param(state.param[name], **kw))
            self.widgets[name] = make(s, css_classes=[f"hst-{name}"], width=FIELD_WIDTH,
                                      description=explain(name))
        self.table = LayerTable(state=s)
        self.error = error_alert(s)
        self.run_dir = pn.widgets.TextInput(
            placeholder="run directory (holds best.safetensors), e.g. runs/hst-small-digits-dvs-s0-...",
            min_width=300, sizing_mode="stretch_width",
            css_classes=["hst-run-dir"],
        )
        self.load_button = pn.widgets.Button(
            label="Load run", color="primary", css_classes=["hst-load-run"]
        )
        self.load_button.on_click(lambda _: s.load_run(self.run_dir.value))
        s.param.watch(self._show_fields, "cfg")
        self.weights = weights_pane(s)
        self.summary = pn.pane.Markdown(
            pn.bind(
                lambda *_: self.summary_text(),
                s.param.n_params,
                s.param.energy,
                s.param.build_seconds,
                s.param.stale,
                s.param.busy,
            ),
            css_classes=["hst-summary"],
        )
        self.busy = busy_indicator(s, "energy")
        self.config_json = pn.pane.Markdown(
            pn.bind(lambda cfg: f"```json\n{cfg.to_json()}\n```" if cfg else "", s.param.cfg)
        )

    def _show_fields(self, *_: Any) -> None:
        """An accepted model: every number box shows the value it was built with (drops text that
        was refused earlier; its message went away with the accepted change)."""
        for field in self.fields.values():
            if field.invalid:
                field.sync()

    def summary_text(self) -> str:
        s = self.state
        info = s.summary()
        energy = f"{joules(info['energy_j'])} (memory {info['memory']} dataflow)"
        measured = f"energy measured in {info['measure_seconds']:.2f} s on {info['input']}"
        if "energy" in info["stale"]:
            energy = f"{stale_mark(info['busy'])} (shown: {energy}, of the previous model)"
            measured = f"energy {'being ' if info['busy'] else 'not '}measured on {info['input']}"
        return (
            f"**Parameters:** {info['params']:,}  \n**Energy per sample:** {energy}  \n"
            f"**Stem:** {info['stem']}  \n"
            f"**Modes:** {info['modes']}  \n(rebuilt in {info['build_seconds']:.2f} s; {measured})"
            + (f"  \n⚠ {s.memory_note}" if s.memory_note and "energy" not in info["stale"] else "")
            + "".join(f"  \n**{line.split(':', 1)[0]}:**{line.split(':', 1)[1]}" for line in info["stages"])
        )

    def controls(self) -> pn.viewable.Viewable:
        """The sidebar: the model's fields, the inline error and the live summary."""
        w = self.widgets
        return pn.Column(
            w["pretrained"],
            w["preset"],
            *[w[n] for n in INT_FIELDS],
            pn.FlexBox(*[w[n] for n in CHOICE_FIELDS]),
            self.error,
            self.busy,
            self.summary,
            sizing_mode="stretch_width",
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.pane.Markdown(
                "Pick a trained model of the zoo, or a preset and edit any field in the sidebar "
                "(the model rebuilds at once, untrained). Or load the trained weights of a run "
                "directory (`hstlab train` or the Train tab)."
            ),
            pn.Row(self.run_dir, self.load_button, css_classes=["hst-load"],
                   sizing_mode="stretch_width"),
            self.weights,
            pn.pane.Markdown("#### Per-layer toggles (hover a heading for what it means)"),
            self.table,
            pn.Card(self.config_json, title="Config (JSON)", collapsed=True,
                    sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
