"""The training targets of the project, measured in one run on the built-in digits-dvs data.

1. accuracy: the default preset (hst-small, all spiking) and its hybrid-stem variant (standard
   conv stem, spiking blocks) trained within a time budget (an 18-epoch cosine schedule, 2-pixel
   shift augmentation); the model is picked on val, test is evaluated once. Repeated for
   ``--seeds`` (default 0,1,2): val/test move by a point between seeds on 270-sample splits,
   so means are reported.
2. energy: the same budget for the standard-mode twin (same config, every layer standard, same
   T: the stem runs on every step) and for int8-quantized versions of the spiking model and of
   the twin (weight_bits=8, trained quantization-aware, priced with the 45nm-int8 preset; the
   spiking ones also simulate 8- or 16-bit fixed-point membranes, priced at that width);
   energy per sample of each best model on the same test batch: compute, and compute + memory
   under each dataflow (weights and membranes moved every step, "step-major", or once per layer
   call, "time-batched", which "fused" extends with activations and neurons run in the epilogue
   of the Linear/Conv before them), and the ratios (of the seed means). Energy is measured on 64 test
   samples spread over the class-sorted split. ``--remeasure`` re-prices the best checkpoints of an
   earlier run in ``--out`` without training.
3. few-shot: 10 % of the training split; steps until val accuracy first reaches each of
   several targets (0.5 ... 0.9) for pure spiking vs hybrids (standard stem; first or last
   layer standard; a standard layer 0 also makes the stem standard).

    python benchmarks/bench_targets.py --budget 120 --json runs/bench/targets.json
    python benchmarks/bench_targets.py --which accuracy --remeasure --json runs/bench/targets.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP; see hstlab/__init__.py

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch
from torch.utils.data import Subset

from hstlab import HSTConfig, Trainer, build_model, energy_report, load_dataset
from hstlab.data import RandomShift, spread_indices
from hstlab.train import load_checkpoint
from hstlab.train.checkpoint import run_checkpoint


def load_splits(time_bins: int):
    return [load_dataset("digits-dvs", split=s, time_bins=time_bins, limit=None) for s in ("train", "val", "test")]


def train(cfg: HSTConfig, data, out: Path, *, epochs: int, batch_size: int, lr: float, seed: int,
          budget: float | None, shift: int, callbacks=None) -> tuple[dict, torch.nn.Module]:
    torch.manual_seed(seed)
    trainer = Trainer(build_model(cfg), cfg, *data, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                      run_dir=out, max_seconds=budget, callbacks=callbacks, measure_energy=False,
                      augment=RandomShift(shift) if shift else None)
    metrics = trainer.fit()
    model, _, _ = load_checkpoint(run_checkpoint(out))
    return metrics, model.eval()


def energy_of(model: torch.nn.Module, x: torch.Tensor, preset: str) -> dict:
    """Energy per sample with memory under each dataflow (compute is the same under all)."""
    step = energy_report(model, x, preset=preset, memory=True)
    batched, fused = step.with_dataflow("time-batched"), step.with_dataflow("fused")
    return {"total_j": step.total_j, "compute_j": step.compute_j, "memory_j": step.memory_j,
            "total_j_time_batched": batched.total_j, "memory_j_time_batched": batched.memory_j,
            "total_j_fused": fused.total_j, "memory_j_fused": fused.memory_j,
            "macs": step.macs, "acs": step.acs}


MEAN_KEYS = ("val_accuracy", "test_accuracy", "train_seconds", "wall_seconds", "total_j", "compute_j", "memory_j",
             "total_j_time_batched", "memory_j_time_batched", "total_j_fused", "memory_j_fused", "macs", "acs")


def mean_or_none(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.mean(known) if known else None


def trained_or_reloaded(args, variant: HSTConfig, data, run_dir: Path, seed: int) -> tuple[dict, torch.nn.Module]:
    """Train ``variant`` into ``run_dir``, or with ``--remeasure`` reload the best checkpoint a previous run left there."""
    if not args.remeasure:
        return train(variant, data, run_dir, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=seed,
                     budget=args.budget, shift=args.augment_shift)
    best = run_checkpoint(run_dir)
    if not best.is_file():
        raise SystemExit(f"--remeasure: no {best}; train it first (run without --remeasure)")
    model, cfg, _ = load_checkpoint(best)
    if cfg != variant:
        raise SystemExit(f"--remeasure: {run_dir} holds a different config than this variant")
    return json.loads((run_dir / "metrics.json").read_text()), model.eval()


def bench_accuracy_energy(args, cfg: HSTConfig, data, out: Path) -> dict:
    test_x = torch.stack([data[2][i][0] for i in spread_indices(len(data[2]), 64)], dim=1)  # [T, 64, C, H, W]
    standard = cfg.with_modes("T" * cfg.n_layer)
    variants = {
        "spiking": (cfg, "45nm-fp32"),
        "hybrid-stem": (dataclasses.replace(cfg, tokenizer_mode="standard"), "45nm-fp32"),
        "standard": (standard, "45nm-fp32"),
        "spiking-int8": (dataclasses.replace(cfg, weight_bits=8, membrane_bits=8), "45nm-int8"),
        "spiking-int8-m16": (dataclasses.replace(cfg, weight_bits=8, membrane_bits=16), "45nm-int8"),
        "standard-int8": (dataclasses.replace(standard, weight_bits=8), "45nm-int8"),
    }
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for seed in args.seeds:
        for name, (variant, preset) in variants.items():
            t0 = time.time()
            metrics, model = trained_or_reloaded(args, variant, data, out / f"{name}-s{seed}", seed)
            runs[name].append({
                "seed": seed, "val_accuracy": metrics["val_accuracy"], "test_accuracy": metrics["test_accuracy"],
                "train_seconds": metrics["train_seconds"],
                "wall_seconds": None if args.remeasure else time.time() - t0,
                "energy_preset": preset, **energy_of(model, test_x, preset),
            })
            print(name, json.dumps(runs[name][-1], indent=None), flush=True)
    results = {name: {**{key: mean_or_none([r[key] for r in per_seed]) for key in MEAN_KEYS},
                      "min_test_accuracy": min(r["test_accuracy"] for r in per_seed),
                      "max_test_accuracy": max(r["test_accuracy"] for r in per_seed),
                      "energy_preset": per_seed[0]["energy_preset"], "per_seed": per_seed}
               for name, per_seed in runs.items()}
    pairs = {"spiking": ("standard", "standard-int8"), "hybrid-stem": ("standard", "standard-int8"),
             "spiking-int8": ("standard-int8",), "spiking-int8-m16": ("standard-int8",)}  # int8 vs int8 only
    for model_name, twins in pairs.items():
        s = results[model_name]
        for twin in twins:
            results[f"ratio_{twin}_over_{model_name}"] = {
                "total": results[twin]["total_j"] / s["total_j"],
                "total_time_batched": results[twin]["total_j_time_batched"] / s["total_j_time_batched"],
                "total_fused": results[twin]["total_j_fused"] / s["total_j_fused"],
                "compute": results[twin]["compute_j"] / s["compute_j"],
                "accuracy_points": 100 * (results[twin]["test_accuracy"] - s["test_accuracy"]),
            }
    return results


def steps_to_target(cfg: HSTConfig, data, out: Path, args) -> dict:
    """Steps until val accuracy first reaches each of ``args.fewshot_targets`` (None: never)."""
    hits: dict[str, int | None] = {f"{t:.2f}": None for t in args.fewshot_targets}

    def watch(event) -> None:
        val = getattr(event, "val_accuracy", None)
        if event.kind != "epoch" or val is None:
            return
        for target in args.fewshot_targets:
            if hits[f"{target:.2f}"] is None and val >= target:
                hits[f"{target:.2f}"] = event.step

    metrics, _ = train(cfg, data, out, epochs=args.fewshot_epochs, batch_size=16, lr=args.lr, seed=args.seed,
                       budget=None, shift=args.augment_shift, callbacks=[watch])
    return {"steps_to_val_accuracy": hits, "best_val_accuracy": metrics["val_accuracy"],
            "test_accuracy": metrics["test_accuracy"], "train_seconds": metrics["train_seconds"]}


def bench_fewshot(args, cfg: HSTConfig, data, out: Path) -> dict:
    train_split = data[0]
    generator = torch.Generator().manual_seed(args.seed)
    subset = Subset(train_split, torch.randperm(len(train_split), generator=generator)[: len(train_split) // 10].tolist())
    few = (subset, data[1], data[2])
    results = {"train_samples": len(subset), "target_val_accuracies": args.fewshot_targets}
    variants = {"spiking": cfg, "hybrid-stem": dataclasses.replace(cfg, tokenizer_mode="standard"),
                "hybrid-TS": cfg.with_modes("T" + "S" * (cfg.n_layer - 1)),
                "hybrid-ST": cfg.with_modes("S" * (cfg.n_layer - 1) + "T")}
    for name, variant in variants.items():
        results[name] = steps_to_target(variant, few, out / f"fewshot-{name}", args)
        print("few-shot", name, results[name], flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="hst-small")
    parser.add_argument("--budget", type=float, default=120.0, help="training seconds per model")
    parser.add_argument("--epochs", type=int, default=18,
                        help="cosine schedule length; 18 epochs of hst-small take 90-104 s of the 120 s budget on 2 cores")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--seed", type=int, default=0, help="seed of the few-shot runs")
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the accuracy/energy runs (means are reported)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--augment-shift", type=int, default=2, help="RandomShift pixels for training batches (0: off)")
    parser.add_argument("--which", default="accuracy,fewshot")
    parser.add_argument("--fewshot-targets", default="0.5,0.6,0.7,0.8,0.9",
                        help="val accuracies whose first-reaching step is recorded")
    parser.add_argument("--fewshot-epochs", type=int, default=30)
    parser.add_argument("--out", default="runs/bench")
    parser.add_argument("--remeasure", action="store_true",
                        help="no training: re-measure the energy of the best checkpoints a previous run left in --out")
    parser.add_argument("--json")
    args = parser.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.fewshot_targets = [float(t) for t in args.fewshot_targets.split(",")]
    os.environ.pop("HSTLAB_SMOKE", None)  # real settings
    torch.set_num_threads(args.threads)
    cfg = HSTConfig.from_preset(args.preset)
    data = load_splits(cfg.input_steps)
    out = Path(args.out)
    results = {"preset": args.preset, "threads": args.threads, "budget_s": args.budget, "epochs": args.epochs,
               "lr": args.lr, "batch_size": args.batch_size, "seed": args.seed, "seeds": args.seeds, "augment_shift": args.augment_shift,
               "torch": torch.__version__}
    if "accuracy" in args.which:
        results["accuracy_energy"] = bench_accuracy_energy(args, cfg, data, out)
    if "fewshot" in args.which:
        results["fewshot"] = bench_fewshot(args, cfg, data, out)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
