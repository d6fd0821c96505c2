"""Energy-aware model card of a finished run: what was trained, how well, at what energy, for whom.

:func:`card_data` measures everything (deterministic given the run directory);
:mod:`hstlab.train.card_render` turns it into Markdown and self-contained HTML.

Energy numbers come from :func:`hstlab.energy.energy_report` on real validation/test samples
of the run's dataset. The standard-mode twin is ``cfg.with_modes("T" * n_layer)`` built from the
same config: a dense model's MAC count does not depend on its weight values, so an untrained
twin costs what a trained one would (the card checks this on two random initializations).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hstlab.config import HSTConfig
from hstlab.data.collate import spread_indices
from hstlab.train.checkpoint import load_checkpoint, read_json, run_checkpoint, write_json
from hstlab.train.meters import SpikeRateMeter
from hstlab.train.trainer import default_collate
from hstlab.twins import FP32_PRESET, twins

ENERGY_PRESET = FP32_PRESET
CARD_FILES = ("model_card.md", "model_card.html", "model_card.json")


# ----------------------------------------------------------------------------------- run files
def _read_json(path: Path) -> dict[str, Any]:
    return read_json(path) if path.is_file() else {}  # a corrupt file: ValueError naming it


def _check_run_dir(run_dir: Path, arg: str) -> None:
    files = (run_checkpoint(run_dir), run_dir / "metrics.json", run_dir / "run.json")
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise ValueError(f"{arg}={str(run_dir)!r} is not a finished run directory: missing {', '.join(missing)} "
                         "(written by train_run / hstlab train)")


def _components(cfg: HSTConfig) -> dict[str, str]:
    """The enhanced-transformer components of the plan, as the config sets them."""
    layers = cfg.resolved_layers()
    tim = [lay.index for lay in layers if lay.tim]
    masked = [f"{lay.index}:{lay.mask_ratio:g} ({lay.mask_policy})" for lay in layers if lay.mask_ratio > 0]
    staged = {}
    if cfg.stages:  # a staged (hierarchical) model: one line per stage
        from hstlab.staged import stage_lines

        staged = {"stages": "; ".join(stage_lines(cfg))}
    return {
        **staged,
        "positional encoding": cfg.pos_encoding + (" (CPG-PE)" if cfg.pos_encoding == "cpg" else ""),
        "attention": ", ".join(sorted({lay.attention_kind for lay in layers})),
        "residual": ", ".join(sorted({lay.residual for lay in layers})),
        "TIM (temporal interaction)": f"layers {tim}" if tim else "off",
        "RSM (random spike masking)": ", ".join(masked) if masked else "off",
        "neuron": f"{cfg.neuron} (tau {cfg.tau:g}, threshold {cfg.threshold:g}, {cfg.reset} reset, "
                  f"surrogate {cfg.surrogate})",
        "weight bits": str(cfg.weight_bits),
        "membrane bits": "float (32)" if cfg.membrane_bits >= 32 else f"{cfg.membrane_bits} (fixed point)",
    }


def _layer_rows(cfg: HSTConfig) -> list[list[Any]]:
    return [[lay.index, lay.attn_mode, lay.mlp_mode, lay.attention_kind, lay.residual, lay.tim,
             lay.mask_ratio, lay.mask_policy] for lay in cfg.resolved_layers()]


# ----------------------------------------------------------------------------------- measuring
def _batch(dataset: Any, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
    return default_collate([dataset[i] for i in indices])


def _build(cfg: HSTConfig, seed: int) -> nn.Module:
    """An untrained model of ``cfg`` with a fixed init (the global RNG is left alone)."""
    from hstlab.model import build_model

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(cfg)
    return model.eval()


def _report(model: nn.Module, x: Tensor, preset: str) -> Any:
    from hstlab.energy import energy_report

    return energy_report(model, x, preset=preset)


def _compared(model: nn.Module, x: Tensor, preset: str, report: Any = None) -> dict[str, Any]:
    """Energy summary of ``model`` on ``x`` (``report``: its step-major report, if measured) with the
    time-batched and fused totals of the same pass beside it."""
    report = report if report is not None else _report(model, x, preset)
    return {**_energy_summary(report), "total_j_time_batched": report.with_dataflow("time-batched").total_j,
            "total_j_fused": report.with_dataflow("fused").total_j}


def _energy_summary(report: Any) -> dict[str, Any]:
    return {"preset": report.preset, "total_j": report.total_j, "compute_j": report.compute_j,
            "memory_j": report.memory_j, "macs": report.macs, "acs": report.acs,
            "memory_level": report.memory_level, "batch_size": report.batch_size,
            "input_shape": list(report.input_shape)}


def _top_layers(report: Any, n: int = 12) -> list[list[Any]]:
    df = report.layers.sort_values("total_j", ascending=False, kind="stable").head(n)
    return [[r["name"] or "<model>", r["kind"], r["mode"], r["macs"], r["acs"], r["input_rate"], r["compute_j"],
             r["memory_j"]] for r in df.to_dict("records")]


def _accumulated(x: Tensor) -> Tensor:
    """``[T, B, C, H, W]`` -> ``[1, B, C, H, W]``: the frames summed over time (one ANN pass)."""
    return x.sum(dim=0, keepdim=True)


def comparison(cfg: HSTConfig, model: nn.Module, x: Tensor, twin_run_dir: Path | None,
               accuracy: float | None = None, this_report: Any = None) -> dict[str, Any]:
    """Energy per sample of the model against standard-mode twins (fp32 and int8) on batch ``x``.

    ``accuracy``: the model's test accuracy, shown in its row (twins: only from ``twin_run_dir``);
    ``this_report``: the model's report on ``x`` when already measured.
    """
    standard, int8, *others = twins(cfg)
    twin_cfg, int8_cfg = standard.cfg, int8.cfg
    this = this_report if this_report is not None else _report(model, x, ENERGY_PRESET)
    twin_model = _build(twin_cfg, 0)
    twin_a = standard.energy_report(twin_model, x)
    twin_b = standard.energy_report(_build(twin_cfg, 1), x)
    weight_independent = math.isclose(twin_a.total_j, twin_b.total_j, rel_tol=1e-9) and twin_a.macs == twin_b.macs
    rows = [
        {"variant": f"this model ({cfg.modes})", "modes": cfg.modes, "steps": cfg.num_steps, "bits": cfg.weight_bits,
         "preset": ENERGY_PRESET, **_compared(model, x, ENERGY_PRESET, this)},
    ]
    for twin in (standard, int8, *others):
        report = twin_a if twin is standard else twin.energy_report(_build(twin.cfg, 0), x)
        bits = f"{twin.cfg.weight_bits}" + (f"/{twin.activation_bits}" if twin.activation_bits else "")
        rows.append({"variant": twin.name, "modes": twin.cfg.modes, "steps": cfg.num_steps, "bits": bits,
                     "preset": twin.energy_preset, "description": twin.description,
                     **_compared(None, x, twin.energy_preset, report)})
    if cfg.tokenizer == "sps":  # a fully standard model may also run once on accumulated frames (design.md §2)
        x1 = _accumulated(x)
        for label, c, preset in (("standard twin, T=1 on accumulated frames", twin_cfg, standard.energy_preset),
                                 ("standard twin, int8, T=1 on accumulated frames", int8_cfg, int8.energy_preset)):
            one = dataclasses.replace(c, num_steps=1)
            rows.append({"variant": label, "modes": one.modes, "steps": 1, "bits": one.weight_bits, "preset": preset,
                         **_compared(_build(one, 0), x1, preset)})
    for row in rows:
        for suffix in ("", "_time_batched", "_fused"):
            mine = rows[0][f"total_j{suffix}"]
            row[f"ratio_to_this{suffix}"] = row[f"total_j{suffix}"] / mine if mine else math.nan
        row["accuracy"] = None
    rows[0]["accuracy"] = accuracy
    winner = min(rows, key=lambda r: r["total_j"])
    twin_info = _twin_run(twin_run_dir, twin_cfg, x) if twin_run_dir is not None else None
    if twin_info is not None:
        rows[1]["accuracy"] = twin_info.get("test_accuracy")
    return {"rows": rows, "winner": winner["variant"], "weight_independent": weight_independent,
            "twin_seeds_total_j": [twin_a.total_j, twin_b.total_j], "twin_run": twin_info}


def _twin_run(twin_run_dir: Path, twin_cfg: HSTConfig, x: Tensor) -> dict[str, Any]:
    """Accuracy (and energy of the trained weights) of a standard-mode twin's run directory."""
    _check_run_dir(twin_run_dir, "twin_run_dir")
    metrics = _read_json(twin_run_dir / "metrics.json")
    model, cfg, _ = load_checkpoint(run_checkpoint(twin_run_dir))
    same = {k: v for k, v in cfg.to_dict().items() if k != "name"} == \
        {k: v for k, v in twin_cfg.to_dict().items() if k != "name"}
    trained = _report(model, x, ENERGY_PRESET).total_j if tuple(x.shape[2:]) == cfg.input_shape else None
    return {"run_dir": str(twin_run_dir), "modes": cfg.modes, "same_config": same,
            "val_accuracy": metrics.get("val_accuracy"), "test_accuracy": metrics.get("test_accuracy"),
            "trained_total_j": trained}


@torch.no_grad()
def fairness(model: nn.Module, test: Any, batch_size: int, classes: Sequence[str] | None) -> dict[str, Any]:
    """Per-class accuracy, firing rate and energy per sample on the test split.

    Each class's samples run as their own batches (eval mode, state reset per batch, so the
    result is the same as in mixed batches); energy is :func:`energy_report` per batch,
    weighted by batch size.
    """
    labels = [int(test[i][1]) for i in range(len(test))]
    meter = SpikeRateMeter(model)
    rows = []
    try:
        for c in sorted(set(labels)):
            idx = [i for i, y in enumerate(labels) if y == c]
            correct, energy, spikes, neurons = 0, 0.0, 0.0, 0
            for start in range(0, len(idx), batch_size):
                chunk = idx[start:start + batch_size]
                x, y = _batch(test, chunk)
                model.eval()
                model.reset_state()
                meter.reset()
                with torch.random.fork_rng():
                    torch.manual_seed(0)
                    correct += int((model(x).argmax(-1) == y).sum())
                s, n = meter.totals()
                spikes, neurons = spikes + s, neurons + n
                energy += _report(model, x, ENERGY_PRESET).total_j * len(chunk)
            name = classes[c] if classes and c < len(classes) else str(c)
            rows.append({"class": name, "label": c, "n": len(idx), "accuracy": correct / len(idx),
                         "firing_rate": spikes / neurons if neurons else None, "energy_j": energy / len(idx)})
    finally:
        meter.close()
    gaps = {}
    for key in ("accuracy", "firing_rate", "energy_j"):
        valid = [r for r in rows if r[key] is not None]
        if len(valid) >= 2:
            lo, hi = min(valid, key=lambda r: r[key]), max(valid, key=lambda r: r[key])
            gaps[key] = {"low": lo["class"], "low_value": lo[key], "high": hi["class"], "high_value": hi[key],
                         "gap": hi[key] - lo[key], "relative": (hi[key] - lo[key]) / hi[key] if hi[key] else 0.0}
    return {"rows": rows, "gaps": gaps, "energy_preset": ENERGY_PRESET}


# ----------------------------------------------------------------------------------- assembly
def card_data(run_dir: str | os.PathLike, twin_run_dir: str | os.PathLike | None = None,
              energy_batch: int = 32) -> dict[str, Any]:
    """Everything the card shows, as plain JSON-able data (no timestamps: deterministic per run)."""
    from hstlab.data import dataset_info
    from hstlab.train.run import load_splits

    run_dir = Path(run_dir)
    _check_run_dir(run_dir, "run_dir")
    if isinstance(energy_batch, bool) or not isinstance(energy_batch, int) or energy_batch < 1:
        raise ValueError(f"energy_batch={energy_batch!r} must be an integer >= 1")
    run = _read_json(run_dir / "run.json")
    metrics = _read_json(run_dir / "metrics.json")
    model, cfg, meta = load_checkpoint(run_checkpoint(run_dir))
    info = dataset_info(run["dataset"])
    train, val, test, _ = load_splits(run["dataset"], cfg, run.get("limit"), run.get("dataset_options", {}),
                                      run.get("time_bins"))
    xv, _ = _batch(val, spread_indices(len(val), energy_batch))  # spread: splits are often class-sorted
    xt, _ = _batch(test, spread_indices(len(test), energy_batch))
    val_report = _report(model, xv, ENERGY_PRESET)
    test_report = _report(model, xt, ENERGY_PRESET)
    classify = cfg.head != "sequence"
    classes = info.get("classes") if isinstance(info.get("classes"), (list, tuple)) else None
    return {
        "run_dir": str(run_dir),
        "title": f"{cfg.name} on {run['dataset']} (modes {cfg.modes})",
        "config": cfg.to_dict(),
        "modes": cfg.modes,
        "parameters": sum(p.numel() for p in model.parameters()),
        "components": _components(cfg),
        "layers": _layer_rows(cfg),
        "data": {"dataset": run["dataset"], "kind": info.get("kind"), "description": info.get("description"),
                 "source": info.get("source"), "full_sizes": info.get("sizes"),
                 "used_sizes": {"train": len(train), "val": len(val), "test": len(test)},
                 "limit": run.get("limit"), "time_bins": int(xv.shape[0]),
                 "options": run.get("dataset_options", {}), "x_shape": info.get("x_shape")},
        "training": {k: run.get(k) for k in ("epochs", "seed", "batch_size", "lr", "loss", "weight_decay",
                                             "warmup_frac", "grad_clip")}
        | {k: metrics.get(k) for k in ("steps", "best_epoch", "epochs_completed", "train_seconds", "stop_reason",
                                       "world_size")} | {"notes": run.get("notes", [])},
        "metrics": {split: {k: metrics.get(f"{split}_{k}") for k in ("accuracy", "loss", "firing_rate",
                                                                     "bits_per_spike")
                            if metrics.get(f"{split}_{k}") is not None} for split in ("val", "test")},
        "versions": metrics.get("versions", meta.get("versions", {})),
        "energy": {"val": _energy_summary(val_report), "test": _energy_summary(test_report),
                   "val_indices": f"{xv.shape[1]} validation samples spread evenly over the split",
                   "test_indices": f"{xt.shape[1]} test samples spread evenly over the split",
                   "assumptions": list(val_report.assumptions), "baseline_note": val_report.baseline_note,
                   "unpriced": sorted(set(val_report.unpriced) | set(test_report.unpriced)),
                   "top_layers": _top_layers(val_report)},
        "comparison": comparison(cfg, model, xv, Path(twin_run_dir) if twin_run_dir is not None else None,
                                 metrics.get("test_accuracy"), val_report),
        "fairness": fairness(model, test, energy_batch, classes) if classify else None,
    }


def write_model_card(run_dir: str | os.PathLike, twin_run_dir: str | os.PathLike | None = None,
                     out_dir: str | os.PathLike | None = None, *, energy_batch: int = 32) -> Path:
    """Write ``model_card.md``, ``model_card.html`` (self-contained) and ``model_card.json``; returns the ``.md``.

    ``out_dir`` defaults to ``run_dir``. ``twin_run_dir``: a trained standard-mode twin run,
    whose accuracy is then shown next to its energy.

    Example:
        >>> path = write_model_card("runs/hst-small-digits-dvs-s0-...")  # doctest: +SKIP
        >>> path.name  # doctest: +SKIP
        'model_card.md'
    """
    from hstlab.train.card_render import render_html, render_markdown

    data = card_data(run_dir, twin_run_dir, energy_batch=energy_batch)
    out = Path(out_dir) if out_dir is not None else Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_card.md").write_text(render_markdown(data))
    (out / "model_card.html").write_text(render_html(data))
    write_json(out / "model_card.json", data)
    return out / "model_card.md"
