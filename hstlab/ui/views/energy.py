"""Energy tab: per-layer breakdown, spiking vs standard vs quantized, assumptions, model card."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
import panel as pn
import param

from hstlab import viz
from hstlab.glossary import GLOSSARY
from hstlab.ui.card import model_card
from hstlab.ui.state import ExplorerState
from hstlab.ui.training import TrainSession
from hstlab.ui.views._common import (
    MEASURING,
    busy_indicator,
    hv_pane,
    is_measuring,
    joules,
    lazy,
    stale_mark,
)

# report column -> (shown heading, how a value is written)
TABLE_FORMAT: dict[str, tuple[str, Any]] = {
    "name": ("layer", str),
    "kind": ("kind", str),
    "mode": ("mode", str),
    "input_kind": ("input", str),
    "macs": ("MACs / sample", lambda v: f"{v:,.0f}"),
    "acs": ("ACs / sample", lambda v: f"{v:,.0f}"),
    "input_rate": ("input rate", lambda v: f"{v:.3f}"),
    "compute_j": ("compute (µJ)", lambda v: f"{v * 1e6:,.4g}"),
    "memory_j": ("memory (µJ)", lambda v: f"{v * 1e6:,.4g}"),
}


def layer_table(report: Any) -> pd.DataFrame:
    """The layers that cost energy, with readable headings, units (µJ) and thousands separators.

    Example:
        >>> layer_table(ExplorerState(preset="tiny").energy).columns[-2:].tolist()
        ['compute (µJ)', 'memory (µJ)']
    """
    active = report.layers[(report.layers["compute_j"] + report.layers["memory_j"]) > 0]
    return pd.DataFrame({heading: [fmt(v) for v in active[col]] for col, (heading, fmt) in TABLE_FORMAT.items()})


def layer_csv(report: Any) -> io.StringIO:
    """Every layer of the report with all its columns, as CSV (joules, raw counts)."""
    buffer = io.StringIO()
    report.layers.to_csv(buffer, index=False)
    buffer.seek(0)
    return buffer


def totals_text(report: Any, stale: list[str] = (), busy: bool = False) -> str:
    """The totals line; marked while it is of the previous model (``'energy'`` in ``stale``)."""
    if report is None:
        return stale_mark(busy) if "energy" in stale else ""
    mark = f"{stale_mark(busy)}, shown for the previous model: " if "energy" in stale else ""
    return mark + (
        f"**Total per sample:** {joules(report.total_j)} (compute {joules(report.compute_j)}, "
        f"memory {joules(report.memory_j)}) &nbsp; **MACs:** {report.macs:,.0f} &nbsp; "
        f"**ACs:** {report.acs:,.0f} &nbsp; preset {report.preset}, memory {report.memory_level}, "
        f"{report.dataflow} dataflow"
    )


def layers_view(report: Any) -> Any:
    if report is None:
        return pn.pane.Markdown(MEASURING)
    active = report.layers[(report.layers["compute_j"] + report.layers["memory_j"]) > 0]
    download = pn.widgets.FileDownload(
        callback=lambda: layer_csv(report), filename="energy_layers.csv",
        label="Download the layer table (CSV)", css_classes=["hst-energy-csv"],
    )
    return pn.Column(
        hv_pane(viz.layer_energy_bars(active)),
        hv_pane(viz.layer_ops_bars(active)),
        pn.pane.DataFrame(layer_table(report), index=False, max_rows=200, sizing_mode="stretch_width"),
        download,
    )


def assumptions_text(report: Any) -> str:
    if report is None:
        return ""
    lines = [f"- {a}" for a in report.assumptions]
    if report.unpriced:  # what the engine could not price is shown, never dropped
        lines += ["", f"**Not priced ({len(report.unpriced)}; left out of the totals):**"]
        lines += [f"- {entry}" for entry in report.unpriced]
    return "\n".join(lines)


class EnergyView(pn.viewable.Viewer):
    """Per-layer energy of the current model and the comparison with its variants.

    Example:
        >>> view = EnergyView(state=ExplorerState(preset="tiny"), session=TrainSession())
        >>> list(view.comparison_totals())[-3:]
        ['standard twin', 'standard twin, int8', 'bit-matched twin']
    """

    state = param.ClassSelector(class_=ExplorerState)
    session = param.ClassSelector(class_=TrainSession)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.download = pn.widgets.FileDownload(
            callback=self._card,
            filename="model_card.md",
            label="Export model card",
            color="primary",
            css_classes=["hst-card"],
            disabled=pn.bind(is_measuring, self.state.param.stale, self.state.param.busy, "energy"),
        )

    def comparison_totals(self) -> dict[str, float]:
        return {name: report.total_j for name, report in self.state.energy_variants().items()}

    def _comparison(self, variants: dict[str, Any] | None = None, *_: Any) -> Any:
        """The variants the state measured (the served app: while this tab is shown), or, in a
        state that measures inline, measured now."""
        if variants is None and self.state.deferred:
            return pn.pane.Markdown(MEASURING)
        reports = variants if variants is not None else self.state.energy_variants()
        totals = {name: report.total_j for name, report in reports.items()}
        baseline = next((n for n in totals if n.startswith("standard twin")), None)
        return hv_pane(viz.energy_comparison(totals, baseline=baseline))

    def _card(self) -> io.StringIO:
        last = self.session.last_run_dir if self.session else None
        name, text = model_card(self.state, self.state.run_dir or last, self.state.runs)
        self.download.filename = name
        return io.StringIO(text)

    def __panel__(self) -> pn.viewable.Viewable:
        s = self.state
        dataflow = pn.widgets.RadioButtonGroup.from_param(
            s.param.dataflow, name="memory dataflow", css_classes=["hst-dataflow"]
        )
        return pn.Column(
            pn.Row(
                self.download,
                pn.pane.Markdown(
                    "The card holds the config, the energy table and its assumptions, and the "
                    "metrics of the loaded run (else of the latest finished run).",
                    sizing_mode="stretch_width",
                ),
                sizing_mode="stretch_width",
            ),
            pn.Row(
                dataflow,
                pn.pane.Markdown(
                    "Memory dataflow: *step-major* moves weights and membranes every time step; "
                    "*time-batched* runs each layer over all T steps, reading weights and "
                    "membranes once; *fused* also runs activations and neurons inside the "
                    "Linear/Conv before them, so that output is never written. Compute is the same.",
                    sizing_mode="stretch_width",
                ),
                sizing_mode="stretch_width",
            ),
            busy_indicator(s, "energy"),
            pn.pane.Markdown(
                pn.bind(totals_text, s.param.energy, s.param.stale, s.param.busy),
                css_classes=["hst-energy-total"],
            ),
            pn.pane.Markdown("#### Spiking vs standard vs quantized (same input)"),
            pn.pane.Markdown(GLOSSARY["plot:energy_compare"]),
            busy_indicator(s, "comparison"),
            lazy(self._comparison, s.param.variants, s.param.energy, css_classes=["hst-energy-compare"],
                 loading=pn.bind(is_measuring, s.param.stale, s.param.busy, "comparison")),
            pn.pane.Markdown("#### Per layer"),
            pn.pane.Markdown(GLOSSARY["plot:energy_layers"]),
            lazy(layers_view, s.param.energy,
                 loading=pn.bind(is_measuring, s.param.stale, s.param.busy, "energy")),
            pn.Card(
                pn.pane.Markdown(pn.bind(assumptions_text, s.param.energy)),
                title="Assumptions",
                collapsed=True,
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
        )
