"""Sphinx configuration: MyST Markdown pages plus API pages from the docstrings.

Built offline by ``make docs`` (and by tests/test_docs.py with ``-W``): no intersphinx, no
remote theme assets, every warning is an error.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # document this checkout, not an installed copy
os.environ.setdefault("HSTLAB_SMOKE", "1")

project = "hstlab"
author = "hstlab authors"
copyright = "hstlab authors"  # noqa: A001 - the name Sphinx reads
version = release = "0.1.0"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # the docstrings' "Example:" / "Args:" sections
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

autosummary_generate = False  # the API pages are written by hand: nothing is generated into docs/
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "alabaster"  # ships with Sphinx: no download
html_static_path: list[str] = []
html_show_sphinx = False
html_theme_options = {"show_powered_by": False}
