"""Every notebook in notebooks/ is committed clean (no outputs), uses smoke mode and renders offline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
SMOKE_CALL = re.compile(r"\b(pick|smoke_mode)\(")
SMOKE_IMPORT = re.compile(r"from hstlab(\.runtime)? import [^\n]*\b(pick|smoke_mode)\b|import hstlab\b")
NAME = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _code(path: Path) -> str:
    return "\n".join("".join(c["source"]) for c in _cells(path) if c["cell_type"] == "code")


def test_notebooks_exist() -> None:
    assert len(NOTEBOOKS) >= 10, f"expected at least 10 notebooks in {NOTEBOOKS_DIR}, found {len(NOTEBOOKS)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_outputs_or_execution_counts(path: Path) -> None:
    for i, cell in enumerate(_cells(path)):
        if cell["cell_type"] != "code":
            continue
        assert cell.get("outputs") == [], f"{path.name} cell {i} has outputs; run nbconvert --clear-output"
        assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_cell_has_a_unique_id(path: Path) -> None:
    """nbformat 4.5 cells carry ids; a hand-added cell without one warns now and fails in future nbformat."""
    ids = [cell.get("id") for cell in _cells(path)]
    missing = [i for i, cell_id in enumerate(ids) if not cell_id]
    assert not missing, f"{path.name} cells {missing} have no id (nbformat.validator.normalize adds them)"
    assert len(set(ids)) == len(ids), f"{path.name} has duplicate cell ids"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_uses_smoke_mode(path: Path) -> None:
    code = _code(path)
    assert SMOKE_CALL.search(code), f"{path.name} never calls hstlab.pick(...) or smoke_mode()"
    assert SMOKE_IMPORT.search(code), f"{path.name} does not import pick/smoke_mode from hstlab"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_renders_offline(path: Path) -> None:
    code = _code(path)
    if "holoviews" in code:
        assert re.search(r"hv\.extension\([^)]*inline=True", code), f"{path.name}: hv.extension without inline=True"
    if "import panel" in code:
        assert re.search(r"pn\.extension\([^)]*inline=True", code), f"{path.name}: pn.extension without inline=True"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_named_and_indexed(path: Path) -> None:
    assert NAME.match(path.name), f"{path.name} should be named NN_lowercase_words.ipynb"
    readme = (NOTEBOOKS_DIR / "README.md").read_text(encoding="utf-8")
    assert path.name in readme, f"{path.name} is not listed in notebooks/README.md"


HSTLAB_IMPORT = re.compile(r"^\s*(?:from|import)\s+(hstlab(?:\.\w+)*)", re.MULTILINE)
UI_PACKAGES = ("hstlab.ui",)  # the explorer app: notebooks use the library and hstlab.viz, never the app


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_imports_no_ui_package(path: Path) -> None:
    modules = HSTLAB_IMPORT.findall(_code(path))
    assert modules, f"{path.name} imports nothing from hstlab"
    ui = [m for m in modules if m.startswith(UI_PACKAGES)]
    assert not ui, f"{path.name} imports {ui}; use hstlab or hstlab.viz (e.g. viz.layers_frame)"


def test_ui_import_pattern_catches_a_ui_import() -> None:
    code = "import torch\nfrom hstlab.ui.state import layers_frame\nimport hstlab\n"
    assert HSTLAB_IMPORT.findall(code) == ["hstlab.ui.state", "hstlab"]
