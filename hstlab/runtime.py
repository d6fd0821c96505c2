"""Run-time switches shared by notebooks, the app, the CLI and tests."""

from __future__ import annotations

import os
from typing import TypeVar

T = TypeVar("T")

SMOKE_ENV = "HSTLAB_SMOKE"


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
