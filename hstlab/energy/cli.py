"""``hstlab energy-model``: the energy table of a preset model on its example input.

(``hstlab energy RUN_DIR``, for a trained checkpoint, lives in ``hstlab/train/cli.py``.)
"""

from __future__ import annotations

import argparse
import json

from hstlab.energy.constants import DATAFLOW_HELP, DATAFLOWS, ENERGY_PRESETS, MEMORY_LEVELS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``energy-model`` sub-command.

    Example:
        >>> parser = argparse.ArgumentParser(prog="hstlab")
        >>> register(parser.add_subparsers())
        >>> parser.parse_args(["energy-model", "--model", "tiny"]).energy_preset
        '45nm-fp32'
    """
    parser = subparsers.add_parser("energy-model", help="energy per sample of an untrained model preset, layer by layer")
    parser.add_argument("--model", default="tiny", help="model preset name (see hstlab.list_presets())")
    parser.add_argument("--modes", default=None, help="one letter per layer: S spiking, T standard (e.g. SSTT)")
    parser.add_argument("--energy-preset", default="45nm-fp32", choices=list(ENERGY_PRESETS))
    parser.add_argument("--memory-level", default=None, choices=[m.name for m in MEMORY_LEVELS],
                        help="override the memory chosen from the weight size")
    parser.add_argument("--dataflow", default="step-major", choices=list(DATAFLOWS),
                        help=f"{DATAFLOW_HELP} (default: step-major)")
    parser.add_argument("--no-memory", action="store_true", help="count compute only")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--compare", default=None, metavar="MODES",
                        help="also measure these modes (e.g. TT) and print the ratios")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hstlab import HSTConfig, build_model, example_input
    from hstlab.energy.report import _json_value, energy_report
    from hstlab.train.checks import check_arg

    check_arg("batch_size", args.batch_size, "--batch-size")
    cfg = HSTConfig.from_preset(args.model)

    def measure(modes: str | None):
        from hstlab.layers.norm import calibrate_batchnorm

        variant = cfg.with_modes(modes) if modes else cfg
        model, x = build_model(variant).eval(), example_input(variant, batch_size=args.batch_size)
        calibrate_batchnorm(model, x)  # untrained: initial BN statistics would silence every layer
        return energy_report(model, x, preset=args.energy_preset, memory=not args.no_memory,
                             memory_level=args.memory_level, dataflow=args.dataflow)

    report = measure(args.modes)
    other = measure(args.compare) if args.compare else None
    if args.json:
        payload = report.to_dict()
        if other is not None:
            ratios = report.compare(other)
            payload["compare"] = {args.compare: {k: _json_value(v) for k, v in ratios.items()}}
        print(json.dumps(payload, indent=2))
        return 0
    print(f"untrained {args.model} (BatchNorm calibrated on its example input; for trained weights use "
          "hstlab energy RUN_DIR, or hstlab zoo run-dir NAME first)")
    print(report.summary())
    if other is not None:
        ratios = report.compare(other)
        print(f"vs modes {args.compare}: other/self energy = {ratios['energy_ratio']:.3g} "
              f"(compute {ratios['compute_j_other_over_self']:.3g}, memory {ratios['memory_j_other_over_self']:.3g})")
    print("Assumptions:")
    for line in report.assumptions:
        print(f"  - {line}")
    return 0
