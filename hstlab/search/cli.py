"""``hstlab search``: the Pareto search over per-layer modes from the command line."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hstlab.search.objectives import DEFAULT_OBJECTIVES, SAMPLERS


def _items(kind: type) -> Any:
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(v.strip()) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of {kind.__name__}") from None
    return parse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``search`` sub-command.

    Example:
        >>> parser = argparse.ArgumentParser(prog="hstlab")
        >>> register(parser.add_subparsers())
        >>> parser.parse_args(["search", "--num-steps", "2,4"]).num_steps
        (2, 4)
    """
    p = subparsers.add_parser("search", help="multi-objective search (accuracy vs energy) over per-layer modes")
    p.add_argument("--preset", default="hst-small")
    p.add_argument("--dataset", default="digits-dvs")
    p.add_argument("--dir", default="runs/search", help="search directory (search.db, runs/, front.csv); "
                   "running again resumes")
    p.add_argument("--trials", type=int, default=20, help="trials to finish in --dir (earlier ones count)")
    p.add_argument("--epochs", type=int, default=2, help="per-trial budget in epochs")
    p.add_argument("--seconds", type=float, default=None, help="per-trial budget in training seconds")
    p.add_argument("--limit", type=int, default=None, help="samples per split")
    p.add_argument("--objectives", default=",".join(DEFAULT_OBJECTIVES))
    # checked by run_search (the error lists the allowed values); importing them here would load torch
    p.add_argument("--dataflow", default="step-major", help="step-major, time-batched or fused")
    p.add_argument("--energy-preset", default="45nm-fp32", help="energy preset (hstlab.ENERGY_PRESETS)")
    p.add_argument("--sampler", default="tpe", choices=list(SAMPLERS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-params", type=int, default=None, help="constraint: parameters")
    p.add_argument("--max-train-seconds", type=float, default=None, help="constraint: training seconds")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--augment-shift", type=int, default=None)
    space = p.add_argument_group("search space (comma-separated choices)")
    space.add_argument("--stem-modes", type=_items(str), default=None, help="spiking,standard")
    space.add_argument("--attn-modes", type=_items(str), default=None, help="spiking,standard")
    space.add_argument("--mlp-modes", type=_items(str), default=None, help="spiking,standard")
    space.add_argument("--kinds", type=_items(str), default=None, help="attention kinds of spiking layers (ssa,sdsa)")
    space.add_argument("--num-steps", type=_items(int), default=None, help="T values (2,4)")
    space.add_argument("--weight-bits", type=_items(int), default=None, help="(8,32)")
    space.add_argument("--membrane-bits", type=_items(int), default=None, help="(32)")
    space.add_argument("--mask-ratios", type=_items(float), default=None, help="(0)")
    p.add_argument("--plot", default=None, metavar="HTML", help="also save the interactive accuracy-energy plot")
    p.set_defaults(func=run)


SPACE_ARGS = {"stem_modes": "stem_modes", "attn_modes": "attn_modes", "mlp_modes": "mlp_modes",
              "kinds": "attention_kinds", "num_steps": "num_steps", "weight_bits": "weight_bits",
              "membrane_bits": "membrane_bits", "mask_ratios": "mask_ratios"}


def _print_trial(row: dict[str, Any]) -> None:
    acc, energy = row.get("val_accuracy"), row.get("energy_per_sample_j")
    scores = f"val acc {acc:.3f}  energy {energy * 1e6:.3f} µJ  " if acc is not None and energy is not None else ""
    print(f"trial {row['number']:3d}  {row['design']:12s} {row['kinds']:20s} T={row['num_steps']} "
          f"w{row['weight_bits']}/m{row['membrane_bits']}  {scores}{row['status']}", flush=True)


def run(args: argparse.Namespace) -> int:
    from hstlab._optional import MissingDependency
    from hstlab.search import SearchSpace, run_search

    space = SearchSpace(**{field: getattr(args, arg) for arg, field in SPACE_ARGS.items()
                           if getattr(args, arg) is not None})
    train_options = {k: getattr(args, k) for k in ("batch_size", "lr", "augment_shift") if getattr(args, k) is not None}
    try:
        result = run_search(args.preset, args.dataset, search_dir=args.dir, n_trials=args.trials, space=space,
                            objectives=args.objectives, epochs=args.epochs, seconds=args.seconds, limit=args.limit,
                            dataflow=args.dataflow, energy_preset=args.energy_preset, sampler=args.sampler,
                            seed=args.seed, max_params=args.max_params, max_train_seconds=args.max_train_seconds,
                            train_options=train_options, on_trial=_print_trial)
    except MissingDependency as err:
        print(f"hstlab search: error: {err}", file=sys.stderr)
        return 2
    print(f"\nPareto front ({len(result.front)} of {len(result.trials)} trials; design = stem|attention|MLP, "
          f"S spiking, T standard; test accuracy scored once per front model):")
    print(result.table())
    result.front.to_csv(result.search_dir / "front.csv", index=False)
    result.trials.to_csv(result.search_dir / "trials.csv", index=False)
    print(f"\nwrote {result.search_dir / 'front.csv'} and trials.csv; "
          f"run directories under {result.search_dir / 'runs'}")
    if args.plot:
        import holoviews as hv

        from hstlab.viz.search import pareto_plot

        hv.save(pareto_plot(result.trials), args.plot, backend="bokeh")
        print(f"wrote {args.plot}")
    return 0
