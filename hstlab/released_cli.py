"""``hstlab convert``: turn a released Spikformer / SDT weight file into an hstlab run directory.

The run directory looks like one ``hstlab train`` writes (``config.json``, ``best.safetensors``,
``run.json``, ``metrics.json``), so ``hstlab energy``, ``hstlab card`` and the explorer's
Load run take it. Nothing is trained: the metrics hold no accuracy, and ``run.json`` names the
dataset the model classifies (``--dataset``, by default DVS128 Gesture for 11 classes and
CIFAR10-DVS for 10).
"""

from __future__ import annotations

import argparse
import datetime as _dt
from pathlib import Path
from typing import Any

DEFAULT_DATASETS = {11: "dvsgesture", 10: "cifar10dvs"}  # num_classes -> the dataset the released files fit


def register(subparsers: Any) -> None:
    """Add ``convert`` to the ``hstlab`` command line."""
    p = subparsers.add_parser(
        "convert", help="convert released Spikformer / SDT weights (.pth) into an hstlab run directory",
        description="Convert a released state dict into a run directory that hstlab energy, hstlab card and "
                    "the explorer load. Example: hstlab convert spikformer_gesture.pth "
                    "--preset spikformer-dvs-2-256 --out runs/spikformer-gesture")
    p.add_argument("file", metavar="FILE", help="released .pth/.pth.tar (a state dict, or a checkpoint holding it "
                                                "under 'model' or 'state_dict')")
    p.add_argument("--preset", required=True, help="spikformer-dvs-2-256, sdt-dvs-2-256, qkformer-dvs, "
                   "qkformer-dvs128 or sdt2-15m")
    p.add_argument("--set", dest="config_set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a config field, repeatable (e.g. --set num_classes=10 for CIFAR10-DVS)")
    p.add_argument("--dataset", help="dataset recorded in run.json (default: dvsgesture for 11 classes, "
                                     "cifar10dvs for 10)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="new run directory (must not exist)")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    from hstlab.train.checkpoint import run_checkpoint
    from hstlab.train.cli import parse_options

    path = convert_to_run(args.file, args.preset, args.out, parse_options(args.config_set, flag="--set"),
                          dataset=args.dataset)
    best = run_checkpoint(path).name
    print(f"wrote {path} ({args.preset} from {args.file}): config.json, {best}, run.json, metrics.json")
    return 0


def convert_to_run(file: str | Path, preset: str, out: str | Path, overrides: dict[str, Any] | None = None,
                   dataset: str | None = None) -> Path:
    """Convert ``file`` for ``preset`` (with config ``overrides``) and write the run directory ``out``.

    Example:
        >>> convert_to_run("spikformer.pth", "spikformer-dvs-2-256", "runs/sf")  # doctest: +SKIP
        PosixPath('runs/sf')
    """
    from hstlab.data import list_datasets
    from hstlab.released import load_released, read_released
    from hstlab.train import checkpoint as ckpt_io

    out = Path(out)
    if out.exists():
        raise ValueError(f"--out {str(out)!r} already exists; choose a new run directory")
    state = read_released(file)
    model = load_released(preset, state, **(overrides or {}))
    cfg = model.cfg
    name = dataset or DEFAULT_DATASETS.get(cfg.num_classes)
    if name is None:
        raise ValueError(f"--dataset is needed for num_classes={cfg.num_classes}; allowed: "
                         f"{', '.join(list_datasets())}")
    if name not in list_datasets():
        raise ValueError(f"--dataset {name!r} is not allowed; allowed: {', '.join(list_datasets())}")
    stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    note = f"converted from released weights {Path(file).name} ({preset}, firing rule {cfg.firing_rule!r}); not trained here"
    meta = {"builder": ckpt_io.DEFAULT_BUILDER, "source": str(file), "released_preset": preset,
            "converted_at": stamp, "versions": ckpt_io.versions()}
    run = {"dataset": name, "limit": None, "time_bins": None, "dataset_options": {}, "epochs": 0, "seed": 0,
           "preset": cfg.name, "notes": [note]}
    out.mkdir(parents=True)
    ckpt_io.write_json(out / "config.json", cfg.to_dict())
    ckpt_io.atomic_save(ckpt_io.make_checkpoint(model, cfg, meta), ckpt_io.run_checkpoint(out, new=True))
    ckpt_io.write_json(out / "run.json", run)
    ckpt_io.write_json(out / "metrics.json", {"preset": cfg.name, "dataset": name, "run_dir": str(out),
                                              "modes": cfg.modes, "source": str(file), "notes": [note],
                                              "versions": meta["versions"]})
    return out
