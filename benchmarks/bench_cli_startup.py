"""CLI start-up: wall time of ``hstlab --help``, ``--version`` and ``presets`` in fresh processes.

Each command runs ``--repeat`` times as a new process (``python -m hstlab ...``, the cost a user
pays per command: interpreter start, imports, argument parsing); the median and the range are
printed next to the 1 s target of issues 18 and 20. The first run of each command is a warm-up
(file cache) and is not counted.

    python benchmarks/bench_cli_startup.py --repeat 11 --json runs/bench/cli_startup.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from hstlab.runtime import cpu_model

TARGET_S = 1.0
COMMANDS = (("--help",), ("--version",), ("presets",))


def wall_times(args: tuple[str, ...], repeat: int) -> list[float]:
    """Seconds of ``repeat`` fresh ``python -m hstlab ARGS`` processes, after one warm-up."""
    command = [sys.executable, "-m", "hstlab", *args]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    results = {" ".join(c): wall_times(c, args.repeat) for c in COMMANDS}
    print(f"CPU: {cpu_model()}, load average 1 min {load_before:.2f} -> {os.getloadavg()[0]:.2f}")
    print("| command | median s | min–max s | target |")
    print("|---|---:|---:|---|")
    for name, times in results.items():
        median = statistics.median(times)
        print(f"| hstlab {name} | {median:.2f} | {min(times):.2f}–{max(times):.2f} | "
              f"≤ {TARGET_S:.0f} s: {'met' if median <= TARGET_S else 'NOT met'} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cpu": cpu_model(), "load_before": load_before, "times": results}, indent=2))


if __name__ == "__main__":
    main()
