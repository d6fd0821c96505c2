"""Every attention kind (and the EMSP MLP kind) trained on digits-dvs with one budget over seeds.

Each kind gets the same preset, recipe, epochs, data limit and seeds (issue 16's Results table).
Spiking kinds set ``attention=KIND`` on every layer; ``softmax`` is the standard network
(``with_modes("TT")``); ``emsp`` is SSA with the SEMM MLP. For each run: test accuracy of the best
validation checkpoint, energy per sample of that checkpoint on one validation batch (45nm-fp32)
under the step-major and the fused dataflow, and the training time. Prints a Markdown table of
the mean ± std over seeds and writes every run to ``--out``/results.csv (and .md).

    python benchmarks/bench_attention_kinds.py [--preset hst-small --epochs 4 --limit 0 --seeds 0 1 2
                                                --kinds ssa statten ... --out runs/bench-attention-kinds]

A tiny check that it runs: ``--epochs 1 --limit 16 --seeds 0 --kinds ssa statten``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP; see hstlab/__init__.py

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from hstlab import HSTConfig, energy_report
from hstlab.config import ATTENTION_KINDS
from hstlab.data import load_dataset, spread_indices, time_first_collate
from hstlab.train.checkpoint import load_checkpoint
from hstlab.train.run import train_run

EXTRA_KINDS = ("emsp",)  # MLP kinds, run on SSA attention


def kind_config(preset: str, kind: str) -> HSTConfig:
    """The network of one row: ``kind`` everywhere (softmax: all standard; emsp: the MLP kind)."""
    if kind == "softmax":
        return HSTConfig.from_preset(preset).with_modes("T" * HSTConfig.from_preset(preset).n_layer)
    if kind in EXTRA_KINDS:
        return HSTConfig.from_preset(preset, mlp_kind=kind)
    return HSTConfig.from_preset(preset, attention=kind)


def energy_pair(run_dir: str, batch: torch.Tensor) -> tuple[float, float]:
    """Energy per sample (J) of the run's best checkpoint: step-major and fused dataflows."""
    model, _, _ = load_checkpoint(run_dir)
    model.reset_state()
    report = energy_report(model, batch, dataflow="step-major")
    return report.total_j, report.with_dataflow("fused").total_j


def markdown_table(table: pd.DataFrame) -> str:
    """A Markdown table of ``table`` with its index as the first column (no tabulate needed)."""
    head = [table.index.name or "", *table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join([str(i), *map(str, r)]) + " |" for i, r in zip(table.index, table.to_numpy())]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="hst-small")
    parser.add_argument("--dataset", default="digits-dvs")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--limit", type=int, default=0, help="samples per split (0: all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--kinds", nargs="+", default=[*ATTENTION_KINDS, *EXTRA_KINDS],
                        choices=[*ATTENTION_KINDS, *EXTRA_KINDS])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/bench-attention-kinds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    limit = args.limit or None

    base = HSTConfig.from_preset(args.preset)
    val = load_dataset(args.dataset, "val", time_bins=base.num_steps, limit=limit)
    batch, _ = time_first_collate([val[i] for i in spread_indices(len(val), min(32, len(val)))])

    rows = []
    for kind in args.kinds:
        cfg = kind_config(args.preset, kind)
        for seed in args.seeds:
            start = time.perf_counter()
            metrics = train_run(cfg, args.dataset, epochs=args.epochs, seed=seed, limit=limit,
                                batch_size=args.batch_size, lr=args.lr, run_dir=out / f"{kind}-s{seed}", force=True)
            wall = time.perf_counter() - start
            step_major, fused = energy_pair(metrics["run_dir"], batch)
            accuracy = metrics.get("test_accuracy", metrics.get("val_accuracy"))
            rows.append({"kind": kind, "seed": seed, "test_accuracy": accuracy,
                         "val_accuracy": metrics.get("val_accuracy"), "energy_step_major_uj": step_major * 1e6,
                         "energy_fused_uj": fused * 1e6, "train_seconds": metrics.get("train_seconds"),
                         "wall_seconds": wall, "epochs": metrics.get("epochs_completed"), "steps": metrics.get("steps")})
            print(f"{kind:10s} seed {seed}: test acc {accuracy:.3f}, {step_major * 1e6:.2f} µJ step-major, "
                  f"{fused * 1e6:.2f} µJ fused, {metrics.get('train_seconds', float('nan')):.0f} s", flush=True)
    runs = pd.DataFrame(rows)
    runs.to_csv(out / "results.csv", index=False)
    numbers = ["test_accuracy", "energy_step_major_uj", "energy_fused_uj", "train_seconds"]
    summary = runs.groupby("kind", sort=False)[numbers].agg(["mean", "std"])
    table = pd.DataFrame({
        "test accuracy": [f"{m:.3f} ± {s:.3f}" for m, s in summary["test_accuracy"].fillna(0).to_numpy()],
        "µJ / sample (step-major)": [f"{m:.2f}" for m in summary["energy_step_major_uj"]["mean"]],
        "µJ / sample (fused)": [f"{m:.2f}" for m in summary["energy_fused_uj"]["mean"]],
        "train s": [f"{m:.0f}" for m in summary["train_seconds"]["mean"]],
    }, index=summary.index)
    header = (f"{args.preset} on {args.dataset}: {args.epochs} epochs, limit {limit or 'all'}, batch {args.batch_size}, "
              f"lr {args.lr}, seeds {args.seeds}, {args.threads} threads\n\n")
    text = header + markdown_table(table)
    (out / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
