"""Model card export for the explorer: the trainer's card for a finished run, else one from library data.

The fallback card only formats what the library computed (config JSON, parameter count,
``EnergyReport.summary()`` and its assumptions, the run's ``metrics.json``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from hstlab.ui.runs import RunFolders
from hstlab.ui.state import ExplorerState
from hstlab.units import format_joules


def card_file_name(state: ExplorerState, run_dir: str | Path | None = None) -> str:
    """The download name of a card: ``model_card_<model>_<modes>[_<run>].md``.

    Example:
        >>> card_file_name(ExplorerState(preset="tiny"), "runs/explorer/run-002")
        'model_card_tiny_SS_run-002.md'
    """
    parts = ["model_card", state.cfg.name, state.cfg.modes] + ([Path(run_dir).name] if run_dir else [])
    return "_".join(re.sub(r"[^A-Za-z0-9._-]+", "-", part) for part in parts) + ".md"


def model_card(
    state: ExplorerState, run_dir: str | Path | None = None, folders: RunFolders | None = None
) -> tuple[str, str]:
    """``(download file name, Markdown)`` of the model card (the name says the model and run).

    With a finished run: ``hstlab.train.card.write_model_card(run_dir)`` (written once, then
    reused). Without one, or when the trainer's card cannot be made, a card of the current
    model built from library data (the reason is stated in it). With ``folders`` (a served
    session) a card is written only inside ``folders.own``; runs loaded from shared folders get
    their existing card or the library-data card, nothing is written there. While the shown
    model's energy is not measured yet the card says that its energy is the previous model's.
    """
    note = ""
    if run_dir is not None:
        from hstlab.train.card import write_model_card

        run_dir = Path(run_dir)
        from hstlab.train.checkpoint import run_checkpoint

        card, best = run_dir / "model_card.md", run_checkpoint(run_dir)
        try:
            readable = folders is None or folders.readable_path(card)  # not a link leading out
            if (readable and card.is_file() and best.is_file()
                    and card.stat().st_mtime >= best.stat().st_mtime):  # fmt: skip
                return card_file_name(state, run_dir), card.read_text()
            if folders is not None and not folders.writable(run_dir):
                note = (f"The trainer's card for {run_dir} is not written: the explorer writes "
                        "only into this session's runs folder")  # fmt: skip
            else:
                card = write_model_card(run_dir)
                return card_file_name(state, run_dir), card.read_text()
        except (ValueError, OSError) as exc:
            note = f"The trainer's card for {run_dir} could not be made: {exc}"
    return card_file_name(state, run_dir), _fallback_card(state, run_dir, note, folders)


def _run_metrics(run_dir: str | Path | None, folders: RunFolders | None) -> dict | None:
    """The run's ``metrics.json`` as a dict (None when absent, unreadable or a link leading out)."""
    if run_dir is None:
        return None
    path = Path(run_dir) / "metrics.json"
    if folders is not None and not folders.readable_path(path):
        return None
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None


def _fallback_card(state: ExplorerState, run_dir: str | Path | None, note: str = "",
                   folders: RunFolders | None = None) -> str:  # fmt: skip
    cfg, report = state.cfg, state.energy
    if "energy" in state.stale:  # being measured, or its measuring failed (state.error says why)
        why = "it is being measured" if state.busy else f"measuring it failed. {state.error}"
        note = " ".join(filter(None, [note, f"The energy below is of the previously shown model: {why}"]))
    lines = [
        *([f"> {note}", ""] if note else []),
        f"# Model card: {cfg.name} ({cfg.modes})",
        "",
        f"- parameters: {state.n_params:,}",
        f"- layers: {cfg.n_layer}, width {cfg.n_embd}, heads {cfg.n_head}, T = {cfg.num_steps}",
        *[f"  - {line}" for line in state.summary()["stages"]],
        (
            f"- energy per sample: {format_joules(report.total_j, 4)} (compute "
            f"{format_joules(report.compute_j, 4)}, memory {format_joules(report.memory_j, 4)}), "
            f"preset {report.preset}"
        ),
        f"- energy measured on: {state.sample.source}",
        "",
    ]
    metrics = _run_metrics(run_dir, folders)
    if metrics is not None:
        keep = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
        lines += [
            "## Training run",
            "",
            f"run folder: `{run_dir}`",
            "",
            "```json",
            json.dumps(keep, indent=2),
            "```",
            "",
        ]
    lines += [
        "## Energy by layer",
        "",
        "```",
        report.summary(),
        "```",
        "",
        "## Assumptions",
        "",
        *[f"- {a}" for a in report.assumptions],
        "",
        "## Config",
        "",
        "```json",
        cfg.to_json(),
        "```",
        "",
    ]
    return "\n".join(lines)
