"""Which layers should spike? One Pareto search (val accuracy vs energy per sample) on digits-dvs.

Searches hst-small's design space (stem mode; each layer's attention and MLP mode; the attention
kind of spiking attention; T; weight bits) with multi-objective TPE, every trial trained with
the same short recipe (a few epochs on a sample limit, no time cap), then prints the Pareto
front, which parts each front model makes spiking, and how often each part spikes on the front
vs among all trials. Resumable: run it again with the same arguments to finish a killed search.

    python benchmarks/bench_search.py --dir runs/bench/search --trials 32 --epochs 3 --limit 256 \
        --controls --json runs/bench/search.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP

import argparse
import json
import time
from pathlib import Path

import pandas as pd


def spiking_share(df: pd.DataFrame) -> dict[str, float]:
    """Fraction of rows whose stem / each layer's attention / each layer's MLP spikes."""
    out = {"stem": float((df["stem"] == "S").mean())}
    for part in ("attn", "mlp"):
        for i in range(len(df[part].iloc[0])):
            out[f"{part}{i}"] = float((df[part].str[i] == "S").mean())
    return out


def controls(args: argparse.Namespace) -> dict[str, dict]:
    """All-standard and all-spiking designs at T=2, 8-bit weights, same recipe: the ends the front is read against."""
    import dataclasses

    from hstlab import HSTConfig
    from hstlab.search.runner import _energy
    from hstlab.search.space import design_record
    from hstlab.train import train_run

    out = {}
    base = HSTConfig.from_preset(args.preset)
    for modes, stem in (("TT", "standard"), ("SS", "spiking")):
        cfg = dataclasses.replace(base.with_modes(modes), tokenizer_mode=stem, num_steps=2, weight_bits=8)
        run = Path(args.dir) / "controls" / f"{stem}-{modes}"
        if (run / "metrics.json").is_file():
            metrics = json.loads((run / "metrics.json").read_text())
        else:
            metrics = train_run(cfg, "digits-dvs", epochs=args.epochs, limit=args.limit, seed=0, run_dir=run,
                                lr=args.lr)
        energy, _ = _energy(run, "45nm-fp32", args.dataflow, 32)
        design = design_record(cfg)["design"]
        out[design] = {"val_accuracy": metrics["val_accuracy"], "test_accuracy": metrics["test_accuracy"],
                       "energy_uj": energy * 1e6}
        print(f"control {design}: val {metrics['val_accuracy']:.3f} test {metrics['test_accuracy']:.3f} "
              f"energy {energy * 1e6:.2f} µJ", flush=True)
    return out


def main() -> None:
    from hstlab.search import SearchSpace, run_search

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default="runs/bench/search")
    parser.add_argument("--preset", default="hst-small")
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=None, help="per-trial cap (a cap that bites favours "
                        "designs with cheap steps: standard layers ran ~3x more steps than spiking ones in 12 s)")
    parser.add_argument("--limit", type=int, default=256)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--dataflow", default="step-major")
    parser.add_argument("--json", default=None)
    parser.add_argument("--controls", action="store_true",
                        help="also train the all-standard and all-spiking designs (T=2, 8-bit) with the same recipe")
    args = parser.parse_args()

    space = SearchSpace(attention_kinds=("ssa", "sdsa"), num_steps=(2, 4), weight_bits=(8, 32))
    t0 = time.perf_counter()

    def show(row: dict) -> None:
        acc = row.get("val_accuracy")
        energy = row.get("energy_per_sample_j")
        print(f"[{time.perf_counter() - t0:6.0f} s] trial {row['number']:2d} {row['design']} {row['kinds']:15s} "
              f"T={row['num_steps']} w{row['weight_bits']} "
              + (f"val {acc:.3f} energy {energy * 1e6:.2f} µJ " if acc is not None else "") + row["status"], flush=True)

    result = run_search(args.preset, "digits-dvs", search_dir=args.dir, n_trials=args.trials, space=space,
                        epochs=args.epochs, seconds=args.seconds, limit=args.limit, dataflow=args.dataflow,
                        train_options={"lr": args.lr}, on_trial=show)
    wall = time.perf_counter() - t0
    distinct = result.trials[result.trials["duplicate_of"].isna()]
    print(f"\n{len(result.trials)} trials ({len(distinct)} distinct designs trained), {wall:.0f} s wall clock this run")
    print(result.table())
    share_front, share_all = spiking_share(result.front), spiking_share(distinct)
    print("\nshare spiking (front vs all distinct designs):")
    for part in share_front:
        print(f"  {part:6s} {share_front[part]:.2f} vs {share_all[part]:.2f}")
    extra = controls(args) if args.controls else {}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "args": vars(args), "wall_seconds": wall, "settings": result.settings,
            "front": result.front.to_dict(orient="records"), "trials": result.trials.to_dict(orient="records"),
            "share_spiking_front": share_front, "share_spiking_all": share_all,
            "controls": extra}, indent=2, default=str))


if __name__ == "__main__":
    main()
