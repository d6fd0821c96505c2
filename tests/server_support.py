"""Shared pieces of the tests that start local servers: the Chromium binary for browser tests and a free port."""

from __future__ import annotations

import os
import shutil
import socket

import pytest


def chromium_path() -> str:
    """Debian's chromium; a skip without it, but a failure when ``CI`` is set (CI must run these)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but no chromium is on PATH: the browser tests must run in CI")
        pytest.skip("no chromium on PATH (set CI=1 to make this a failure)")
    return path


def free_port() -> int:
    """A localhost TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
