"""What ``energy_report`` costs next to a plain forward pass of the same batch (time and memory).

Times, interleaved in one process, an eval-mode ``torch.no_grad`` forward of the zoo's
``hst-small-digits-dvs`` on a batch of digits-dvs test samples and ``energy_report`` on the same
model and batch (step-major, and fused, which follows every Linear/Conv output to its readers). Peak memory is each variant's rise of the resident set above its level before the call,
sampled in a fresh subprocess (``--worker``) after the model and batch are loaded and one
warm-up forward ran (so a plain forward's own buffers are already resident).

    python benchmarks/bench_energy_cost.py [--batch 64 --repeat 7 --threads 2] [--json out.json]
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

from _memory import PeakRSS

from hstlab.runtime import cpu_model

VARIANTS = ("forward", "energy step-major", "energy fused")




def _setup(batch: int, threads: int):
    import torch

    import hstlab
    from hstlab import load_dataset
    from hstlab.data import time_first_collate

    torch.set_num_threads(threads)
    model = hstlab.load_pretrained("hst-small-digits-dvs").eval()
    test = load_dataset("digits-dvs", "test", time_bins=model.cfg.input_steps, limit=batch)
    x, _ = time_first_collate([test[i] for i in range(len(test))])
    return model, x


def _runner(model, x, variant: str):
    import torch

    from hstlab import energy_report

    if variant == "forward":
        def run() -> None:
            model.reset_state()
            with torch.no_grad():
                model(x)
            model.reset_state()
        return run
    dataflow = variant.split()[-1]
    return lambda: energy_report(model, x, dataflow=dataflow)


def worker(variant: str, batch: int, threads: int) -> dict:
    """Peak resident memory during one ``variant`` call above the resident memory before it
    (sampled every 0.5 ms by a thread; torch ops release the GIL)."""
    model, x = _setup(batch, threads)
    _runner(model, x, "forward")()  # warm-up: first-touch allocations of a plain pass
    with PeakRSS() as mem:
        _runner(model, x, variant)()
    return {"variant": variant, "peak_rise_mb": mem.rise_mb, "rss_before_mb": mem.before_mb,
            "input_mb": x.numel() * x.element_size() / 2**20}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.batch, args.threads)))
        return {}
    model, x = _setup(args.batch, args.threads)
    runs = {v: _runner(model, x, v) for v in VARIANTS}
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for i in range(args.repeat):
        order = VARIANTS[i % 3:] + VARIANTS[: i % 3]
        for v in order:
            t0, c0 = time.perf_counter(), time.process_time()
            runs[v]()
            times[v].append(time.perf_counter() - t0)
            cpu[v].append(time.process_time() - c0)
    memory = {}
    for v in VARIANTS:
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", v, "--batch",
                              str(args.batch), "--threads", str(args.threads)], capture_output=True, text=True,
                             env=os.environ.copy())
        if out.returncode != 0:
            raise SystemExit(f"memory worker {v!r} failed:\n{out.stderr[-2000:]}")
        memory[v] = json.loads(out.stdout.strip().splitlines()[-1])
    med = {v: statistics.median(t) * 1e3 for v, t in times.items()}
    med_cpu = {v: statistics.median(t) * 1e3 for v, t in cpu.items()}
    print(f"hst-small-digits-dvs, batch {tuple(x.shape)}, {args.threads} threads, median of {args.repeat}; "
          f"CPU {cpu_model()}; load average {os.getloadavg()[0]:.2f}")
    print(f"{'variant':<20}{'wall ms':>9}{'cpu ms':>9}{'x forward':>11}{'x (cpu)':>9}{'peak +MB':>10}")
    for v in VARIANTS:
        print(f"{v:<20}{med[v]:>9.1f}{med_cpu[v]:>9.1f}{med[v] / med['forward']:>11.2f}"
              f"{med_cpu[v] / med_cpu['forward']:>9.2f}{memory[v]['peak_rise_mb']:>10.1f}")
    print("target: energy_report <= 2x a plain forward")
    report = {"config": vars(args), "cpu_model": cpu_model(), "load_average": os.getloadavg(),
              "median_wall_ms": med, "median_cpu_ms": med_cpu, "memory": memory}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
