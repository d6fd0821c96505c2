"""Execute the tutorial notebooks into build/notebooks/ and sign them, so they open with plots.

``make notebooks`` runs this (``SMOKE=1`` for smoke mode). Each notebook in ``notebooks/`` is
executed in a fresh kernel, with ``notebooks/`` as working directory; the executed copy is then

1. stripped of the duplicate plotting bundle: Panel publishes its ~3 MB BokehJS bundle under two
   MIME types of one output (``application/javascript`` for the classic notebook and
   ``application/vnd.holoviews_load.v0+json`` for JupyterLab); JupyterLab and Notebook 7 render the
   second (the pyviz_comms extension, installed with HoloViews), so the first is dropped;
2. signed with the notary of the user running it (``jupyter trust`` does the same), so the user's
   JupyterLab runs the plots' JavaScript instead of showing them blank;
3. written to the output folder (default ``build/notebooks/``); the tracked notebooks stay clean.

Command line (exit status 2 with one line on bad input)::

    python tools/run_notebooks.py [--smoke] [--out build/notebooks] [--html] [NOTEBOOK ...]

Example (in Python)::

    from tools.run_notebooks import run_notebook
    run_notebook(Path("notebooks/03_neurons_surrogates.ipynb"), Path("build/notebooks"), smoke=True)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
LOAD_MIME = "application/vnd.holoviews_load.v0+json"  # pyviz_comms' JupyterLab renderer
JS_MIME = "application/javascript"  # the classic notebook's copy of the same script


def execute(path: Path, *, smoke: bool = False, timeout: int = 1800) -> nbformat.NotebookNode:
    """Run every cell of the notebook at ``path`` in a fresh kernel (working directory: its folder).

    ``smoke`` sets ``HSTLAB_SMOKE=1`` for the kernel (sizes from ``hstlab.pick(smoke=...)``);
    ``timeout`` is the limit per cell in seconds. A failing cell raises nbclient's
    ``CellExecutionError`` naming the notebook's cell.
    """
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env_before = os.environ.get("HSTLAB_SMOKE")
    if smoke:
        os.environ["HSTLAB_SMOKE"] = "1"
    else:
        os.environ.pop("HSTLAB_SMOKE", None)
    try:  # the kernel inherits this process's environment
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        if env_before is None:
            os.environ.pop("HSTLAB_SMOKE", None)
        else:
            os.environ["HSTLAB_SMOKE"] = env_before
    return nb


def drop_duplicate_bundles(nb: nbformat.NotebookNode) -> int:
    """Drop each output's ``application/javascript`` copy of a script that the same output also
    carries as ``application/vnd.holoviews_load.v0+json``; returns the number of bytes removed."""
    removed = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if LOAD_MIME in data and data.get(JS_MIME) == data[LOAD_MIME]:
                removed += len(data.pop(JS_MIME))
    return removed


def sign(nb: nbformat.NotebookNode, notary: Any = None) -> None:
    """Sign ``nb`` with ``notary`` (default: the user's, as ``jupyter trust``), trusting its outputs."""
    from nbformat.sign import NotebookNotary

    notary = notary or NotebookNotary()
    Path(notary.data_dir).mkdir(parents=True, exist_ok=True)  # its secret and database live here
    notary.sign(nb)


def to_html(nb: nbformat.NotebookNode, *, offline: bool = True) -> str:
    """The executed notebook as one HTML page (JupyterLab's look; plots as in the notebook).

    ``offline`` leaves out require.js and MathJax, which nbconvert loads from a CDN (LaTeX then
    shows as its source).
    """
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    if offline:
        exporter.require_js_url = ""
        exporter.mathjax_url = ""
    html, _ = exporter.from_notebook_node(nb)
    return html


def run_notebook(path: Path, out_dir: Path, *, smoke: bool = False, html: bool = False,
                 notary: Any = None, timeout: int = 1800) -> Path:
    """Execute ``path``, write its signed copy (and with ``html`` an HTML page) into ``out_dir``."""
    nb = execute(path, smoke=smoke, timeout=timeout)
    out_dir.mkdir(parents=True, exist_ok=True)
    if html:  # before dropping the classic copy: nbconvert's HTML uses application/javascript
        (out_dir / path.with_suffix(".html").name).write_text(to_html(nb), encoding="utf-8")
    drop_duplicate_bundles(nb)
    sign(nb, notary)
    dest = out_dir / path.name
    nbformat.write(nb, dest)
    return dest


def _notebooks(names: list[str]) -> list[Path]:
    if not names:
        return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    paths = []
    for name in names:
        path = Path(name) if Path(name).exists() else NOTEBOOKS / name
        if not path.is_file() or path.suffix != ".ipynb":
            allowed = ", ".join(p.name for p in sorted(NOTEBOOKS.glob("*.ipynb")))
            raise ValueError(f"notebook {name!r} not found; allowed: a .ipynb path or one of {allowed}")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="paths or names in notebooks/ (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "notebooks")
    parser.add_argument("--smoke", action="store_true", help="HSTLAB_SMOKE=1: small sizes")
    parser.add_argument("--html", action="store_true", help="also write an HTML page each")
    args = parser.parse_args(argv)
    try:
        paths = _notebooks(args.notebooks)
    except ValueError as exc:
        print(f"run_notebooks: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        t0 = time.perf_counter()
        dest = run_notebook(path, args.out, smoke=args.smoke, html=args.html)
        print(f"{path.name}: {time.perf_counter() - t0:.0f} s, "
              f"{dest.stat().st_size / 1e6:.1f} MB, signed -> {dest}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
