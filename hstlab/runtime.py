"""Run-time switches shared by notebooks, the app, the CLI and tests."""

from __future__ import annotations

import os
import sys
import warnings
from typing import TypeVar

T = TypeVar("T")

SMOKE_ENV = "HSTLAB_SMOKE"
THREAD_POLICY_ENV = "OMP_WAIT_POLICY"


def use_passive_threads() -> bool:
    """Make OpenMP threads sleep between parallel regions instead of spinning.

    On shared or CPU-limited machines, spinning workers stalled every 2-thread elementwise op
    by ~16 ms here (0.3 ms passive; see BENCHMARKS.md, *CPU threads*). OpenMP reads the setting
    once, when torch starts, so call this before the first ``import torch``: the ``hstlab`` CLI
    and the explorer do, and each notebook does in its first cell. ``import hstlab`` alone
    changes nothing. An explicit ``OMP_WAIT_POLICY`` in the environment wins. Returns True when
    the passive policy is in force for this process.

    Example:
        >>> import hstlab
        >>> hstlab.use_passive_threads()  # doctest: +SKIP
        True
    """
    already_set = THREAD_POLICY_ENV in os.environ  # by the shell, or by an earlier call
    os.environ.setdefault(THREAD_POLICY_ENV, "PASSIVE")
    passive = os.environ[THREAD_POLICY_ENV].strip().upper() == "PASSIVE"
    if passive and not already_set and "torch" in sys.modules:
        warnings.warn("use_passive_threads() came after torch was imported, so OpenMP keeps its "
                      "start-up policy: call it before importing torch (first cell of a notebook)",
                      RuntimeWarning, stacklevel=2)
        return False
    return passive


def smoke_mode() -> bool:
    """True when ``HSTLAB_SMOKE`` is set to a true value: shrink data and steps (CI, quick checks)."""
    return os.environ.get(SMOKE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def pick(real: T, smoke: T) -> T:
    """``smoke`` in smoke mode, else ``real``: ``epochs = pick(real=20, smoke=1)``.

    Example:
        >>> os.environ[SMOKE_ENV] = "1"; pick(real=20, smoke=1)
        1
    """
    return smoke if smoke_mode() else real


def cpu_model() -> str:
    """The CPU's model name, for naming the machine beside a measurement (``/proc/cpuinfo``; the
    platform's processor string elsewhere).

    Example:
        >>> isinstance(cpu_model(), str) and cpu_model() != ""
        True
    """
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
