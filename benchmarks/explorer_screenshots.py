"""Screenshots of every explorer tab at 1400x900 and 1920x1080 (headless Chromium).

Serves ``apps/explorer.py``, opens each tab, waits until its plots are rendered and Bokeh is
idle, saves ``<out>/<tab>-<width>x<height>.png`` and prints whether anything reaches past the
window's right edge. The PNGs are not committed (``runs/`` is ignored).

    python benchmarks/explorer_screenshots.py [--out runs/screenshots]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from explorer_server import CHROMIUM, CHROMIUM_FLAGS, IDLE, READY, served_explorer

SIZES = ((1400, 900), (1920, 1080))
RIGHT_EDGE = """() => {
    let right = 0;
    const walk = (root) => { for (const el of root.querySelectorAll("*")) {
        const r = el.getBoundingClientRect();
        if (r.width > 0 && r.height > 0) right = Math.max(right, r.right);
        if (el.shadowRoot) walk(el.shadowRoot);
    } };
    walk(document);
    return Math.round(right);
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/screenshots"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with served_explorer() as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        for width, height in SIZES:
            page = browser.new_context(viewport={"width": width, "height": height}).new_page()
            page.set_default_timeout(120_000)
            page.goto(url)
            page.locator(".hst-summary p", has_text="Parameters:").wait_for()
            for tab, ready in READY.items():
                page.locator(".bk-tab", has_text=re.compile(rf"^{tab}$")).first.click()
                page.locator(ready).first.wait_for()
                page.wait_for_function(IDLE)
                path = args.out / f"{tab.lower()}-{width}x{height}.png"
                page.screenshot(path=str(path))
                right = page.evaluate(RIGHT_EDGE)
                fits = "fits" if right <= width else f"OVERFLOWS by {right - width} px"
                print(f"{path}  {path.stat().st_size / 1024:.0f} kB  right edge {right} px: {fits}")
            page.context.close()
        browser.close()


if __name__ == "__main__":
    main()
