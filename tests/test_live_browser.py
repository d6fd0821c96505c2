"""Live curves in a real JupyterLab: the chart must redraw *while* the training cell runs.

The test starts ``jupyter lab`` (localhost, token, temporary root and settings), opens a one-cell
notebook in headless Chromium, runs the cell (a tiny HST-Net trained with ``LiveCurves.show()``)
and records every change of the cell's chart image together with the cell's running state. It
passes only if the image changed at least twice while the cell was still running, the final
state was drawn, the kernel printed no IOPub warning, and nothing left localhost.

Training length is a handshake, not a guess: the notebook trains until the test drops a ``stop``
file (or ``max_seconds``), so a slow, loaded machine only makes the run longer.
Skipped when no ``chromium`` is on PATH, unless ``CI`` is set (then the missing browser fails).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from server_support import chromium_path, free_port, stop_server

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_MS = 240_000  # a loaded 2-core machine: kernel start and torch import take tens of seconds
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]

TRAIN_CELL = """\
from pathlib import Path

import torch

from hstlab import HSTConfig
from hstlab.model import build_model
from hstlab.train import Trainer
from hstlab.viz import LiveCurves

torch.set_num_threads(1)
torch.manual_seed(0)
cfg = HSTConfig.from_preset("tiny")
g = torch.Generator().manual_seed(0)
data = [((torch.rand(cfg.num_steps, *cfg.input_shape, generator=g) < 0.2).float(),
         i % cfg.num_classes) for i in range(32)]  # (frames [T, C, H, W], label)
STOP = Path("stop")  # the test writes it once it has seen the chart move
live = LiveCurves()
trainer = Trainer(build_model(cfg), cfg, data, data[:8], epochs=500, batch_size=4, lr=3e-3,
                  max_seconds=400, callbacks=[
                      live, lambda ev: STOP.exists() and trainer.request_stop("test saw enough")])
live.show(interval_s=0.5)
metrics = trainer.fit()
print("trained steps:", metrics["steps"])
"""

# Runs in the page: a MutationObserver logs each new chart image (its src) with whether the
# watched cell was still running ("[*]" prompt) at that moment.
WATCH_JS = """(index) => {
  window.__charts = [];
  const cell = () => document.querySelectorAll('.jp-Notebook .jp-CodeCell')[index];
  let last = null;
  const look = () => {
    const c = cell();
    if (!c) return;
    const img = c.querySelector('.jp-OutputArea img');
    const src = img ? img.src : null;
    if (src && src !== last) {
      last = src;
      const running = c.querySelector('.jp-InputPrompt').innerText.includes('*');
      window.__charts.push({t: performance.now(), running: running, size: src.length});
    }
  };
  new MutationObserver(look).observe(document.body,
    {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
}"""


def write_notebook(path: Path, *cells: str) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    """``jupyter lab`` on a free localhost port with a token; all its state in a temp folder."""
    chromium_path()
    root = tmp_path_factory.mktemp("lab")
    state = tmp_path_factory.mktemp("lab-state")
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "JUPYTER_CONFIG_DIR": str(state / "config"),
        "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
        "IPYTHONDIR": str(state / "ipython"),
        "HSTLAB_SMOKE": "1",
        # anything the server or kernel tries to fetch from outside goes to a dead proxy
        "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           f"--LabApp.user_settings_dir={state / 'settings'}",
           f"--LabApp.workspaces_dir={state / 'workspaces'}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(state / "server.log", "w+")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=30):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"jupyter lab did not start:\n{log.read()[-3000:]}")
                time.sleep(0.5)  # polling the server's port, not waiting for page state
        yield {"base": base, "token": token, "root": root, "log": log}
    finally:
        stop_server(proc, grace_s=10)
        log.close()


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


def open_notebook(browser, lab, name: str):
    """Open ``name`` in JupyterLab with every non-localhost request aborted (and listed)."""
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    outside: list[str] = []
    host = urlsplit(lab["base"]).netloc

    def route(r):
        if urlsplit(r.request.url).netloc == host or r.request.url.startswith("data:"):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(f"{lab['base']}/lab/tree/{name}?token={lab['token']}")
    page.locator(".jp-Notebook .jp-CodeCell").first.wait_for()
    page.locator(".jp-StatusBar-TextItem", has_text="Idle").first.wait_for()  # kernel started
    return page, outside


def test_live_chart_updates_while_the_cell_trains(browser, lab, record_property):
    import nbformat

    write_notebook(lab["root"] / "live.ipynb", TRAIN_CELL)
    page, outside = open_notebook(browser, lab, "live.ipynb")
    page.evaluate(WATCH_JS, 0)
    cell = page.locator(".jp-Notebook .jp-CodeCell").first
    cell.locator(".jp-InputArea").click()
    t0 = time.perf_counter()
    page.keyboard.press("Control+Enter")  # run the cell, stay on it
    # the first image plus two redraws, all while the prompt still says [*]
    page.wait_for_function("window.__charts.filter(c => c.running).length >= 3",
                           timeout=TIMEOUT_MS)
    seen_running = page.evaluate("window.__charts.length")
    record_property("seconds_to_third_image", round(time.perf_counter() - t0, 1))
    (lab["root"] / "stop").write_text("enough\n")
    cell.locator(".jp-InputPrompt", has_text="[1]").wait_for(timeout=TIMEOUT_MS)  # cell finished
    output = cell.locator(".jp-OutputArea").inner_text()
    assert "trained steps:" in output, output
    assert "IOPub" not in output and "rate exceeded" not in output, output
    charts = page.evaluate("window.__charts")
    assert all(c["running"] for c in charts[:seen_running]), charts
    record_property("images_while_running", sum(c["running"] for c in charts))

    # the final state is drawn: the saved output's summary names the last step the trainer made
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    steps = int(output.split("trained steps:")[1].split()[0])

    def saved_summary() -> str:
        nb = nbformat.read(lab["root"] / "live.ipynb", as_version=4)
        outs = nb.cells[0].get("outputs", [])
        return "".join(o.get("data", {}).get("text/plain", "") for o in outs
                       if o["output_type"] == "display_data")

    deadline = time.monotonic() + 60
    while f"step {steps}," not in saved_summary() and time.monotonic() < deadline:
        page.wait_for_timeout(250)  # waiting on the file the save writes, polled
    assert saved_summary().startswith(f"step {steps},"), saved_summary()
    assert outside == [], f"requests left localhost: {outside[:5]}"
    page.context.close()
