"""The library root exports library names only: the explorer app lives in hstlab.ui."""

from __future__ import annotations

import importlib

import pytest

import hstlab

UI_MODULES = ("hstlab.ui",)


def test_root_exports_nothing_from_the_ui() -> None:
    from hstlab import _EXPORTS

    ui = sorted(name for name, home in _EXPORTS.items() if home.startswith(UI_MODULES))
    assert not ui, f"hstlab exports UI names {ui}; import them from hstlab.ui"


@pytest.mark.parametrize("name", ["ExplorerState", "create_app"])
def test_ui_classes_come_from_hstlab_ui_only(name: str) -> None:
    assert name not in dir(hstlab)
    with pytest.raises(AttributeError, match=name):
        getattr(hstlab, name)
    assert getattr(importlib.import_module("hstlab.ui"), name) is not None


def test_layers_frame_is_a_viz_function() -> None:
    cfg = hstlab.HSTConfig.from_preset("tiny").with_modes("ST")
    frame = hstlab.viz.layers_frame(cfg)
    assert list(frame["attn_mode"]) == ["spiking", "standard"]
    assert len(frame) == cfg.n_layer
