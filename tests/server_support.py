"""Shared pieces of the tests that start local servers: the Chromium binary for browser tests, a free port and stopping a server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

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


def stop_server(proc: subprocess.Popen, grace_s: float) -> None:
    """Terminate a server process started by a fixture; kill it if it has not exited after
    ``grace_s`` seconds, and reap it."""
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(grace_s)
