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


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 * 1024 * 1024  # the largest glibc accepts on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD = 1024 * 1024 * 1024
# the user's own glibc malloc settings win over keep_freed_memory()
MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")
_kept_freed_memory = False


def keep_freed_memory() -> bool:
    """Make glibc keep freed blocks up to 32 MB for reuse instead of returning them to the kernel.

    A training step frees its activations and allocates them again at the next step. By default
    glibc hands blocks above its mmap threshold back to the kernel when they are freed, so every
    step page-faults them in anew (the kernel zeroes each 4 KB page): 4,700-7,200 faults and
    ~14 ms more system time per hst-small training step on the 2-core machine of BENCHMARKS.md;
    the step's CPU time falls by 10-12 % (``benchmarks/bench_train_step.py --levers base,malloc``).
    With this setting they come from glibc's heap again, which is trimmed only when more than
    1 GiB at its top is free; the process keeps its peak heap for reuse. Arithmetic is unchanged. :meth:`hstlab.train.Trainer.fit` calls it.

    Process-wide and idempotent. Does nothing (returns False) off Linux/glibc, or when the
    environment sets glibc's own malloc knobs (``MALLOC_MMAP_THRESHOLD_``,
    ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``, ``GLIBC_TUNABLES``): an explicit setting
    wins. True when the setting is in force.

    Example:
        >>> keep_freed_memory() in (True, False)
        True
    """
    global _kept_freed_memory
    if _kept_freed_memory:
        return True
    if not sys.platform.startswith("linux") or any(name in os.environ for name in MALLOC_ENV):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl has no libc.so.6 nor mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _kept_freed_memory = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _kept_freed_memory
