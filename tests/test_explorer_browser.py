"""The explorer end to end: ``panel serve apps/explorer.py`` driven by headless Chromium (Playwright).

Skipped when no ``chromium`` is on PATH, unless ``CI`` is set (then the missing browser fails).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from server_support import chromium_path, free_port, stop_server

from hstlab.config import HSTConfig
from hstlab.model import build_model

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 60_000
TABS = ("Build", "Inspect", "Train", "Energy")


def n_params(cfg: HSTConfig) -> int:
    return sum(p.numel() for p in build_model(cfg).parameters())


def shown_params(page) -> int:
    text = page.locator(".hst-summary p").first.inner_text()
    return int(re.search(r"Parameters:\s*([\d,]+)", text).group(1).replace(",", ""))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """``panel serve apps/explorer.py`` on a free localhost port, with a small digits-dvs build."""
    chromium_path()
    from hstlab.data.digits_dvs import build_digits_dvs

    data = tmp_path_factory.mktemp("explorer-data")
    build_digits_dvs(data / "digits-dvs", seed=0, n_samples=100)
    port = free_port()
    env = {
        **os.environ,
        "HSTLAB_DATA": str(data),
        "HSTLAB_RUNS": str(tmp_path_factory.mktemp("runs")),
        "HSTLAB_EXPLORER_RUNS": str(tmp_path_factory.mktemp("shared-runs")),  # Load run reads
    }
    log = open(tmp_path_factory.mktemp("log") / "server.log", "w+")  # noqa: SIM115 - closed below
    cmd = [
        sys.executable,
        "-m",
        "panel",
        "serve",
        "apps/explorer.py",
        "--address",
        "127.0.0.1",
        "--port",
        str(port),
        "--allow-websocket-origin",
        f"127.0.0.1:{port}",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/explorer"
    try:
        deadline = time.monotonic() + 90
        while True:  # the first GET also runs one session (imports and first build warm up)
            try:
                with urllib.request.urlopen(url, timeout=60) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"explorer server did not start:\n{log.read()[-3000:]}")
                time.sleep(0.5)
        yield {
            "url": url,
            "log": log,
            "runs": env["HSTLAB_RUNS"],
            "shared": Path(env["HSTLAB_EXPLORER_RUNS"]),
        }
    finally:
        stop_server(proc, grace_s=3)
        log.close()


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)  # a loaded CI machine renders a tab in more than 5 s
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


def open_app(browser, url: str, requests: list | None = None):
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    if requests is not None:
        page.on("request", lambda r: requests.append(r.url))
    page.goto(url)
    page.locator(".hst-summary p", has_text="Parameters:").wait_for()
    return page


def click_tab(page, name: str) -> None:
    page.locator(".bk-tab", has_text=re.compile(rf"^{name}$")).first.click()


# What shows that a tab has rendered its content (the plots arrive after the tab itself).
READY = {
    "Build": ".hst-layer-table select",
    "Inspect": ".hst-inspect-content canvas",
    "Train": ".hst-live canvas",
    "Energy": ".hst-energy-compare canvas",
}
# Bokeh has laid out and painted every view of the page (no pending model changes).
IDLE = "() => window.Bokeh !== undefined && Bokeh.documents.length > 0 && Bokeh.documents.every(d => d.is_idle)"


def show_tab(page, name: str) -> None:
    """Open tab ``name`` and wait until its content is rendered and Bokeh is idle."""
    click_tab(page, name)
    page.locator(READY[name]).first.wait_for()
    page.wait_for_function(IDLE)


# The right edge of the widest visible element, shadow DOMs included (Bokeh renders in them):
# an element clipped by an ``overflow: hidden`` parent still counts.
RIGHT_EDGE = """() => {
    let right = 0, what = "";
    const walk = (root) => {
        for (const el of root.querySelectorAll("*")) {
            const r = el.getBoundingClientRect();
            if (r.width > 0 && r.height > 0 && r.right > right + 0.5) {
                right = r.right;
                what = (typeof el.className === "string" && el.className) || el.tagName;
            }
            if (el.shadowRoot) walk(el.shadowRoot);
        }
    };
    walk(document);
    return {right: Math.round(right), what: what,
            scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth};
}"""


class Watch:
    """Every request to another host than the app's and every console error of a page."""

    def __init__(self, page, url: str) -> None:
        self.host = urlsplit(url).netloc
        self.foreign: list[str] = []
        self.errors: list[str] = []
        page.on("request", self._request)
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def _request(self, request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in ("data", "blob", "about"):
            return
        if parts.netloc != self.host:
            self.foreign.append(request.url)

    def check(self, where: str) -> None:
        assert not self.foreign, f"{where}: requests left {self.host}: {sorted(set(self.foreign))}"
        assert not self.errors, f"{where}: console errors: {self.errors}"


def test_toggle_layer_updates_parameter_count_offline(browser, server, record_property):
    from playwright.sync_api import expect

    requests: list[str] = []
    page = open_app(browser, server["url"], requests)
    cfg = HSTConfig.from_preset("hst-small")
    assert shown_params(page) == n_params(cfg)
    weights = page.locator(".hst-weights p")  # it opens on the zoo's trained model
    expect(weights).to_contain_text("pretrained: hst-small-digits-dvs (test accuracy 98.9 %)")
    assert page.locator(".hst-pretrained select").input_value() == "hst-small-digits-dvs"
    t0 = time.perf_counter()
    page.locator(".hst-layer-0-attn_mode select").select_option("standard")
    expected = n_params(cfg.with_modes(attn="TS"))
    expect(page.locator(".hst-summary p")).to_contain_text(f"{expected:,}")
    record_property("toggle_to_update_s", round(time.perf_counter() - t0, 3))
    expect(page.locator(".hst-summary p")).to_contain_text("Modes: HS")
    expect(weights).to_contain_text("untrained")  # an edit builds an untrained model
    page.locator(".hst-pretrained select").select_option("hst-small-digits-dvs-standard")
    expect(weights).to_contain_text("pretrained: hst-small-digits-dvs-standard")
    expect(page.locator(".hst-summary p")).to_contain_text("Modes: TT")
    hosts = {
        urlsplit(u).netloc for u in requests if urlsplit(u).scheme in ("http", "https", "ws", "wss")
    }
    assert hosts == {server["url"].split("/")[2]}, f"requests left localhost: {hosts}"
    page.context.close()


# Every text the summary pane takes, in the browser, as the server sends it (no polling: a state
# shown for a moment is recorded too).
RECORD_SUMMARY = """() => {
    window.hstSummary = [];
    let hooked = 0;
    for (const doc of Bokeh.documents) for (const m of doc.all_models) {
        if (!(m.css_classes || []).includes("hst-summary") || !("text" in m.properties)) continue;
        m.properties.text.change.connect(() => window.hstSummary.push([performance.now(), m.text]));
        hooked += 1;
    }
    return hooked;
}"""


def test_preset_change_answers_at_once_and_its_energy_follows(browser, server, record_property):
    """The summary shows the new preset's size while its energy is marked as being measured
    (the previous model's value, marked), then the measured energy replaces the mark."""
    from playwright.sync_api import expect

    page = open_app(browser, server["url"])
    summary = page.locator(".hst-summary p")
    expect(summary).to_contain_text("energy measured in")  # the opening model has settled
    before = summary.inner_text()
    assert page.evaluate(RECORD_SUMMARY) >= 1
    params = f"{n_params(HSTConfig.from_preset('spikformer-dvs-2-256')):,}"
    t0 = page.evaluate("performance.now()")
    page.locator(".hst-preset select").select_option("spikformer-dvs-2-256")
    expect(summary).to_contain_text(f"Parameters: {params}")
    expect(summary).to_contain_text("energy measured in", timeout=4 * TIMEOUT_MS)
    after = summary.inner_text()
    history = page.evaluate("window.hstSummary")
    marked = [(t, text) for t, text in history if params in text and "measuring" in text]
    final = [(t, text) for t, text in history if params in text and "energy measured in" in text]
    assert marked, f"no summary showed {params} parameters with the energy marked: {history}"
    assert final and marked[0][0] < final[-1][0]
    assert "of the previous model" in marked[0][1] and "measuring" not in after
    energy = re.search(r"Energy per sample:\s*([\d.]+ [µmn]?J)", after)
    assert energy and energy.group(1) not in before  # measured for the new model
    record_property("preset_answer_s", round((marked[0][0] - t0) / 1000, 3))
    record_property("preset_settled_s", round((final[-1][0] - t0) / 1000, 3))
    page.context.close()


def test_bad_value_shows_message_and_keeps_model(browser, server):
    from playwright.sync_api import expect

    page = open_app(browser, server["url"])
    before = shown_params(page)
    heads = page.locator(".hst-n_head input")
    heads.fill("5")
    heads.press("Enter")
    error = page.locator(".hst-error p")
    expect(error).to_be_visible()
    expect(error).to_contain_text("n_head=5")
    assert shown_params(page) == before
    heads.fill("8")
    heads.press("Enter")
    expect(error).to_be_hidden()
    assert shown_params(page) == n_params(HSTConfig.from_preset("hst-small", n_head=8))
    page.context.close()


def test_dataflow_buttons_reprice_the_energy(browser, server):
    from playwright.sync_api import expect

    page = open_app(browser, server["url"])
    click_tab(page, "Energy")
    total = page.locator(".hst-energy-total p")
    expect(total).to_contain_text("step-major dataflow")
    page.locator(".hst-dataflow button", has_text="time-batched").click()
    expect(total).to_contain_text("time-batched dataflow")
    page.locator(".hst-dataflow button", has_text="fused").click()
    expect(total).to_contain_text("fused dataflow")
    page.context.close()


def test_two_step_training_streams_points(browser, server):
    from playwright.sync_api import expect

    page = open_app(browser, server["url"])
    click_tab(page, "Train")
    expect(page.locator(".hst-recipe p")).to_contain_text("Recipe hst-small on digits-dvs")
    expect(page.locator(".hst-epochs input")).to_have_value("18")  # the recipe, not a bare default
    for name, value in (("limit", "8"), ("batch_size", "4"), ("epochs", "1")):
        box = page.locator(f".hst-{name} input")
        box.fill(value)
        box.press("Enter")
    start = page.locator(".hst-start button")
    start.click()
    expect(page.locator(".hst-train-status p")).to_contain_text("run-001")
    expect(page.locator(".hst-train-status p")).to_contain_text("finished", timeout=120_000)
    expect(page.locator(".hst-points p")).to_contain_text("received: 3")
    loss_rows = """() => {
        let n = 0;
        for (const doc of Bokeh.documents) for (const m of doc.all_models) {
            if (m.type !== "ColumnDataSource") continue;
            const d = m.data instanceof Map ? Object.fromEntries(m.data) : m.data;
            if ("loss" in d) n = Math.max(n, d["loss"].length);
        }
        return n;
    }"""
    try:  # chart data may land a tick after the status text (events run in worker threads)
        page.wait_for_function(f"({loss_rows})() >= 2", timeout=30_000)
    except Exception:  # noqa: BLE001 - report the count
        pytest.fail(f"the loss chart did not receive the two step points: {page.evaluate(loss_rows)}")
    expect(page.locator(".hst-runs table")).to_contain_text("run-001")
    page.context.close()


def test_second_run_is_refused(browser, server):
    from playwright.sync_api import expect

    page = open_app(browser, server["url"])
    click_tab(page, "Train")
    for name, value in (("limit", "64"), ("batch_size", "4"), ("epochs", "5")):
        box = page.locator(f".hst-{name} input")
        box.fill(value)
        box.press("Enter")
    page.locator(".hst-start button").click()
    expect(page.locator(".hst-stop button")).to_be_enabled()
    page.locator(".hst-start button").click(force=True)
    expect(page.locator(".hst-train-message p")).to_contain_text("already running")
    page.locator(".hst-stop button").click()
    expect(page.locator(".hst-train-status p")).to_contain_text("stopped", timeout=120_000)
    expect(page.locator(".hst-runs table")).to_contain_text("stopped")
    page.context.close()


def test_four_sessions_do_not_cross_talk(browser, server):
    from playwright.sync_api import expect

    pages = [open_app(browser, server["url"]) for _ in range(4)]
    base = HSTConfig.from_preset("hst-small")
    for depth, page in enumerate(pages, start=1):
        box = page.locator(".hst-n_layer input")
        box.fill(str(depth))
        box.press("Enter")
    for depth, page in enumerate(pages, start=1):
        expect(page.locator(".hst-summary p")).to_contain_text(
            f"{n_params(base.with_depth(depth)):,}"
        )
        expect(page.locator(".hst-layer-table select")).to_have_count(5 * depth)  # 5 choice columns a row
    for depth, page in enumerate(pages, start=1):  # still their own after all four changed
        assert shown_params(page) == n_params(base.with_depth(depth))
        page.context.close()


def test_screenshots_of_every_tab_are_not_blank(browser, server, tmp_path):
    import numpy as np
    from PIL import Image

    page = open_app(browser, server["url"])
    ready = {
        "Build": ".hst-summary p",
        "Inspect": ".hst-inspect-content canvas",
        "Train": ".hst-live canvas",
        "Energy": ".hst-energy-compare canvas",
    }
    for tab in TABS:
        click_tab(page, tab)
        page.locator(ready[tab]).first.wait_for()
        page.wait_for_function(IDLE)  # Bokeh has painted its canvases
        path = tmp_path / f"{tab.lower()}.png"
        page.screenshot(path=str(path), full_page=True)
        pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
        inked = float((pixels < 200).mean())
        assert inked > 0.01 and pixels.std() > 10, (
            f"{tab} screenshot looks blank ({inked:.3%} inked)"
        )
    canvases = page.locator("canvas").count()
    assert canvases > 0
    page.context.close()


def test_load_run_shows_trained_weights_in_inspect(browser, server):
    from playwright.sync_api import expect

    from hstlab.train.checkpoint import atomic_save, make_checkpoint, write_json

    cfg = HSTConfig.from_preset("hst-small", n_embd=16, n_head=2)  # digits-dvs shaped
    empty = server["shared"] / "empty-run"
    empty.mkdir()
    run = (server["shared"] / "trained-run").resolve()  # in $HSTLAB_EXPLORER_RUNS
    atomic_save(make_checkpoint(build_model(cfg).eval(), cfg, {}), run / "best.safetensors")
    write_json(run / "metrics.json", {"val_accuracy": 0.5})
    page = open_app(browser, server["url"])
    box = page.locator(".hst-run-dir input")
    box.fill(str(empty))  # no best.safetensors there
    box.press("Enter")
    page.locator(".hst-load-run button").click()
    error = page.locator(".hst-error p")
    expect(error).to_contain_text("holds no best.safetensors")
    box.fill(str(run))
    box.press("Enter")
    page.locator(".hst-load-run button").click()
    expect(page.locator(".hst-weights p")).to_contain_text(f"trained: {run}")
    expect(error).to_be_hidden()
    expect(page.locator(".hst-summary p")).to_contain_text(f"Parameters: {n_params(cfg):,}")
    expect(page.locator(".hst-n_embd input")).to_have_value("16")  # the fields show the run
    click_tab(page, "Inspect")
    expect(page.locator(".hst-inspect-weights p")).to_contain_text(
        f"trained: {run} (val accuracy 0.5)"
    )
    page.locator(".hst-inspect-content canvas").first.wait_for()
    page.context.close()


def test_page_stays_offline_and_error_free_through_every_tab(browser, server):
    """Nothing but the app's own server is asked for anything, and the console stays clean, while
    every tab, every Inspect view and the collapsed cards are opened before and after a rebuild
    (Panel once wrote CDN style sheets into the hidden tabs' models)."""
    from playwright.sync_api import expect

    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    watch = Watch(page, server["url"])
    page.goto(server["url"])
    page.locator(".hst-summary p", has_text="Parameters:").wait_for()
    watch.check("page load")
    for tab in TABS:
        show_tab(page, tab)
    page.locator(".card-header", has_text="Assumptions").click()
    page.wait_for_function(IDLE)
    show_tab(page, "Inspect")
    content = page.locator(".hst-inspect-content")
    for section, shows in (("Spikes", "canvas"), ("Attention", "canvas"),
                           ("Positional code", "canvas"), ("Events", "canvas")):
        page.locator(".hst-section button", has_text=section).click()
        content.locator(shows).first.wait_for()
        page.wait_for_function(IDLE)
    watch.check("tabs before a rebuild")
    show_tab(page, "Build")
    page.locator(".hst-preset select").select_option("tiny")  # rebuilds while the others hide
    expect(page.locator(".hst-summary p")).to_contain_text(
        f"Parameters: {n_params(HSTConfig.from_preset('tiny')):,}")
    page.locator(".card-header", has_text="Config (JSON)").click()
    page.wait_for_function(IDLE)
    for tab in ("Inspect", "Train", "Energy", "Build"):  # their models were updated while hidden
        show_tab(page, tab)
    watch.check("tabs after a rebuild")
    page.context.close()


@pytest.mark.parametrize("size", [(1400, 900), (1920, 1080)])
def test_no_tab_overflows_the_window(browser, server, size):
    width, height = size
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server["url"])
    page.locator(".hst-summary p", has_text="Parameters:").wait_for()
    for tab in TABS:
        show_tab(page, tab)
        edge = page.evaluate(RIGHT_EDGE)
        assert edge["scroll"] <= edge["client"], f"{tab} scrolls sideways at {width} px: {edge}"
        assert edge["right"] <= width, f"{tab}: {edge['what']!r} reaches {edge['right']} px of {width}"
    page.context.close()
