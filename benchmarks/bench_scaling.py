"""How a training step's time and peak memory grow with T, tokens and width, spiking vs standard.

A step is forward + backward + AdamW on a stack of ``--layers`` HST-Net encoder blocks (the part
of the model that T, tokens and width scale; the stem and head are left out), with input
``[T, B, N, D]``: binary spikes (20 % ones) for the spiking blocks, Gaussian values for the
standard ones (the same ``HSTConfig`` with every layer standard, same T). Each point runs in a
fresh subprocess (``--worker``): median step time over ``--steps`` after one warm-up, and the
peak rise of the resident set during the timed steps above its level after the warm-up (sampled
every 0.5 ms), i.e. the step's activations, gradients and temporaries.

The default varies one factor at a time from T=4, N=64, D=256 (T 4→8→16, tokens 64→128→256,
width 256→512); ``--full`` runs the whole grid T × tokens × width.

    python benchmarks/bench_scaling.py [--batch 8 --steps 3 --threads 2 --full] [--json out.json]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP; see hstlab/__init__.py

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _memory import PeakRSS

from hstlab.runtime import cpu_model

BASE = (4, 64, 256)  # T, tokens, width
ONE_AT_A_TIME = [BASE, (8, 64, 256), (16, 64, 256), (4, 128, 256), (4, 256, 256), (4, 64, 512)]
FULL = list(itertools.product((4, 8, 16), (64, 256), (256, 512)))




def worker(mode: str, T: int, tokens: int, width: int, args: argparse.Namespace) -> dict:
    import torch
    from torch import nn

    from hstlab import HSTConfig
    from hstlab.layers.block import HSTBlock
    from hstlab.neurons import reset_state

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = HSTConfig(n_layer=args.layers, n_embd=width, n_head=8, num_steps=T, pos_encoding="none")
    if mode == "standard":
        cfg = cfg.with_modes("T" * args.layers)
    blocks = nn.Sequential(*(HSTBlock(cfg, cfg.layer(i)) for i in range(args.layers))).train()
    opt = torch.optim.AdamW(blocks.parameters(), lr=1e-3)
    shape = (T, args.batch, tokens, width)
    x = (torch.rand(shape) < 0.2).float() if mode == "spiking" else torch.randn(shape)

    def step() -> None:
        reset_state(blocks)
        opt.zero_grad(set_to_none=True)
        blocks(x).square().mean().backward()
        opt.step()

    step()  # warm-up (numba loads its loops, the allocator grows)
    wall, cpu = [], []
    with PeakRSS() as mem:
        for _ in range(args.steps):
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return {"wall_ms": statistics.median(wall) * 1e3, "cpu_ms": statistics.median(cpu) * 1e3,
            "peak_rise_mb": mem.rise_mb, "rss_after_warmup_mb": mem.before_mb}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="the whole grid instead of one factor at a time")
    parser.add_argument("--worker", nargs=4, metavar=("MODE", "T", "TOKENS", "WIDTH"), help=argparse.SUPPRESS)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if min(args.batch, args.layers, args.steps, args.threads) < 1:
        parser.error("--batch, --layers, --steps and --threads must be >= 1")
    if args.worker:
        mode, *dims = args.worker
        print(json.dumps(worker(mode, *map(int, dims), args)))
        return {}
    points = FULL if args.full else ONE_AT_A_TIME
    rows = []
    print(f"training step of {args.layers} encoder blocks, batch {args.batch}, {args.threads} threads, "
          f"median of {args.steps}; CPU {cpu_model()}; load average {os.getloadavg()[0]:.2f}")
    print(f"{'T':>3}{'tokens':>7}{'width':>6}  {'spiking ms':>11}{'cpu ms':>8}{'peak +MB':>9}  "
          f"{'standard ms':>12}{'cpu ms':>8}{'peak +MB':>9}  {'ratio':>6}")
    for T, tokens, width in points:
        row = {"T": T, "tokens": tokens, "width": width}
        for mode in ("spiking", "standard"):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", mode, str(T), str(tokens), str(width),
                   "--batch", str(args.batch), "--layers", str(args.layers), "--steps", str(args.steps),
                   "--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
            if out.returncode != 0:
                raise SystemExit(f"worker {mode} T={T} N={tokens} D={width} failed:\n{out.stderr[-2000:]}")
            row[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        s, d = row["spiking"], row["standard"]
        row["ratio_cpu"] = s["cpu_ms"] / d["cpu_ms"]
        rows.append(row)
        print(f"{T:>3}{tokens:>7}{width:>6}  {s['wall_ms']:>11.1f}{s['cpu_ms']:>8.1f}{s['peak_rise_mb']:>9.1f}  "
              f"{d['wall_ms']:>12.1f}{d['cpu_ms']:>8.1f}{d['peak_rise_mb']:>9.1f}  {row['ratio_cpu']:>6.2f}", flush=True)
    print("ratio: spiking / standard CPU time per step")
    report = {"config": {k: v for k, v in vars(args).items() if k != "worker"}, "cpu_model": cpu_model(),
              "load_average": os.getloadavg(), "rows": rows}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
