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

# allocate, touch and free a 16 MB tensor (a stem activation's size) ten times; print the page
# faults of the last five rounds, before and after keep_freed_memory()
_SCRIPT = textwrap.dedent("""
    import resource, torch
    from hstlab.runtime import keep_freed_memory

    def faults():
        for _ in range(5):
            torch.empty(4_000_000).fill_(1.0)
        r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            torch.empty(4_000_000).fill_(1.0)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0

    before = faults()
    applied = keep_freed_memory()
    print(before, faults(), applied, keep_freed_memory())
""")


def _run(env_extra: dict[str, str]) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in runtime.MALLOC_ENV}
    env.update(PYTHONPATH=str(ROOT), **env_extra)
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    return out.stdout.split()


@glibc_only
def test_keep_freed_memory_stops_page_faults_of_repeated_large_allocations() -> None:
    before, after, applied, again = _run({})
    assert applied == "True" and again == "True"  # idempotent
    assert int(before) >= 5 * 3000  # each 16 MB block was faulted in anew (~3,900 pages)
    assert int(after) < 100  # now reused from the heap


@glibc_only
def test_explicit_glibc_setting_wins() -> None:
    before, after, applied, _ = _run({"MALLOC_TRIM_THRESHOLD_": "131072"})
    assert applied == "False"
    assert int(after) >= 5 * 3000  # glibc's behaviour, untouched
