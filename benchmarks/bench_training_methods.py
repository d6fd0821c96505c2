"""Training methods on digits-dvs: accuracy, firing rate and energy of each against the default.

Trains the preset once per method and seed with the same budget (epochs, samples, batch size,
learning rate: the recipe's unless a flag overrides it) and reports the mean and spread over
the seeds of the test accuracy, the validation firing rate and the energy per sample (45 nm
fp32, step-major; hstlab.energy_report). Methods:

    default     the preset as it is (LIF, cross-entropy)
    ilif        integer spikes, D = 4 (neuron="ilif")
    ternary     ternary spikes {-α, 0, α}, learned α (neuron="ternary")
    balance     adaptive threshold balancing, held (threshold_balance="hold")
    balance-learn  the same, thresholds learned after the warm-up
    tet         TET loss (λ = 0.05, φ = 1) on per-step logits
    rate-reg    firing-rate regulariser (weight 10, target 0.05)
    hoyer       Hoyer regulariser (weight 0.1)

    python benchmarks/bench_training_methods.py [--seeds 0,1,2] [--epochs N] [--limit N]
        [--methods default,tet] [--json runs/bench/methods.json]

A tiny budget (e.g. ``--epochs 1 --limit 64``) only shows that it runs; its numbers say
nothing about which method helps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import hstlab

hstlab.use_passive_threads()

from hstlab.config import HSTConfig  # noqa: E402
from hstlab.train.run import train_run  # noqa: E402

# method -> (config overrides, train_run keywords)
METHODS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "default": ({}, {}),
    "ilif": ({"neuron": "ilif", "spike_max": 4}, {}),
    "ternary": ({"neuron": "ternary"}, {}),
    "balance": ({"threshold_balance": "hold"}, {}),
    "balance-learn": ({"threshold_balance": "learn"}, {}),
    "tet": ({}, {"loss": "tet", "loss_options": {"lam": 0.05, "target": 1.0}}),
    "rate-reg": ({}, {"regulariser": "firing_rate", "regulariser_weight": 10.0, "regulariser_target": 0.05}),
    "hoyer": ({}, {"regulariser": "hoyer", "regulariser_weight": 0.1}),
}


def run_one(preset: str, method: str, seed: int, budget: dict[str, Any], out: Path) -> dict[str, Any]:
    overrides, options = METHODS[method]
    cfg = HSTConfig.from_preset(preset, **overrides)
    t0 = time.perf_counter()
    metrics = train_run(cfg, "digits-dvs", seed=seed, run_dir=out / f"{method}-s{seed}", **budget, **options)
    return {"test_accuracy": metrics["test_accuracy"], "val_firing_rate": metrics.get("val_firing_rate"),
            "energy_uj": (metrics["energy_per_sample_j"] or float("nan")) * 1e6,
            "seconds": time.perf_counter() - t0}


def summarise(rows: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    out = {}
    for key in rows[0]:
        values = [r[key] for r in rows if r[key] is not None]
        if values:
            out[key] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
    return out


def _cell(s: dict[str, tuple[float, float]], key: str, fmt: str) -> str:
    return f"{s[key][0]:{fmt}} ± {s[key][1]:{fmt}}" if key in s else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="hst-small")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated; known: {', '.join(METHODS)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, help="default: the recipe's")
    parser.add_argument("--limit", type=int, help="samples per split (default: all)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--json", help="write every run and the summary as JSON")
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"--methods {','.join(unknown)} unknown; known: {', '.join(METHODS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    budget = {k: v for k, v in (("epochs", args.epochs), ("limit", args.limit), ("batch_size", args.batch_size))
              if v is not None}
    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in methods:
            runs[method] = [run_one(args.preset, method, seed, budget, Path(tmp)) for seed in seeds]
    summary = {m: summarise(rows) for m, rows in runs.items()}
    print(f"{args.preset} on digits-dvs, seeds {args.seeds}, budget {budget or 'the recipe'}")
    print(f"{'method':14s} {'test acc':>15s} {'val rate':>15s} {'energy uJ':>17s} {'s/run':>7s}")
    for method, s in summary.items():
        print(f"{method:14s} {_cell(s, 'test_accuracy', '.3f'):>15s} {_cell(s, 'val_firing_rate', '.3f'):>15s} "
              f"{_cell(s, 'energy_uj', '.2f'):>17s} {s['seconds'][0]:7.1f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"budget": budget, "seeds": seeds, "runs": runs,
                                               "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
