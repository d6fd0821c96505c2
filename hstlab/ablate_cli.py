"""``hstlab ablate``: run a cumulative ablation (:mod:`hstlab.train.ablate`) and draw its waterfall
(:mod:`hstlab.viz`). It lives here, above both, so the training package never imports plotting."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hstlab.train.checks import RUN_DEFAULTS
from hstlab.train.cli import RECIPE_DEFAULT


def register(subparsers: Any) -> None:
    """Add ``ablate`` to the ``hstlab`` command line."""
    d = RUN_DEFAULTS
    p = subparsers.add_parser("ablate", help="cumulative ablation (baseline, +cpg, +tim, ...) with a waterfall chart")
    p.add_argument("--base", default="hst-small", help="base preset (components are switched off for the baseline)")
    p.add_argument("--dataset", default="digits-dvs", help="dataset name (hstlab data list)")
    p.add_argument("--steps", default="+cpg,+tim,+sew,+rsm",
                   help="comma-separated cumulative steps (known: +cpg,+tim,+sew,+rsm,+sdsa,+conv,+plif,+int8)")
    p.add_argument("--epochs", type=int, help="epochs per variant (default: 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/ablation", help="folder for the table, chart and run directories")
    p.add_argument("--limit", type=int, help="first N samples per split")
    p.add_argument("--batch-size", type=int, help=f"default: {RECIPE_DEFAULT} {d['batch_size']}")
    p.add_argument("--lr", type=float, help=f"default: {RECIPE_DEFAULT} {d['lr']}")
    p.set_defaults(func=cmd_ablate)


def cmd_ablate(args: argparse.Namespace) -> int:
    from hstlab.train.ablate import ablation_train_config, check_steps, run_ablation
    from hstlab.train.checks import check_args
    from hstlab.viz import save_ablation_waterfall

    flags = {"epochs": "--epochs", "limit": "--limit", "batch_size": "--batch-size", "lr": "--lr"}
    given = {name: getattr(args, name) for name in flags if getattr(args, name) is not None}
    check_args({**flags, "seed": "--seed"}, seed=args.seed, **given)
    steps = check_steps(args.steps)
    train_config = ablation_train_config(args.base, args.dataset, **given)
    df = run_ablation(args.base, args.dataset, steps=steps, train_config=train_config, seed=args.seed,
                      out_dir=args.out)
    save_ablation_waterfall(df, Path(args.out) / "ablation.html", title=f"Ablation: {args.base} on {args.dataset}")
    cols = ["variant", "status", "accuracy", "energy_j", "delta_accuracy", "energy_vs_baseline"]
    print(df[cols].to_string(index=False))
    for _, row in df[df["status"] != "ok"].iterrows():
        print(f"failed {row['variant']}: {row['error']}")
    print(f"wrote {Path(args.out) / 'ablation.csv'}, ablation.md, ablation.html")
    return 0
