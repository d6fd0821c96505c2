"""Notebook plots fit a 1,000 px notebook column: executed notebooks opened in headless Chromium.

Notebooks 02, 04 and 07 (the ones issue 22 saw overflow) are executed in smoke mode with
``tools/run_notebooks.py`` and exported to HTML with their inline BokehJS. Each page is opened
with the viewport sized so that the output column is exactly ``COLUMN_PX`` wide; once every
embedded Bokeh root has finished rendering, no cell's output may be wider than the column, and
the page may request nothing but the file itself (no CDN; nbconvert's require.js and MathJax
are left out, see ``run_notebooks.to_html``). A full-page screenshot of each is
saved (``HSTLAB_SCREENSHOTS`` names the folder; a temporary one otherwise).
Skipped when no ``chromium`` is on PATH, unless ``CI`` is set (then the missing browser fails).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from server_support import chromium_path

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "tools" / "run_notebooks.py")
run_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_notebooks)

COLUMN_PX = 1000  # the notebook column issue 22 asks plots to fit
NOTEBOOKS = ["02_event_data.ipynb", "04_attention_zoo.ipynb", "07_energy_hybrid_modes.ipynb"]
TIMEOUT_MS = 120_000
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]

# every embedded Bokeh root (a div with data-root-id) has a view that has finished rendering
ROOTS_DONE_JS = """() => {
  if (!window.Bokeh || !Bokeh.index) return false;
  const ids = [...document.querySelectorAll('[data-root-id]')].map(e => e.dataset.rootId);
  return ids.length > 0 && ids.every(id => {
    const view = Bokeh.index.get_by_id(id);
    return view != null && view.has_finished();
  });
}"""

# each cell whose output is wider than its column: the cell's number, code and widths. An output
# with no width of its own (clientWidth 0: a script-only output such as the plotting bundle's, which
# nbconvert's HTML cannot show) takes no room in the column, so it cannot push the page sideways.
OVERFLOW_JS = """() => [...document.querySelectorAll('.jp-Cell')].flatMap((cell, i) =>
  [...cell.querySelectorAll('.jp-OutputArea-output')]
    .filter(out => out.clientWidth > 0 && out.scrollWidth > out.clientWidth + 1)
    .map(out => ({cell: i, width: out.scrollWidth, column: out.clientWidth,
                  code: (cell.querySelector('.jp-InputArea') || {innerText: ''}).innerText
                        .trim().split('\\n').slice(0, 2).join(' | ')})))"""


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("HSTLAB_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_offline(browser, html: Path, width: int):
    """Open ``html`` with every request other than the file itself aborted (and listed)."""
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    outside: list[str] = []

    def route(r):
        if r.request.url.startswith(("file:", "data:", "blob:")):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(html.as_uri())
    return page, outside


def fit_column(page) -> int:
    """Resize the viewport so the output column is ``COLUMN_PX`` wide; returns the column width.

    Measured on the page itself: a long page's scrollbar takes part of the viewport."""
    column = page.locator(".jp-OutputArea-output").first.evaluate("e => e.clientWidth")
    page.set_viewport_size({"width": page.viewport_size["width"] + COLUMN_PX - column,
                            "height": page.viewport_size["height"]})
    return page.locator(".jp-OutputArea-output").first.evaluate("e => e.clientWidth")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_plots_fit_the_column(name, browser, shots, tmp_path, record_property):
    nb = run_notebooks.execute(ROOT / "notebooks" / name, smoke=True, timeout=600)
    html = tmp_path / Path(name).with_suffix(".html").name
    html.write_text(run_notebooks.to_html(nb), encoding="utf-8")

    page, outside = open_offline(browser, html, COLUMN_PX + 120)
    column = fit_column(page)
    page.wait_for_function(ROOTS_DONE_JS)
    assert abs(column - COLUMN_PX) <= 2, f"output column is {column} px, not {COLUMN_PX}"
    shot = shots / html.with_suffix(".png").name
    page.screenshot(path=str(shot), full_page=True)
    record_property("screenshot", str(shot))
    overflowing = page.evaluate(OVERFLOW_JS)
    page.context.close()
    assert not overflowing, f"{name}: outputs wider than the {COLUMN_PX} px column: {overflowing}"
    assert outside == [], f"{name} requested outside the file: {sorted(set(outside))[:5]}"
