"""``hstlab train``, ``recipes``, ``energy`` and ``card`` sub-commands (mounted by ``hstlab.cli``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hstlab.energy.constants import DATAFLOW_HELP, DATAFLOWS
from hstlab.train.checks import RUN_DEFAULTS
from hstlab.train.config import PARALLEL_NAMES, REGULARISER_NAMES
from hstlab.units import format_joules


def register(subparsers: Any) -> None:
    """Add ``train``, ``recipes``, ``energy`` and ``card`` to the ``hstlab`` command line."""
    p = subparsers.add_parser("train", help="train a preset on a dataset; writes a run directory",
                              description="Train an HST-Net preset. Also runs data-parallel under "
                                          "torchrun --nproc_per_node=N -m hstlab train ... With --resume, every "
                                          "setting comes from the run; a flag that differs from it is refused.")
    d = RUN_DEFAULTS
    p.add_argument("--preset", help=f"model preset (hstlab presets; default: {TRAIN_DEFAULTS['preset']})")
    p.add_argument("--dataset", help=f"dataset name (hstlab data list; default: {TRAIN_DEFAULTS['dataset']})")
    p.add_argument("--epochs", type=int, help=f"default: {RECIPE_DEFAULT} {d['epochs']}")
    p.add_argument("--modes", help="one letter per layer: S spiking, T standard (e.g. SSTT)")
    p.add_argument("--set", dest="config_set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a config field of the preset, repeatable (e.g. --set weight_bits=8 "
                        "--set membrane_bits=16; lists as JSON: --set sps_channels=[16,32,64])")
    p.add_argument("--schedule", metavar="EPOCH:MODES,...",
                   help="progressive conversion, e.g. 0:TT,2:ST,4:SS (modes switch at those epochs)")
    p.add_argument("--seed", type=int, help=f"default: {d['seed']}")
    p.add_argument("--out", help=f"parent folder of the new run directory (default: {TRAIN_DEFAULTS['out']})")
    p.add_argument("--run-dir", help="exact run directory (default: OUT/<preset>-<dataset>-s<seed>-<time>); "
                                     "one that holds a run is refused unless --force")
    p.add_argument("--force", action="store_true",
                   help="replace the run already in --run-dir (its run files are deleted once every setting checks out)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR from its last checkpoint (its run.json supplies every setting "
                        "but --max-seconds, --device and --no-progress)")
    p.add_argument("--batch-size", type=int, help=f"default: {RECIPE_DEFAULT} {d['batch_size']}")
    p.add_argument("--lr", type=float, help=f"peak learning rate (default: {RECIPE_DEFAULT} {d['lr']})")
    p.add_argument("--max-seconds", type=float, help="stop training after this many seconds")
    p.add_argument("--limit", type=int, help="first N samples per split (smoke runs)")
    p.add_argument("--time-bins", type=int, help="T of sequence datasets (frames use the preset's num_steps)")
    p.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset option, repeatable (e.g. neurons=16 trials=40)")
    p.add_argument("--loss", help="loss name, e.g. tet (default: from the recipe, else the dataset kind)")
    p.add_argument("--loss-option", action="append", default=[], metavar="KEY=VALUE",
                   help="loss option, repeatable (e.g. lam=0.05 target=1.0 for tet)")
    p.add_argument("--regulariser", choices=REGULARISER_NAMES,
                   help=f"spike regulariser added to the loss (default: {RECIPE_DEFAULT} none)")
    p.add_argument("--regulariser-weight", type=float, help=f"its weight (default: {d['regulariser_weight']})")
    p.add_argument("--regulariser-target", type=float,
                   help=f"firing_rate: target rate per neuron and step (default: {d['regulariser_target']})")
    p.add_argument("--checkpoint-every", type=int,
                   help=f"mid-epoch last checkpoint every K steps (0: off; default: {d['checkpoint_every']})")
    p.add_argument("--augment-shift", type=int, metavar="PIXELS",
                   help=f"move each training sample by up to PIXELS (event frames only; 0: off; default: {RECIPE_DEFAULT} 0)")
    p.add_argument("--parallel", choices=PARALLEL_NAMES,
                   help=f"under torchrun: ddp replicates the model, fsdp shards it (FSDP2; default: {d['parallel']})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when torch sees a GPU, else cpu)")
    p.add_argument("--tensorboard", metavar="LOG_DIR", help="also log loss, accuracy, lr, energy, per-layer "
                   "firing rates and the config to TensorBoard in LOG_DIR")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("recipes", help="training recipes: the defaults hstlab train uses per preset and dataset")
    p.set_defaults(func=cmd_recipes)

    p = subparsers.add_parser("energy", help="energy report of a run's best checkpoint on one validation batch")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--preset", dest="energy_preset", default="45nm-fp32", help="energy preset")
    p.add_argument("--dataflow", default="step-major", choices=list(DATAFLOWS),
                   help=f"{DATAFLOW_HELP} (default: step-major)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_energy)

    p = subparsers.add_parser("card", help="write an energy-aware model card (Markdown, HTML and JSON) into a run directory")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--twin", metavar="RUN_DIR", help="a trained standard-mode twin run (adds its accuracy)")
    p.add_argument("--out", help="folder for the card files (default: RUN_DIR)")
    p.add_argument("--energy-batch", type=int, default=32, help="samples per energy measurement")
    p.set_defaults(func=cmd_card)


# run arguments: flag -> train_run keyword (checked up front, passed on only when given)
TRAIN_FLAGS = {"--epochs": "epochs", "--seed": "seed", "--batch-size": "batch_size", "--lr": "lr",
               "--limit": "limit", "--time-bins": "time_bins", "--loss": "loss",
               "--checkpoint-every": "checkpoint_every", "--augment-shift": "augment_shift",
               "--regulariser": "regulariser", "--regulariser-weight": "regulariser_weight",
               "--regulariser-target": "regulariser_target", "--parallel": "parallel"}
TRAIN_DEFAULTS = {"preset": "hst-small", "dataset": "digits-dvs", "out": "runs"}  # when not resuming
RECIPE_DEFAULT = "the recipe of the preset on the dataset (hstlab recipes), else"


def train_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The ``train_run`` keywords of ``hstlab train``: each given flag, checked, named by its flag."""
    from hstlab.train.checks import RULES, check_arg

    kwargs: dict[str, Any] = {}
    for flag, name in TRAIN_FLAGS.items():
        value = getattr(args, name)
        if value is not None:
            kwargs[name] = check_arg(name, value, flag) if name in RULES else value
    if args.max_seconds is not None:
        check_arg("max_seconds", args.max_seconds, "--max-seconds")
    if args.data_option:
        kwargs["dataset_options"] = parse_options(args.data_option)
    if args.loss_option:
        kwargs["loss_options"] = parse_options(args.loss_option, "--loss-option")
    return kwargs


def cmd_recipes(args: argparse.Namespace) -> int:
    from hstlab.train.recipes import GENERIC, list_recipes

    for recipe in list_recipes():
        fields = {k: v for k, v in recipe.train.to_dict().items() if v != GENERIC.to_dict()[k]}
        print(f"{recipe.key}: {', '.join(f'{k}={v}' for k, v in fields.items())}\n    gives: {recipe.result}")
    print(f"any other pair: {', '.join(f'{k}={v}' for k, v in GENERIC.to_dict().items())}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from hstlab.train import distributed as dist_utils
    from hstlab.train.run import train_run

    kwargs = train_kwargs(args)
    device = {"device": dist_utils.check_device(args.device)} if args.device else {}
    if args.tensorboard:
        from hstlab.train.tensorboard import TensorBoardLogger

        kwargs["callbacks"] = [TensorBoardLogger(args.tensorboard)]  # a missing package: one-line error
    if args.resume:
        for flag, value in (("--set", args.config_set), ("--force", args.force), ("--out", args.out)):
            if value:
                raise ValueError(f"{flag} cannot change a resumed run: its run.json and config.json fix every "
                                 "setting (start a new run to change one)")
        metrics = train_run(args.preset, args.dataset, modes=args.modes, mode_schedule=parse_schedule(args.schedule),
                            run_dir=args.run_dir, resume=args.resume, max_seconds=args.max_seconds,
                            progress=not args.no_progress, **kwargs, **device)
    else:  # with --force, the summary's notes say what was replaced
        model: Any = args.preset or TRAIN_DEFAULTS["preset"]
        if args.config_set:
            from hstlab.config import HSTConfig

            overrides = HSTConfig.parse_overrides(args.config_set)
            model = HSTConfig.from_dict({**HSTConfig.from_preset(model).to_dict(), **overrides})
        metrics = train_run(
            model, args.dataset or TRAIN_DEFAULTS["dataset"], modes=args.modes,
            mode_schedule=parse_schedule(args.schedule), out=args.out or TRAIN_DEFAULTS["out"],
            run_dir=args.run_dir, force=args.force, max_seconds=args.max_seconds,
            progress=not args.no_progress, **kwargs, **device)
    if dist_utils.current_context().is_main:
        print(summary(metrics))
    dist_utils.shutdown()
    return 0


def parse_schedule(text: str | None) -> tuple[tuple[int, str], ...] | None:
    """``"0:TT,2:ST"`` -> ``((0, "TT"), (2, "ST"))``."""
    if not text:
        return None
    out = []
    for part in text.split(","):
        epoch, sep, modes = part.partition(":")
        if not sep or not epoch.strip().isdigit():
            raise ValueError(f"--schedule part {part!r} must be EPOCH:MODES, e.g. 0:TT")
        out.append((int(epoch), modes.strip()))
    return tuple(out)


def parse_options(items: list[str], flag: str = "--data-option") -> dict[str, Any]:
    """``["neurons=16", "bin_ms=5.0", "name=x"]`` -> ``{"neurons": 16, "bin_ms": 5.0, "name": "x"}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} {item!r} must be KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _f(value: Any, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def summary(metrics: dict[str, Any]) -> str:
    """The final lines ``hstlab train`` prints."""
    score = "accuracy" if metrics.get("val_accuracy") is not None else "bits_per_spike"
    lines = [
        f"run      {metrics.get('run_dir')}",
        (f"model    {metrics.get('preset')} modes {metrics.get('modes')} | "
         f"dataset {metrics.get('dataset')} | seed {metrics.get('seed')} | "
         f"world size {metrics.get('world_size')}"),
        (f"val  {score} {_f(metrics.get('val_' + score))}  loss {_f(metrics.get('val_loss'))}  "
         f"(best epoch {metrics.get('best_epoch')})"),
        f"test {score} {_f(metrics.get('test_' + score))}  loss {_f(metrics.get('test_loss'))}",
        (f"firing rate {_f(metrics.get('val_firing_rate'), '.3f')}  energy/sample "
         f"{format_joules(metrics.get('energy_per_sample_j'), missing='-')}  "
         f"train time {metrics.get('train_seconds', 0):.1f} s ({metrics.get('steps')} steps)"),
    ]
    lines += [f"note     {n}" for n in metrics.get("notes", [])]
    if metrics.get("stop_reason"):
        lines.append(f"stopped  {metrics['stop_reason']}")
    return "\n".join(lines)


def cmd_energy(args: argparse.Namespace) -> int:
    from hstlab.data.collate import spread_indices
    from hstlab.energy import energy_report
    from hstlab.train.checkpoint import load_checkpoint, read_json, run_checkpoint
    from hstlab.train.checks import check_arg
    from hstlab.train.run import load_splits
    from hstlab.train.trainer import default_collate

    check_arg("batch_size", args.batch_size, "--batch-size")
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {str(run_dir)!r} does not exist (a folder written by hstlab train)")
    run = read_json(run_dir / "run.json")
    if not isinstance(run.get("dataset"), str):
        raise ValueError(f"{str(run_dir / 'run.json')!r} names no dataset (field 'dataset')")
    best = run_checkpoint(run_dir)
    model, cfg, _meta = load_checkpoint(best)
    _, val, _, _ = load_splits(run["dataset"], cfg, run.get("limit"), run.get("dataset_options", {}),
                               run.get("time_bins"))
    x, _ = default_collate([val[i] for i in spread_indices(len(val), args.batch_size)])
    report = energy_report(model, x, preset=args.energy_preset, dataflow=args.dataflow)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print(f"{best}: {cfg.name} modes {cfg.modes}, val batch of {x.shape[1]} ({run['dataset']})")
        print(report.summary() if hasattr(report, "summary") else report.layers.to_string())
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    from hstlab.train.card import write_model_card
    from hstlab.train.checks import check_arg

    check_arg("batch_size", args.energy_batch, "--energy-batch")
    path = write_model_card(args.run_dir, twin_run_dir=args.twin, out_dir=args.out, energy_batch=args.energy_batch)
    print(f"wrote {path}, {path.with_suffix('.html')} and {path.with_suffix('.json')}")
    return 0
