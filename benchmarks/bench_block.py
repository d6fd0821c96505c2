"""Spiking vs standard encoder block at the same token count (forward + backward, CPU).

The spiking block runs T steps of B samples; the standard block runs the same T·B·N tokens in
one step (T folded into the batch). Prints medians and the ratio measured in one run, the
standard block's achieved GFLOP/s (matmul FLOPs counted by ``torch.utils.flop_counter``) as a
share of the machine's fp32 matmul rate measured in the same run on the block's own GEMM shapes,
and a profile table (``--profile``) of where each block's time goes: matmul, norm, neuron,
copies (copy/contiguous/cat/fill), other elementwise.

    python benchmarks/bench_block.py [--dim 256 --tokens 64 --steps 4 --batch 8 --threads 2 --profile
                                      --json out.json]
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
from hstlab.layers import _norm_compiled
from hstlab.layers.block import HSTBlock
from hstlab.neurons import reset_state
from hstlab.runtime import cpu_model


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


CATEGORIES = {  # profiler op name -> category (first match wins); ops not listed count as "other"
    "matmul": ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::_addmm_activation"),
    "neuron": ("LIFMultiStep", "ALIFMultiStep"),
    "norm": ("_TokenBatchNormFn", "aten::native_layer_norm", "aten::native_batch_norm", "LayerNorm"),
    "copies": ("aten::copy_", "aten::clone", "aten::contiguous", "aten::cat", "aten::fill_", "aten::zero_",
               "aten::_to_copy", "aten::stack"),
}


def machine_matmul_gflops(shapes: list[tuple[int, int, int]], repeats: int = 7) -> float:
    """Best-of-median fp32 GEMM rate (GFLOP/s) over ``(m, k, n)`` shapes, measured now."""
    rates = []
    for m, k, n in shapes:
        a, b = torch.randn(m, k), torch.randn(k, n)
        out = torch.empty(m, n)
        torch.mm(a, b, out=out)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b, out=out)
            times.append(time.perf_counter() - t0)
        rates.append(2 * m * k * n / statistics.median(times) / 1e9)
    return max(rates)


def block_flops(block: torch.nn.Module, x: torch.Tensor) -> int:
    """Matmul FLOPs of one forward + backward (torch.utils.flop_counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    reset_state(block)
    with FlopCounterMode(display=False) as counter:
        block(x).sum().backward()
    block.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def profile_table(block: torch.nn.Module, x: torch.Tensor, repeats: int = 3) -> dict[str, float]:
    """Milliseconds per forward + backward by category (self CPU time of the profiled ops)."""
    from torch.profiler import profile

    time_block(block, x, 1, warmup=1)
    with profile() as prof:
        time_block(block, x, repeats, warmup=0)
    totals = dict.fromkeys((*CATEGORIES, "other"), 0.0)

    def category(name: str) -> str:
        return next((c for c, names in CATEGORIES.items() if any(name.startswith(n) for n in names)), "other")

    for event in prof.events():  # self time of every op, inside a neuron/norm node charged to that node
        cat, parent = category(event.name), event.cpu_parent
        while parent is not None:
            if category(parent.name) in ("neuron", "norm") and not parent.name.startswith("aten::"):
                cat = category(parent.name)
            parent = parent.cpu_parent
        totals[cat] += event.self_cpu_time_total / 1e3 / repeats
    return totals


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
    parser.add_argument("--profile", action="store_true", help="print where each block's time goes")
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

    # interleave the three so machine noise hits them alike; "torch BN" is the spiking block with
    # TokenBatchNorm on its torch ops (the compiled pass switched off), as before that pass existed
    spiking_times, standard_times, torch_bn_times = [], [], []
    for _ in range(max(1, args.repeats // 5)):
        spiking_times += time_block(spiking, x_spiking, 5)
        standard_times += time_block(standard, x_standard, 5)
        saved, _norm_compiled.MIN_NUMEL = _norm_compiled.MIN_NUMEL, 1 << 62
        try:
            torch_bn_times += time_block(spiking, x_spiking, 5)
        finally:
            _norm_compiled.MIN_NUMEL = saved
    result = {
        "tokens": args.steps * args.batch * args.tokens, "dim": args.dim, "threads": args.threads,
        "attention": args.attention,
        "spiking_ms": 1e3 * statistics.median(spiking_times),
        "standard_ms": 1e3 * statistics.median(standard_times),
    }
    result["ratio_spiking_over_standard"] = result["spiking_ms"] / result["standard_ms"]
    result["spiking_torch_bn_ms"] = 1e3 * statistics.median(torch_bn_times)
    result["ratio_spiking_torch_bn_over_standard"] = result["spiking_torch_bn_ms"] / result["standard_ms"]
    print(f"block fwd+bwd, {result['tokens']} tokens x {args.dim} ({args.steps} steps x {args.batch} samples), "
          f"{args.threads} threads, median of {len(spiking_times)}")
    print(f"  spiking ({args.attention}) {result['spiking_ms']:8.2f} ms")
    print(f"  standard (softmax) {result['standard_ms']:8.2f} ms")
    print(f"  spiking, torch BN  {result['spiking_torch_bn_ms']:8.2f} ms")
    print(f"  ratio spiking / standard: {result['ratio_spiking_over_standard']:.3f}  (target <= 1.05); "
          f"with the torch BN: {result['ratio_spiking_torch_bn_over_standard']:.3f}")
    tokens, d = args.steps * args.batch * args.tokens, args.dim
    rate = machine_matmul_gflops([(tokens, d, d), (tokens, d, 4 * d), (tokens, 4 * d, d)])
    flops = block_flops(standard, x_standard)
    achieved = flops / (result["standard_ms"] / 1e3) / 1e9
    result.update(machine_matmul_gflops=rate, standard_matmul_gflop=flops / 1e9, standard_gflops=achieved,
                  standard_share_of_matmul_rate=achieved / rate, cpu_model=cpu_model(), load_average=os.getloadavg())
    print(f"  machine fp32 matmul rate (this run, the block's GEMM shapes): {rate:.1f} GFLOP/s")
    print(f"  standard block: {flops / 1e9:.2f} GFLOP of matmul per fwd+bwd, {achieved:.1f} GFLOP/s = "
          f"{100 * achieved / rate:.0f} % of the matmul rate (goal >= 50 %)")
    print(f"  CPU {cpu_model()}, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.profile:
        tables = {"spiking": profile_table(spiking, x_spiking), "standard": profile_table(standard, x_standard)}
        result["profile_ms"] = tables
        print(f"  {'ms per fwd+bwd':<16}" + "".join(f"{c:>10}" for c in tables["spiking"]) + f"{'total':>10}")
        for name, table in tables.items():
            print(f"  {name:<16}" + "".join(f"{v:>10.1f}" for v in table.values()) + f"{sum(table.values()):>10.1f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
