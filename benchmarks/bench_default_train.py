"""The default training command, exactly as a new user types it, over several seeds.

Runs ``hstlab train --dataset digits-dvs --seed S`` (nothing else: preset, epochs, learning rate
and augmentation come from the recipe, ``hstlab recipes``) in a fresh process per seed, one after
the other, and reads each run's ``metrics.json``: test accuracy of the model picked on val, and
the training time the trainer measured (``train_seconds``: the epochs, without data loading,
model building and the final test). Prints one row per seed and the mean, with the CPU model and
the load average before and after, since wall time on a shared machine is only as good as its
quietness. Issue 15's target: mean test accuracy >= 98 % within 120 s of training on 2 cores.

    python benchmarks/bench_default_train.py --seeds 0,1,2 --json runs/bench/default_train.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from hstlab.runtime import cpu_model

TARGET_ACCURACY = 0.98
TARGET_SECONDS = 120.0


def train_one(seed: int, run_dir: Path) -> dict:
    """Run the default command for one seed in a fresh process; return its metrics and wall time."""
    command = [sys.executable, "-m", "hstlab", "train", "--dataset", "digits-dvs", "--seed", str(seed),
               "--run-dir", str(run_dir), "--force", "--no-progress"]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    metrics = json.loads((run_dir / "metrics.json").read_text())
    recipe = json.loads((run_dir / "run.json").read_text())["recipe"]
    return {"seed": seed, "command": " ".join(["hstlab", *command[3:7]]),
            "test_accuracy": metrics["test_accuracy"], "val_accuracy": metrics["val_accuracy"],
            "train_seconds": metrics["train_seconds"], "wall_seconds": wall,
            "epochs_completed": metrics["epochs_completed"], "recipe": recipe["train"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: 0,1,2)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/default-train"),
                        help="parent folder of the per-seed run directories")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    load_before = os.getloadavg()
    rows = [train_one(seed, args.out / f"s{seed}") for seed in seeds]
    load_after = os.getloadavg()
    mean_test = statistics.mean(r["test_accuracy"] for r in rows)
    mean_train = statistics.mean(r["train_seconds"] for r in rows)
    print(f"CPU: {cpu_model()}, torch threads per run: default (2 cores here: {os.cpu_count()}), "
          f"load average 1 min {load_before[0]:.2f} -> {load_after[0]:.2f}")
    print("| seed | val acc | test acc | training s | wall s (process) |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['seed']} | {r['val_accuracy']:.1%} | {r['test_accuracy']:.1%} | "
              f"{r['train_seconds']:.1f} | {r['wall_seconds']:.1f} |")
    print(f"| mean | {statistics.mean(r['val_accuracy'] for r in rows):.1%} | {mean_test:.1%} | "
          f"{mean_train:.1f} | {statistics.mean(r['wall_seconds'] for r in rows):.1f} |")
    met = mean_test >= TARGET_ACCURACY and max(r["train_seconds"] for r in rows) <= TARGET_SECONDS
    print(f"target (mean test >= {TARGET_ACCURACY:.0%}, every run <= {TARGET_SECONDS:.0f} s of training): "
          f"{'met' if met else 'NOT met'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cpu": cpu_model(), "load_before": load_before, "load_after": load_after,
                                         "runs": rows, "mean_test_accuracy": mean_test,
                                         "mean_train_seconds": mean_train, "target_met": met}, indent=2))


if __name__ == "__main__":
    main()
