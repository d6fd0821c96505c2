"""Four character language models on text-chars with the same parameter budget (about 86-87 k):
bits per character and energy per character.

- ``spikegpt``: the ``spikegpt-small`` preset: all spiking, SpikeGPT-style layers (RWKV recurrence
  with a spiking gate, spiking channel mix), membrane shortcut, no positional encoding, width 50;
- ``ssa``: all spiking hst-small (Spikformer SSA, causal), width 64 (the zoo's text-chars model);
- ``standard``: hst-small with both layers standard (softmax attention, GELU MLP, standard stem);
- ``hybrid``: hst-small with layer 0 spiking and layer 1 standard ("ST").

Each trains with the text-chars recipe (64-character windows, batch 32, lr 2e-3, 3000 training
windows) for ``--epochs`` or until ``--budget`` seconds, for each seed; the model is picked on
val and scored once on test. Bits per character = test cross-entropy / ln 2. Energy per character
= energy per 64-character window (45 nm fp32, compute only and compute + memory, step-major) on
``--energy-windows`` test windows, divided by 64.

    python benchmarks/bench_text_chars.py --seeds 0,1,2 --json runs/bench/text_chars.json
    python benchmarks/bench_text_chars.py --seeds 0 --budget 240 --epochs 4   # one short seed
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP; see hstlab/__init__.py

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch

from hstlab import HSTConfig, energy_report, load_dataset
from hstlab.train import load_checkpoint, train_run

WINDOW = 64


def model_configs() -> dict[str, HSTConfig]:
    """The four models (the trainer fits tokenizer, head, seq_len and vocabulary to the data)."""
    small = HSTConfig.from_preset("hst-small")
    return {
        "spikegpt": HSTConfig.from_preset("spikegpt-small"),
        "ssa": small,
        "standard": small.with_modes("TT"),
        "hybrid": small.with_modes("ST"),
    }


def measure_energy(run_dir: Path, windows: int) -> dict[str, float]:
    model, cfg, _ = load_checkpoint(run_dir)
    test = load_dataset("text-chars", split="test", time_bins=WINDOW)
    x = torch.stack([test[i][0] for i in range(min(windows, len(test)))], dim=1)  # [L, B, V]
    compute = energy_report(model, x, memory=False)
    full = energy_report(model, x)
    return {"params": sum(p.numel() for p in model.parameters()),
            "compute_uj_per_char": compute.total_j * 1e6 / WINDOW,
            "total_uj_per_char": full.total_j * 1e6 / WINDOW,
            "unpriced": len(full.unpriced)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--models", default="spikegpt,ssa,standard,hybrid")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--budget", type=float, default=None, help="seconds of training per model and seed")
    parser.add_argument("--limit", type=int, default=3000, help="training windows per epoch")
    parser.add_argument("--energy-windows", type=int, default=32)
    parser.add_argument("--out", default="runs/bench/text-chars")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    configs = model_configs()
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[str, list[dict]] = {}
    for name in args.models.split(","):
        for seed in seeds:
            run_dir = Path(args.out) / f"{name}-s{seed}"
            start = time.perf_counter()
            metrics = train_run(configs[name], "text-chars", epochs=args.epochs, seed=seed, run_dir=run_dir,
                                batch_size=32, lr=2e-3, limit=args.limit, time_bins=WINDOW,
                                max_seconds=args.budget, force=True)
            row = {"seed": seed, "train_s": round(time.perf_counter() - start, 1),
                   "test_bpc": metrics["test_loss"] / math.log(2), "test_accuracy": metrics["test_accuracy"],
                   "val_bpc": metrics["val_loss"] / math.log(2), **measure_energy(run_dir, args.energy_windows)}
            results.setdefault(name, []).append(row)
            print(name, json.dumps(row), flush=True)
    summary = {}
    for name, rows in results.items():
        mean = {k: statistics.mean(r[k] for r in rows) for k in ("test_bpc", "test_accuracy",
                                                                   "compute_uj_per_char", "total_uj_per_char")}
        spread = {f"{k}_sd": statistics.stdev(r[k] for r in rows) if len(rows) > 1 else 0.0
                  for k in ("test_bpc",)}
        summary[name] = {"params": rows[0]["params"], "seeds": len(rows), **mean, **spread}
        print(f"{name:9s} params {rows[0]['params']:,}  test bpc {mean['test_bpc']:.3f}  "
              f"acc {mean['test_accuracy']:.3f}  energy/char {mean['compute_uj_per_char']:.3f} uJ compute, "
              f"{mean['total_uj_per_char']:.3f} uJ with memory  ({len(rows)} seed(s))")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "args": vars(args), "results": results, "summary": summary,
            "machine": {"cpu": platform.processor() or platform.machine(), "load": os.getloadavg(),
                        "torch_threads": torch.get_num_threads()}}, indent=1))


if __name__ == "__main__":
    main()
