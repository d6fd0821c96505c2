"""Spiking vs standard encoder block at the same token count (forward + backward, CPU).

The spiking block runs T steps of B samples; the standard block runs the same T·B·N tokens in
one step (T folded into the batch). Prints medians and the ratio measured in one run.

    python benchmarks/bench_block.py [--dim 256 --tokens 64 --steps 4 --batch 8 --threads 2 --json out.json]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP; see hstlab/__init__.py

import argparse
import json
import statistics
import time

import torch

from hstlab import HSTConfig
from hstlab.layers.block import HSTBlock
from hstlab.neurons import reset_state


def time_block(block: torch.nn.Module, x: torch.Tensor, repeats: int, warmup: int = 3) -> list[float]:
    times = []
    for i in range(warmup + repeats):
        block.zero_grad(set_to_none=True)
        reset_state(block)
        start = time.perf_counter()
        block(x).sum().backward()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--attention", default="ssa")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cfg = HSTConfig(n_layer=1, n_embd=args.dim, n_head=args.heads, num_steps=args.steps,
                    attention=args.attention, pos_encoding="none")
    spiking = HSTBlock(cfg, cfg.layer(0)).train()
    std_cfg = cfg.with_modes("T")
    standard = HSTBlock(std_cfg, std_cfg.layer(0)).train()
    x_spiking = (torch.rand(args.steps, args.batch, args.tokens, args.dim) < 0.2).float().requires_grad_()
    x_standard = torch.randn(1, args.steps * args.batch, args.tokens, args.dim).requires_grad_()

    # interleave the two so machine noise hits both alike
    spiking_times, standard_times = [], []
    for _ in range(args.repeats // 5):
        spiking_times += time_block(spiking, x_spiking, 5)
        standard_times += time_block(standard, x_standard, 5)
    result = {
        "tokens": args.steps * args.batch * args.tokens, "dim": args.dim, "threads": args.threads,
        "attention": args.attention,
        "spiking_ms": 1e3 * statistics.median(spiking_times),
        "standard_ms": 1e3 * statistics.median(standard_times),
    }
    result["ratio_spiking_over_standard"] = result["spiking_ms"] / result["standard_ms"]
    print(f"block fwd+bwd, {result['tokens']} tokens x {args.dim} ({args.steps} steps x {args.batch} samples), "
          f"{args.threads} threads, median of {len(spiking_times)}")
    print(f"  spiking ({args.attention}) {result['spiking_ms']:8.2f} ms")
    print(f"  standard (softmax) {result['standard_ms']:8.2f} ms")
    print(f"  ratio spiking / standard: {result['ratio_spiking_over_standard']:.3f}  (target <= 1.05)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
