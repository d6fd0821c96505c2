"""``hstlab export-nir RUN_DIR --out model.nir``: the NIR-expressible part of a trained model."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export-nir`` sub-command.

    Example:
        >>> parser = argparse.ArgumentParser(prog="hstlab")
        >>> register(parser.add_subparsers())
        >>> parser.parse_args(["export-nir", "runs/x", "--out", "m.nir", "--prefix"]).prefix
        True
    """
    p = subparsers.add_parser("export-nir", help="write a trained model (or its spiking stem) as a NIR graph")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory (its best checkpoint) or a checkpoint file")
    p.add_argument("--out", required=True, help="output file (.nir, HDF5)")
    p.add_argument("--prefix", action="store_true",
                   help="export the layers before the first one NIR cannot express, and say where it stops")
    p.add_argument("--stem", action="store_true", help="export only the tokenizer (spiking SPS stem)")
    p.add_argument("--dt", type=float, default=1e-4, help="seconds per time step (NIR LIF tau = tau * dt)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hstlab._optional import MissingDependency
    from hstlab.export.nir import export_nir

    try:
        result = export_nir(args.run_dir, args.out, prefix=args.prefix, stem=args.stem, dt=args.dt)
    except MissingDependency as err:
        print(f"hstlab export-nir: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {result.summary()}")
    return 0
