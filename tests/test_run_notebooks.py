"""``make notebooks`` (tools/run_notebooks.py): executed copies are signed, carry the plotting
bundle once and link nothing outside the file."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest
from nbformat.sign import NotebookNotary

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "tools" / "run_notebooks.py")
run_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_notebooks)

BUNDLE_MIN_CHARS = 1_000_000  # BokehJS inline is ~3 MB; nothing else in an output comes close

PLOT_CELLS = [
    "import holoviews as hv\nimport panel as pn\nimport torch\n\nfrom hstlab import viz\n\n"
    'hv.extension("bokeh", inline=True)\npn.extension(inline=True)',
    "x = 6 * 7\nprint('answer', x)",
    "viz.spike_raster((torch.rand(8, 12) < 0.3).float())  # [T, neurons]",
]


def _notebook(path: Path, cells: list[str]) -> Path:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)
    return path


def _values(nb: nbformat.NotebookNode) -> list[str]:
    out = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            for value in output.get("data", {}).values():
                out.append(value if isinstance(value, str) else json.dumps(value))
    return out


def test_executed_notebook_is_signed_with_one_bundle_and_no_cdn(tmp_path: Path) -> None:
    (tmp_path / "jupyter-data").mkdir()
    notary = NotebookNotary(data_dir=str(tmp_path / "jupyter-data"))  # not the user's signatures
    src = _notebook(tmp_path / "plots.ipynb", PLOT_CELLS)
    assert not notary.check_signature(nbformat.read(src, as_version=4))

    dest = run_notebooks.run_notebook(src, tmp_path / "out", smoke=True, notary=notary)

    nb = nbformat.read(dest, as_version=4)
    assert notary.check_signature(nb), "the executed copy is not signed"
    (tmp_path / "other").mkdir()
    assert not NotebookNotary(data_dir=str(tmp_path / "other")).check_signature(nb)
    assert "answer 42" in "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert nb.cells[2].outputs, "the plot cell produced no output"
    bundles = [v for v in _values(nb) if len(v) > BUNDLE_MIN_CHARS]
    assert len(bundles) == 1, f"the BokehJS bundle is stored {len(bundles)} times"
    assert dest.stat().st_size < 4_000_000, dest.stat().st_size
    links = [v for v in _values(nb) if "cdn.holoviz.org" in v or "cdn.bokeh.org" in v]
    assert not links, f"outputs link a CDN: {links[0][:200]}"
    assert nbformat.read(src, as_version=4).cells[1].outputs == [], "the source was modified"


def test_drop_duplicate_bundles_keeps_the_jupyterlab_copy() -> None:
    script = "var bundle = 1;"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[
        nbformat.v4.new_output("display_data", data={
            run_notebooks.JS_MIME: script, run_notebooks.LOAD_MIME: script}),
        nbformat.v4.new_output("display_data", data={run_notebooks.JS_MIME: "other();"}),
    ])])
    assert run_notebooks.drop_duplicate_bundles(nb) == len(script)
    first, second = nb.cells[0].outputs
    assert dict(first.data) == {run_notebooks.LOAD_MIME: script}
    assert dict(second.data) == {run_notebooks.JS_MIME: "other();"}  # no JupyterLab copy: kept


def test_unknown_notebook_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_notebooks.main(["99_nothing.ipynb"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "99_nothing.ipynb" in err and "01_quickstart" in err
