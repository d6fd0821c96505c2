"""Serve the explorer for the benchmark scripts: ``panel serve apps/explorer.py`` on a free port.

    with served_explorer() as url:
        ...  # http://127.0.0.1:PORT/explorer
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
CHROMIUM = "/usr/bin/chromium"
READY = {  # what shows that a tab has rendered its content
    "Build": ".hst-layer-table select",
    "Inspect": ".hst-inspect-content canvas",
    "Train": ".hst-live canvas",
    "Energy": ".hst-energy-compare canvas",
}
IDLE = ("() => window.Bokeh !== undefined && Bokeh.documents.length > 0 && "
        "Bokeh.documents.every(d => d.is_idle)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served_explorer(timeout_s: float = 180.0) -> Iterator[str]:
    """The explorer's URL while a ``panel serve`` of it runs (runs go to a temporary folder)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as runs:
        env = {**os.environ, "HSTLAB_RUNS": runs}
        cmd = [sys.executable, "-m", "panel", "serve", "apps/explorer.py", "--address", "127.0.0.1",
               "--port", str(port), "--allow-websocket-origin", f"127.0.0.1:{port}"]
        log = open(Path(runs) / "server.log", "w+")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/explorer"
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    with urllib.request.urlopen(url, timeout=timeout_s) as reply:
                        if reply.status == 200:
                            break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        raise RuntimeError(f"the explorer did not start:\n{log.read()[-3000:]}") from None
                    time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
