"""Explorer responsiveness: preset rebuild time, and 4 browser sessions at once.

1. Rebuild: an ``ExplorerState`` that measures in the background, as the served app's does,
   switches to each preset (Inspect recording off, as while the Build tab is shown). Printed:
   the time until the change answers (config validated, model built, parameter count shown;
   target 2 s) and until the deferred measuring (BatchNorm calibration on the sample, energy
   report) has settled, and where that time goes (``parts``). ``--inline`` also times a state
   that measures inline (the explorer before the measuring was deferred). Then Inspect's sample
   change on the trained hst-small (zoo weights, Inspect shown): until the new sample's recording
   and energy are measured (target 0.5 s).
2. Sessions: ``apps/explorer.py`` is served and 4 headless Chromium pages open it at once;
   the time each takes to become ready, to answer a switch to the Energy tab (all 4 at once,
   until its chart is drawn and Bokeh is idle) and, while the first one trains, to answer a
   layer toggle in the other 3 (until the summary shows the new modes) is printed.

    python benchmarks/bench_explorer.py [--sessions 4] [--skip-rebuild] [--skip-sessions] [--inline]
                                        [--json out.json]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP; see hstlab/__init__.py

import argparse
import asyncio
import json
import re
import statistics
import time

from explorer_server import CHROMIUM, CHROMIUM_FLAGS, IDLE, READY, served_explorer

TARGET_REBUILD_S = 2.0
TARGET_ANSWER_S = 1.0
TARGET_SAMPLE_S = 0.5
TIMEOUT_MS = 300_000


def parts(state) -> dict[str, float]:
    """Where a rebuild of ``state.cfg`` spends its time: build, sample, BatchNorm, energy."""
    from hstlab.layers.norm import calibrate_batchnorm
    from hstlab.model import build_model

    times, t0 = {}, time.perf_counter()
    model = build_model(state.cfg).eval()
    times["build"], t0 = time.perf_counter() - t0, time.perf_counter()
    sample = state.samples.sample(state.cfg, state.dataset, 0)
    times["sample"], t0 = time.perf_counter() - t0, time.perf_counter()
    calibrate_batchnorm(model, sample.x)
    times["calibrate"], t0 = time.perf_counter() - t0, time.perf_counter()
    state._energy(model, sample)
    times["energy"] = time.perf_counter() - t0
    return {k: round(v, 2) for k, v in times.items()}


def rebuild_times(inline: bool = False) -> list[dict]:
    """Per preset: seconds until the change answers and until its measuring has settled."""
    from hstlab.presets import list_presets
    from hstlab.ui import ExplorerState

    rows = []
    state = ExplorerState(preset="tiny", live_inspection=False, deferred=not inline)
    mode = "inline" if inline else "deferred"
    for preset in list_presets():
        state.preset = "hst-small" if preset == "tiny" else "tiny"  # a real change each time
        state.settle()
        t0 = time.perf_counter()
        state.preset = preset
        answer = time.perf_counter() - t0
        state.settle()
        settled = time.perf_counter() - t0
        row = {"preset": preset, "mode": mode, "answer_s": round(answer, 3),
               "settled_s": round(settled, 3), "params": state.n_params, "error": state.error}
        if not state.error:
            row["parts_s"] = parts(state)
        rows.append(row)
        status = "refused: " + state.error[:80] if state.error else (
            "ok" if answer <= TARGET_REBUILD_S else f"over the {TARGET_REBUILD_S:g} s target")
        print(f"rebuild ({mode}) {preset:>22}: answers {answer:6.2f} s, settled {settled:6.2f} s  "
              f"{state.n_params:>12,} params  {status}  {row.get('parts_s', '')}")
    return rows


def sample_change_times(preset: str = "hst-small", changes: int = 7) -> dict:
    """Inspect's sample change on the zoo's trained ``preset`` model on digits-dvs (Inspect shown): seconds until
    the new sample's recording and energy are measured, as the Inspect tab needs them."""
    from hstlab.ui import ExplorerState

    state = ExplorerState(preset=preset, live_inspection=True, deferred=False)
    if not state.load_pretrained(f"{preset}-digits-dvs"):
        raise SystemExit(f"the zoo model did not load: {state.error}")
    times = []
    for index in range(1, changes + 1):
        t0 = time.perf_counter()
        state.sample_index = index
        state.settle()
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    print(f"Inspect sample change ({preset}, {state.weights[:40]}...): median {median:.2f} s of "
          f"{[round(t, 2) for t in times]} (target {TARGET_SAMPLE_S:g} s)")
    return {"preset": preset, "weights": state.weights, "times_s": times, "median_s": median}


async def _tab(page, name: str) -> float:
    t0 = time.perf_counter()
    await page.locator(".bk-tab", has_text=re.compile(rf"^{name}$")).first.click()
    await page.locator(READY[name]).first.wait_for()
    await page.wait_for_function(IDLE)
    return time.perf_counter() - t0


async def _open(browser, url: str):
    page = await (await browser.new_context(viewport={"width": 1400, "height": 900})).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    t0 = time.perf_counter()
    await page.goto(url)
    await page.locator(".hst-summary p", has_text="Parameters:").wait_for()
    return page, time.perf_counter() - t0


async def _toggle(page, to: str = "standard") -> float:
    """Layer 0's attention to ``to``: time until the summary shows modes HS (from SS) or back."""
    from playwright.async_api import expect

    summary = page.locator(".hst-summary p")
    before, after = ("SS", "HS") if to == "standard" else ("HS", "SS")
    await expect(summary).to_contain_text(f"Modes: {before}", timeout=TIMEOUT_MS)
    t0 = time.perf_counter()
    await page.locator(".hst-layer-0-attn_mode select").select_option(to)
    await expect(summary).to_contain_text(f"Modes: {after}", timeout=TIMEOUT_MS)
    return time.perf_counter() - t0


async def sessions(n: int) -> dict:
    from playwright.async_api import async_playwright

    with served_explorer() as url:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                               args=CHROMIUM_FLAGS)
            opened = await asyncio.gather(*[_open(browser, url) for _ in range(n)])
            pages = [p for p, _ in opened]
            ready = [round(s, 2) for _, s in opened]
            print(f"{n} sessions opened at once: ready after {ready} s")
            for p in pages:  # the layer table lives in the Build tab: render it first
                await p.locator(READY["Build"]).first.wait_for()
            energy = [round(s, 2) for s in await asyncio.gather(*[_tab(p, "Energy") for p in pages])]
            print(f"switch to Energy in all {n} at once: answered after {energy} s")
            back = [round(s, 2) for s in await asyncio.gather(*[_tab(p, "Build") for p in pages])]
            print(f"switch back to Build in all {n} at once: answered after {back} s")
            idle = [round(s, 2) for s in await asyncio.gather(*[_toggle(p) for p in pages[1:]])]
            await asyncio.gather(*[_toggle(p, "spiking") for p in pages[1:]])
            print(f"layer toggle in {n - 1} sessions, none training: answered after {idle} s")
            trainer = pages[0]
            await _tab(trainer, "Train")
            await trainer.locator(".hst-start button").click()
            stepping = trainer.locator(".hst-train-status p", has_text="step")
            refused = trainer.locator(".hst-train-message p")
            await stepping.or_(refused).first.wait_for()
            if await refused.count() and await refused.first.is_visible():  # e.g. no digits-dvs
                raise SystemExit(f"training did not start: {await refused.first.inner_text()} "
                                 "(set HSTLAB_DATA to a folder holding a digits-dvs build)")
            toggles = [round(s, 2) for s in await asyncio.gather(*[_toggle(p) for p in pages[1:]])]
            print(f"layer toggle in {n - 1} sessions while session 1 trains: answered after "
                  f"{toggles} s (target {TARGET_ANSWER_S:g} s)")
            await trainer.locator(".hst-stop button").click()
            await browser.close()
    return {"ready_s": ready, "energy_tab_s": energy, "build_tab_s": back,
            "toggle_idle_s": idle, "toggle_while_training_s": toggles,
            "median_toggle_s": statistics.median(toggles) if toggles else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--skip-rebuild", action="store_true")
    parser.add_argument("--skip-sessions", action="store_true")
    parser.add_argument("--inline", action="store_true",
                        help="also time rebuilds that measure inline (as before deferral)")
    parser.add_argument("--json", default=None, help="write the numbers to this file")
    args = parser.parse_args()
    out: dict = {"cpu_count": os.cpu_count(), "load_average": os.getloadavg()}
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()}")
    if not args.skip_rebuild:
        out["rebuild"] = rebuild_times() + (rebuild_times(inline=True) if args.inline else [])
        out["sample_change"] = sample_change_times()
    if not args.skip_sessions:
        out["sessions"] = asyncio.run(sessions(args.sessions))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
