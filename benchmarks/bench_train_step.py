"""One hst-small training step: spiking vs its standard twin, this tree vs a saved baseline commit.

Each measurement runs in a fresh subprocess (``--worker``) on one checkout: this working tree, or
a ``git worktree`` of ``--baseline`` (created under ``runs/bench/`` on first use) put first on
``PYTHONPATH``. A worker builds the model, a ``Trainer`` (AdamW, lr 5e-3, 2-pixel shift
augmentation, as the default recipe) and one batch of real digits-dvs samples, runs ``--warmup``
steps (numba loads or compiles its loops here), then times ``--steps`` calls of the trainer's own
step (augment, forward, loss, backward, gradient clipping, AdamW). It also times the collate of
one batch (the data path outside the step). Rounds interleave the four (checkout, model) pairs
in rotating order, so machine load hits them alike; medians over all rounds are reported with
the ratios measured in this run, the CPU model and the load average.

    python benchmarks/bench_train_step.py [--baseline 5f91d11 --batch 32 --steps 6 --rounds 3]
        [--json runs/bench/train_step.json]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP; see hstlab/__init__.py

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from hstlab.runtime import cpu_model

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("spiking", "standard")




def worker(args: argparse.Namespace) -> dict:
    """Time ``args.steps`` training steps of one model on whichever hstlab is first on the path."""
    import torch

    import hstlab
    from hstlab import Trainer, build_model, load_dataset
    from hstlab.data import RandomShift
    from hstlab.presets import PRESETS

    torch.set_num_threads(args.threads)
    cfg = PRESETS.get(args.preset)()
    if args.worker == "standard":
        cfg = cfg.with_modes("T" * cfg.n_layer)  # the standard twin of bench_targets.py: same T, every layer standard
    data = load_dataset("digits-dvs", split="train", time_bins=cfg.input_steps, limit=args.batch)
    torch.manual_seed(0)
    trainer = Trainer(build_model(cfg), cfg, data, data, epochs=1, batch_size=args.batch, lr=5e-3,
                      measure_energy=False, augment=RandomShift(2), bn_recalibration_batches=0)
    samples = [data[i] for i in range(args.batch)]
    collate = []
    for _ in range(3):
        t0 = time.perf_counter()
        x, y = trainer.collate_fn(samples)
        collate.append(time.perf_counter() - t0)
    wall, cpu = [], []
    for i in range(args.warmup + args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        trainer._train_step(x, y)
        if i >= args.warmup:
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return {"hstlab": str(Path(hstlab.__file__).parent), "wall_s": wall, "cpu_s": cpu,
            "collate_s": statistics.median(collate), "shape": list(x.shape)}


def baseline_tree(commit: str) -> Path:
    """A git worktree of ``commit`` under runs/bench/ (created once, reused)."""
    path = ROOT / "runs" / "bench" / f"baseline-{commit}"
    if not (path / "hstlab").is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), commit],
                       check=True, capture_output=True)
    return path


def run_worker(tree: Path, model: str, args: argparse.Namespace) -> dict:
    from hstlab.data.registry import data_dir

    env = {**os.environ, "PYTHONPATH": str(tree), "HSTLAB_DATA": str(data_dir())}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", model, "--preset", args.preset,
           "--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--threads", str(args.threads)]
    out = subprocess.run(cmd, env=env, cwd=str(tree), capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"worker {model} on {tree} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if Path(result["hstlab"]).resolve() != (tree / "hstlab").resolve():
        raise SystemExit(f"worker imported {result['hstlab']}, not {tree / 'hstlab'}")
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="5f91d11", help="commit to compare against (a git worktree)")
    parser.add_argument("--preset", default="hst-small")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per worker")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if min(args.batch, args.steps, args.rounds, args.threads) < 1 or args.warmup < 0:
        parser.error("--batch, --steps, --rounds and --threads must be >= 1, --warmup >= 0")
    if args.worker:
        print(json.dumps(worker(args)))
        return {}

    trees = {"current": ROOT, f"baseline {args.baseline}": baseline_tree(args.baseline)}
    pairs = [(label, model) for label in trees for model in MODELS]
    load_before = os.getloadavg()
    wall: dict[tuple[str, str], list[float]] = {p: [] for p in pairs}
    cpu: dict[tuple[str, str], list[float]] = {p: [] for p in pairs}
    collate: dict[tuple[str, str], list[float]] = {p: [] for p in pairs}
    for r in range(args.rounds):
        for label, model in pairs[r % len(pairs):] + pairs[: r % len(pairs)]:
            res = run_worker(trees[label], model, args)
            wall[(label, model)] += res["wall_s"]
            cpu[(label, model)] += res["cpu_s"]
            collate[(label, model)].append(res["collate_s"])
            print(f"  round {r + 1}: {label:>18} {model:<8} median step {statistics.median(res['wall_s']) * 1e3:7.1f} ms",
                  flush=True)
    med = {p: statistics.median(v) * 1e3 for p, v in wall.items()}
    med_cpu = {p: statistics.median(v) * 1e3 for p, v in cpu.items()}
    base = f"baseline {args.baseline}"
    print(f"\n{args.preset} training step, batch {args.batch}, {args.threads} threads, "
          f"{args.rounds} rounds x {args.steps} steps; CPU {cpu_model()}; "
          f"load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"{'checkout':>20} {'model':<9}{'wall ms':>9}{'cpu ms':>9}{'collate ms':>12}")
    for p in pairs:
        print(f"{p[0]:>20} {p[1]:<9}{med[p]:>9.1f}{med_cpu[p]:>9.1f}{statistics.median(collate[p]) * 1e3:>12.2f}")
    ratios = {
        "spiking_over_standard_current": med[("current", "spiking")] / med[("current", "standard")],
        "spiking_over_standard_baseline": med[(base, "spiking")] / med[(base, "standard")],
        "speedup_spiking_vs_baseline": med[(base, "spiking")] / med[("current", "spiking")],
        "speedup_standard_vs_baseline": med[(base, "standard")] / med[("current", "standard")],
        "speedup_spiking_vs_baseline_cpu": med_cpu[(base, "spiking")] / med_cpu[("current", "spiking")],
    }
    print(f"spiking / standard: {ratios['spiking_over_standard_current']:.2f}x now, "
          f"{ratios['spiking_over_standard_baseline']:.2f}x at {args.baseline} (target <= 1.1)")
    print(f"spiking step speed-up over {args.baseline}: {ratios['speedup_spiking_vs_baseline']:.2f}x wall, "
          f"{ratios['speedup_spiking_vs_baseline_cpu']:.2f}x cpu (target >= 1.5); standard: "
          f"{ratios['speedup_standard_vs_baseline']:.2f}x")
    report = {"config": vars(args), "cpu_model": cpu_model(), "load_average_before": load_before,
              "load_average_after": os.getloadavg(),
              "median_wall_ms": {f"{k[0]}/{k[1]}": v for k, v in med.items()},
              "median_cpu_ms": {f"{k[0]}/{k[1]}": v for k, v in med_cpu.items()}, "ratios": ratios}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"saved {args.json}")
    return report


if __name__ == "__main__":
    main()
