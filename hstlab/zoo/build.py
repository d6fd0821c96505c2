"""Make, check and rebuild zoo entries: run directory -> safetensors + JSON record.

``export_run`` turns a finished ``hstlab train`` run into an entry; ``evaluate_entry`` scores an
entry's shipped weights on the built-in data exactly as the trainer scored them;
``rebuild_entry`` reruns an entry's recorded command into a new folder (the shipped files are
never written by a training run).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from hstlab.zoo import pretrained_record
from hstlab.zoo.record import WEIGHTS_DIR, ZooError, ZooRecord, data_fingerprint, file_sha256

SPLITS = ("val", "test")


def _datasets(dataset: str, dataset_args: dict[str, Any]) -> dict[str, Any]:
    from hstlab.data import load_dataset

    return {split: load_dataset(dataset, split, **{"limit": None, **dataset_args}) for split in SPLITS}


def evaluate_entry(record: ZooRecord, model: Any = None) -> tuple[dict[str, float], str]:
    """``({"val_<score>": ..., "test_<score>": ...}, test-split fingerprint)`` of an entry's weights."""
    from hstlab.train import Trainer
    from hstlab.zoo import load_pretrained

    model = model if model is not None else load_pretrained(record.name)
    data = _datasets(record.dataset, record.dataset_args)
    scorer = Trainer(model, model.cfg, data["test"], data["val"], loss=record.loss, seed=record.seed,
                     measure_energy=False, bn_recalibration_batches=0)
    metrics: dict[str, float] = {}
    for split in SPLITS:
        result = scorer.evaluate(data[split], model)
        metrics.update({f"{split}_{k}": v for k, v in result.items() if k != "firing_rate"})
    return metrics, data_fingerprint(data["test"])


def export_run(run_dir: str | os.PathLike, name: str, description: str, command: list[str],
               dest: str | os.PathLike) -> ZooRecord:
    """Write ``dest/NAME.safetensors`` and ``dest/NAME.json`` from a finished run's best checkpoint."""
    from safetensors.torch import save_file

    from hstlab.train.checkpoint import load_checkpoint, run_checkpoint, versions

    run_dir, dest = Path(run_dir), Path(dest)
    args = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    model, cfg, _ = load_checkpoint(run_checkpoint(run_dir))
    dest.mkdir(parents=True, exist_ok=True)
    weights = dest / f"{name}.safetensors"
    if weights.resolve().parent == WEIGHTS_DIR.resolve() and weights.exists():
        raise ZooError(f"{weights} is a shipped weight file: export to another folder")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    from hstlab.data import dataset_info
    from hstlab.train.run import resolve_time_bins

    time_bins = resolve_time_bins(dataset_info(args["dataset"])["kind"], cfg, args.get("time_bins"))
    dataset_args = {"time_bins": time_bins} if time_bins is not None else {}
    dataset_args.update(args.get("dataset_options") or {})
    if args.get("limit") is not None:
        dataset_args["limit"] = args["limit"]
    record = ZooRecord(
        name=name, description=description, config=cfg.to_dict(),
        recipe={k: args[k] for k in ("epochs", "lr", "batch_size", "augment_shift", "warmup_frac",
                                     "weight_decay", "grad_clip", "time_bins", "limit", "dataset_options")
                if k in args},
        seed=int(args["seed"]), command=list(command), dataset=args["dataset"], dataset_args=dataset_args,
        loss=args["loss"], data_sha256="", metrics={}, weights_sha256=file_sha256(weights),
        versions=dict(versions()), notes=list(args.get("notes") or []),
    )
    metrics, fingerprint = evaluate_entry(record, model)
    record = ZooRecord(**{**record.to_dict(), "metrics": metrics, "data_sha256": fingerprint})
    text = json.dumps(record.to_dict(), indent=1, sort_keys=True) + "\n"
    (dest / f"{name}.json").write_text(text, encoding="utf-8")
    return record


def rebuild_entry(name: str, out: str | os.PathLike) -> ZooRecord:
    """Rerun entry ``name``'s recorded command into ``out/run`` and export it to ``out``."""
    record = pretrained_record(name)
    out = Path(out)
    if out.resolve() == WEIGHTS_DIR.resolve():
        raise ZooError(f"--out {out} is the shipped weights folder: rebuild into another folder")
    run_dir = out / "run"
    if run_dir.exists():
        raise ZooError(f"{run_dir} exists: pick an empty --out folder")
    argv = record.command[1:] if record.command[:1] == ["hstlab"] else record.command
    cmd = [sys.executable, "-m", "hstlab", *argv, "--run-dir", str(run_dir)]
    print("running:", shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return export_run(run_dir, name, record.description, record.command, out)


def materialize_run(name: str, run_dir: str | os.PathLike) -> Path:
    """Write entry ``name`` as a run directory (``best.safetensors``, ``config.json``, ``run.json``,
    ``metrics.json``) that ``hstlab energy``, ``hstlab card`` and the explorer's Load run read.

    The folder must not exist yet or be empty: nothing is overwritten.
    """
    from hstlab.train import checkpoint as ckpt_io
    from hstlab.zoo import load_pretrained

    run_dir = Path(run_dir)
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise ZooError(f"{run_dir} exists and is not an empty folder: pick a new run directory")
    model = load_pretrained(name)
    record: ZooRecord = model.zoo_record
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = {"zoo_entry": name, "versions": record.versions}
    ckpt_io.atomic_save(ckpt_io.make_checkpoint(model, model.cfg, meta), ckpt_io.run_checkpoint(run_dir, new=True))
    ckpt_io.write_json(run_dir / "config.json", model.cfg.to_dict())
    limit = record.dataset_args.get("limit")
    options = {k: v for k, v in record.dataset_args.items() if k not in ("limit", "time_bins")}
    ckpt_io.write_json(run_dir / "run.json", {
        **record.recipe, "dataset": record.dataset, "seed": record.seed, "loss": record.loss,
        "limit": limit, "time_bins": record.dataset_args.get("time_bins"), "dataset_options": options,
        "preset": model.cfg.name, "notes": [f"zoo entry {name}: {record.description}", *record.notes],
    })
    ckpt_io.write_json(run_dir / "metrics.json", {**record.metrics, "versions": record.versions,
                                                  "seed": record.seed, "zoo_entry": name})
    return run_dir
