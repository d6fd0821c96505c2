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

A worker applies what ``Trainer.fit`` applies before training where its checkout has it (glibc
keeps freed memory for reuse: :func:`hstlab.runtime.keep_freed_memory`).

``--levers`` measures candidate speed levers of the spiking step on this tree instead (no baseline
checkout), each in its own worker, interleaved the same way: ``base`` (``Trainer._train_step``
with glibc's default allocator settings), ``malloc`` (``keep_freed_memory()`` first: the step's
large activations are no longer page-faulted in anew every step), ``no-meter`` (the spike-rate
meter's hooks removed: the most a cheaper meter could save), ``compile`` (``torch.compile`` of
the whole model with the numba LIF and BatchNorm calls left eager, which dynamo cannot trace;
its first step is the cold start) and ``batch2x`` (twice the batch: compare time per sample).
Each worker also reports system time, minor page faults per step, peak resident memory and the
losses of its steps, so a lever's results can be checked against ``base``'s.

    python benchmarks/bench_train_step.py [--baseline 5f91d11 --batch 32 --steps 6 --rounds 3]
        [--json runs/bench/train_step.json]
    python benchmarks/bench_train_step.py --levers base,no-meter,malloc,compile,batch2x
"""

from __future__ import annotations

import os
import resource

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
LEVERS = ("base", "no-meter", "malloc", "compile", "batch2x")


def _compile_model(trainer) -> None:
    """``torch.compile`` the trainer's model; the numba-backed neuron and norm calls stay eager."""
    import torch

    import hstlab.layers.norm as norm
    import hstlab.neurons.lif as lif

    for cls in (lif.LIF, lif.PLIF, lif.ALIF):  # dynamo fails inside numba's dispatcher otherwise
        cls.forward = torch.compiler.disable(cls.forward)
    norm._train_rows = torch.compiler.disable(norm._train_rows)
    trainer.ddp_model = torch.compile(trainer.model)

def worker(args: argparse.Namespace) -> dict:
    """Time ``args.steps`` training steps of one model on whichever hstlab is first on the path."""
    import torch

    import hstlab
    from hstlab import Trainer, build_model, load_dataset
    from hstlab.data import RandomShift
    from hstlab.presets import PRESETS

    lever = args.lever or "base"
    import hstlab.runtime

    # as Trainer.fit does before training, where this checkout has it; lever "base" keeps glibc's default
    if lever == "malloc" or (args.lever is None and hasattr(hstlab.runtime, "keep_freed_memory")):
        hstlab.runtime.keep_freed_memory()
    batch = args.batch * (2 if lever == "batch2x" else 1)
    torch.set_num_threads(args.threads)
    cfg = PRESETS.get(args.preset)()
    if args.worker == "standard":
        cfg = cfg.with_modes("T" * cfg.n_layer)  # the standard twin of bench_targets.py: same T, every layer standard
    data = load_dataset("digits-dvs", split="train", time_bins=cfg.input_steps, limit=batch)
    torch.manual_seed(0)
    # 100 epochs of one batch: the schedule keeps lr > 0 over the timed steps, so losses move
    trainer = Trainer(build_model(cfg), cfg, data, data, epochs=100, batch_size=batch, lr=5e-3,
                      measure_energy=False, augment=RandomShift(2), bn_recalibration_batches=0)
    if lever == "no-meter":
        trainer.meter.close()
    if lever == "compile":
        _compile_model(trainer)
    samples = [data[i] for i in range(batch)]
    collate = []
    for _ in range(3):
        t0 = time.perf_counter()
        x, y = trainer.collate_fn(samples)
        collate.append(time.perf_counter() - t0)
    wall, cpu, sys_cpu, faults, losses, first = [], [], [], [], [], {}
    for i in range(args.warmup + args.steps):
        r0, t0, c0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), time.process_time()
        ch0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        loss, _ = trainer._train_step(x, y)
        t1, c1, r1 = time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
        losses.append(loss)
        if i == 0:  # the cold start: numba loads its loops, torch.compile compiles (in worker processes too)
            ch1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            first = {"wall_s": t1 - t0, "cpu_s": c1 - c0,
                     "children_cpu_s": ch1.ru_utime + ch1.ru_stime - ch0.ru_utime - ch0.ru_stime}
        if i >= args.warmup:
            wall.append(t1 - t0)
            cpu.append(c1 - c0)
            faults.append(r1.ru_minflt - r0.ru_minflt)
            sys_cpu.append(r1.ru_stime - r0.ru_stime)
    return {"hstlab": str(Path(hstlab.__file__).parent), "wall_s": wall, "cpu_s": cpu,
            "sys_s": sys_cpu, "minflt": faults, "losses": losses,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "first_step": first, "batch": batch,
            "collate_s": statistics.median(collate), "shape": list(x.shape)}


def baseline_tree(commit: str) -> Path:
    """A git worktree of ``commit`` under runs/bench/ (created once, reused)."""
    path = ROOT / "runs" / "bench" / f"baseline-{commit}"
    if not (path / "hstlab").is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), commit],
                       check=True, capture_output=True)
    return path


def run_worker(tree: Path, model: str, args: argparse.Namespace, lever: str | None = None) -> dict:
    from hstlab.data.registry import data_dir

    env = {**os.environ, "PYTHONPATH": str(tree), "HSTLAB_DATA": str(data_dir())}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", model, "--preset", args.preset,
           "--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--threads", str(args.threads)] + (["--lever", lever] if lever else [])
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
    parser.add_argument("--levers", metavar="LIST", help=f"comma-separated, of {', '.join(LEVERS)}: "
                        "measure these levers of the spiking step on this tree (no baseline)")
    parser.add_argument("--worker", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--lever", choices=LEVERS, help=argparse.SUPPRESS)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if min(args.batch, args.steps, args.rounds, args.threads) < 1 or args.warmup < 0:
        parser.error("--batch, --steps, --rounds and --threads must be >= 1, --warmup >= 0")
    if args.worker:
        print(json.dumps(worker(args)))
        return {}
    if args.levers:
        levers = [name.strip() for name in args.levers.split(",") if name.strip()]
        unknown = [name for name in levers if name not in LEVERS]
        if unknown or not levers:
            parser.error(f"--levers: unknown {unknown}; choose from {', '.join(LEVERS)}")
        return compare_levers(levers, args)

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


def compare_levers(levers: list[str], args: argparse.Namespace) -> dict:
    """Interleaved rounds of the spiking step with each lever; medians, per-sample times and loss checks."""
    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {name: [] for name in levers}
    for r in range(args.rounds):
        for name in levers[r % len(levers):] + levers[: r % len(levers)]:
            res = run_worker(ROOT, "spiking", args, name)
            runs[name].append(res)
            print(f"  round {r + 1}: {name:<9} median step {statistics.median(res['wall_s']) * 1e3:7.1f} ms wall, "
                  f"{statistics.median(res['cpu_s']) * 1e3:7.1f} ms cpu, first step {res['first_step']['wall_s']:.1f} s",
                  flush=True)
    load_after = os.getloadavg()
    rows = {}
    for name, results in runs.items():
        batch = results[0]["batch"]
        wall = statistics.median([w for res in results for w in res["wall_s"]]) * 1e3
        cpu = statistics.median([c for res in results for c in res["cpu_s"]]) * 1e3
        rows[name] = {
            "batch": batch, "wall_ms": wall, "cpu_ms": cpu, "cpu_ms_per_sample": cpu / batch,
            "wall_ms_per_sample": wall / batch,
            "sys_ms": statistics.median([c for res in results for c in res["sys_s"]]) * 1e3,
            "peak_rss_mb": statistics.median([res["peak_rss_mb"] for res in results]),
            "minflt_per_step": statistics.median([f for res in results for f in res["minflt"]]),
            "first_step_wall_s": statistics.median([res["first_step"]["wall_s"] for res in results]),
            "first_step_cpu_s": statistics.median([res["first_step"]["cpu_s"] + res["first_step"]["children_cpu_s"]
                                                   for res in results]),
            "losses": results[0]["losses"],
            "losses_agree_across_rounds": all(res["losses"] == results[0]["losses"] for res in results),
        }
    base = rows.get("base")
    print(f"\n{args.preset} spiking training step, batch {args.batch}, {args.threads} threads, {args.rounds} rounds x "
          f"{args.steps} steps (+{args.warmup} warm-up); CPU {cpu_model()}; load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"{'lever':<9}{'batch':>6}{'wall ms':>9}{'cpu ms':>9}{'cpu/sample':>11}{'vs base cpu':>12}"
          f"{'sys ms':>7}{'faults':>8}{'1st step s':>11}{'1st cpu s':>10}  max |loss - base|")
    for name, row in rows.items():
        speed = base["cpu_ms_per_sample"] / row["cpu_ms_per_sample"] if base else float("nan")
        if base and row["batch"] == base["batch"]:
            diff = max(abs(a - b) for a, b in zip(row["losses"], base["losses"], strict=True))
            row["max_loss_diff_vs_base"] = diff
            diff_text = f"{diff:.2e}"
        else:
            diff_text = "(other batch)"
        row["speedup_cpu_per_sample_vs_base"] = speed
        print(f"{name:<9}{row['batch']:>6}{row['wall_ms']:>9.1f}{row['cpu_ms']:>9.1f}{row['cpu_ms_per_sample']:>11.2f}"
              f"{speed:>11.2f}x{row['sys_ms']:>7.1f}{row['minflt_per_step']:>8.0f}{row['peak_rss_mb']:>8.0f}{row['first_step_wall_s']:>11.1f}"
              f"{row['first_step_cpu_s']:>10.1f}  {diff_text}")
    report = {"config": vars(args), "cpu_model": cpu_model(), "load_average_before": load_before,
              "load_average_after": load_after, "levers": rows}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"saved {args.json}")
    return report


if __name__ == "__main__":
    main()
