"""hstlab.runtime.keep_freed_memory: freed activations are reused, not page-faulted in again."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hstlab import runtime

ROOT = Path(__file__).resolve().parents[1]
glibc_only = pytest.mark.skipif(not sys.platform.startswith("linux") or os.path.exists("/etc/alpine-release"),
                                reason="mallopt is glibc's")

# the fault counts of a fixed allocation pattern vary between processes (glibc's dynamic mmap
# threshold, arenas of torch's threads: 0 to ~10,000 faults for the same script, with or without
# the setting), so a test on them would be flaky; the effect is measured where it matters, on the
# training step, by ``benchmarks/bench_train_step.py --levers base,malloc`` (faults per step
# ~6,900 -> 3, BENCHMARKS.md). These tests check that the setting is applied, once, and only when
# the user has not set glibc's own knobs.
_SCRIPT = textwrap.dedent("""
    from hstlab.runtime import keep_freed_memory

    print(keep_freed_memory(), keep_freed_memory())
""")


def _run(env_extra: dict[str, str]) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in runtime.MALLOC_ENV}
    env.update(PYTHONPATH=str(ROOT), **env_extra)
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    return out.stdout.split()


@glibc_only
def test_keep_freed_memory_is_applied_once_and_stays_applied() -> None:
    assert _run({}) == ["True", "True"]


@glibc_only
def test_explicit_glibc_setting_wins() -> None:
    assert _run({"MALLOC_TRIM_THRESHOLD_": "131072"}) == ["False", "False"]
