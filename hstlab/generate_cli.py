"""``hstlab generate RUN_DIR --prompt TEXT``: continue a text with a trained character model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

CHARACTER_DATASETS = ("text-chars",)


def register(subparsers: Any) -> None:
    """Add the ``generate`` sub-command.

    Example:
        >>> parser = argparse.ArgumentParser(prog="hstlab")
        >>> register(parser.add_subparsers())
        >>> parser.parse_args(["generate", "runs/x", "--prompt", "The "]).steps
        200
    """
    p = subparsers.add_parser("generate", help="continue a prompt with a character model trained on text-chars")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory of a character model (hstlab train ... "
                   "--dataset text-chars)")
    p.add_argument("--prompt", required=True, help="text to continue (characters of the training text)")
    p.add_argument("--steps", type=int, default=200, help="characters to generate (default 200)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature; 0: always the "
                   "most likely character (default 1)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k most likely characters only")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    p.set_defaults(func=cmd_generate)


def run_dataset(run_dir: Path) -> str | None:
    """The dataset a run trained on (``run.json``), None when the run does not record it."""
    from hstlab.train.checkpoint import read_json

    path = run_dir / "run.json"
    return read_json(path).get("dataset") if path.is_file() else None


def cmd_generate(args: argparse.Namespace) -> int:
    from hstlab.generate import generate
    from hstlab.train.checkpoint import load_checkpoint

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"RUN_DIR {str(run_dir)!r} is not a directory (a run directory written by "
                                "hstlab train)")
    dataset = run_dataset(run_dir)
    if dataset is not None and dataset not in CHARACTER_DATASETS:
        raise ValueError(f"RUN_DIR {str(run_dir)!r} trained on dataset {dataset!r}; generate needs a character "
                         f"model (dataset: {', '.join(CHARACTER_DATASETS)})")
    model, _, _ = load_checkpoint(run_dir)
    text = generate(model, args.prompt, args.steps, args.temperature, args.top_k, seed=args.seed)
    print(args.prompt + text)
    return 0
