"""Energy per sample of the zoo's trained spiking models against their twins (hstlab.twins).

Prices, on 64 test samples spread over the class-sorted digits-dvs split, the fp32 and int8 spiking
zoo models and the standard, int8 and bit-matched twins of the fp32 model under every dataflow.
The twins are untrained: a dense model's MACs and memory traffic do not depend on its weights.

    python benchmarks/bench_twins.py [--json runs/bench/twins.json]
"""

from __future__ import annotations

import argparse
import json

import hstlab

hstlab.use_passive_threads()

from hstlab.data import load_dataset, spread_indices, time_first_collate  # noqa: E402
from hstlab.train.card import _build  # noqa: E402  (seeded untrained build, as model cards use)
from hstlab.twins import twins  # noqa: E402

DATAFLOWS = ("step-major", "time-batched", "fused")


def row(report) -> dict[str, float]:
    out = {flow: report.with_dataflow(flow).total_j * 1e6 for flow in DATAFLOWS}
    return {**out, "compute": report.compute_j * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--json", help="write the table as JSON")
    args = parser.parse_args()
    spiking = hstlab.load_pretrained("hst-small-digits-dvs")
    test = load_dataset("digits-dvs", "test", time_bins=spiking.cfg.input_steps, limit=None)
    x, _ = time_first_collate([test[i] for i in spread_indices(len(test), args.samples)])
    rows = {"spiking, fp32 (hst-small-digits-dvs)": row(hstlab.energy_report(spiking, x))}
    int8 = hstlab.load_pretrained("hst-small-digits-dvs-int8")
    rows["spiking, int8 (hst-small-digits-dvs-int8)"] = row(hstlab.energy_report(int8, x, preset="45nm-int8"))
    for twin in twins(spiking.cfg):
        rows[twin.name] = row(twin.energy_report(_build(twin.cfg, 0), x))
    print(f"{'model':44s} " + " ".join(f"{k:>13s}" for k in (*DATAFLOWS, "compute")) + "   (uJ per sample)")
    for name, values in rows.items():
        print(f"{name:44s} " + " ".join(f"{v:13.2f}" for v in values.values()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
