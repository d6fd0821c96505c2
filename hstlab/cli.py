"""The ``hstlab`` command line: model building here, other areas mount their own sub-commands."""

from __future__ import annotations

import argparse
import importlib
import sys

# each module exposes register(subparsers) and is imported only when the CLI runs
AREA_COMMANDS = ("hstlab.data.cli", "hstlab.train.cli", "hstlab.energy.cli", "hstlab.ui.cli",
                 "hstlab.zoo.cli", "hstlab.released_cli", "hstlab.ablate_cli", "hstlab.search.cli", "hstlab.export.cli",
                 "hstlab.generate_cli")


def _cmd_presets(args: argparse.Namespace) -> int:
    from hstlab.presets import list_presets

    print("\n".join(list_presets()))
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from hstlab.config import HSTConfig

    cfg = HSTConfig.from_preset(args.preset)
    if args.modes:
        cfg = cfg.with_modes(args.modes)
    print(cfg.to_json())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """Build a preset, run one forward on example input, print what is inside."""
    import torch

    from hstlab.config import HSTConfig
    from hstlab.layers.norm import calibrate_batchnorm
    from hstlab.model import build_model, example_input
    from hstlab.recorder import Recorder

    cfg = HSTConfig.from_preset(args.preset)
    if args.modes:
        cfg = cfg.with_modes(args.modes)
    model = build_model(cfg).eval()
    x = example_input(cfg, batch_size=args.batch_size)
    calibrate_batchnorm(model, x)  # untrained: initial BN statistics would silence eval mode
    with torch.no_grad(), Recorder(model) as rec:
        logits = model(x)
    params = sum(p.numel() for p in model.parameters())
    print(f"preset {cfg.name}: {params:,} parameters, modes {cfg.modes}, input {tuple(x.shape)} -> "
          f"{tuple(logits.shape)} (untrained; BatchNorm calibrated on this input)")
    for name, spikes in rec.spikes.items():
        print(f"  {name:45s} firing rate {spikes.mean().item():.3f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from hstlab import __version__

    parser = argparse.ArgumentParser(prog="hstlab", description="Hybrid SNN-Transformer workbench")
    parser.add_argument("--version", action="version", version=f"hstlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("presets", help="list model presets")
    p.set_defaults(func=_cmd_presets)
    p = sub.add_parser("config", help="print a preset's config as JSON")
    p.add_argument("preset")
    p.add_argument("--modes", help="one letter per layer: S spiking, T standard")
    p.set_defaults(func=_cmd_config)
    p = sub.add_parser("demo", help="build a preset and run one forward pass")
    p.add_argument("--preset", default="hst-small")
    p.add_argument("--modes")
    p.add_argument("--batch-size", type=int, default=2)
    p.set_defaults(func=_cmd_demo)
    for module_name in AREA_COMMANDS:
        importlib.import_module(module_name).register(sub)
    return parser


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command; a user error (:func:`hstlab.errors.is_user_error`) is one line on
    stderr and exit status 2, anything else (a bug) keeps its traceback."""
    from hstlab.errors import is_user_error, one_line

    try:
        return int(args.func(args) or 0)
    except Exception as err:
        if not is_user_error(err):
            raise
        print(f"hstlab {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    from hstlab.runtime import use_passive_threads

    if "torch" not in sys.modules:  # called in-process (tests, notebooks): too late, leave it
        use_passive_threads()  # before any sub-command imports torch
    return run_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
