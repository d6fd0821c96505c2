"""LiveCurves.show(): the PNG a training cell redraws in place (fast; the browser test is
tests/test_live_browser.py)."""

from __future__ import annotations

import base64
import math
import struct
import warnings

import pandas as pd
import pytest

from hstlab.train import TrainEvent
from hstlab.viz import LiveCurves
from hstlab.viz.live_image import NotebookImage, render_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == PNG_MAGIC
    return struct.unpack(">II", png[16:24])  # IHDR width, height


class FakeHandle:
    def __init__(self, fail: bool = False) -> None:
        self.bundles: list[dict] = []
        self.fail = fail

    def update(self, bundle, raw=False):
        if self.fail:
            raise ConnectionError("front end closed")
        self.bundles.append(bundle)


@pytest.fixture
def shown(monkeypatch):
    """``IPython.display.display`` replaced: records the first bundle, returns a fake handle."""
    handle = FakeHandle()

    def display(bundle, raw=False, display_id=None):
        assert raw and display_id is True
        handle.bundles.append(bundle)
        return handle

    monkeypatch.setattr("IPython.display.display", display)
    return handle


def test_render_png_fits_a_notebook_column_and_survives_gaps():
    steps = pd.DataFrame({"step": [1.0, 2.0, 3.0], "loss": [2.3, math.nan, 1.9],
                          "accuracy": [0.1, 0.2, 0.3]})
    epochs = pd.DataFrame({"step": [3.0], "loss": [2.0], "val_loss": [2.1],
                           "accuracy": [0.2], "val_accuracy": [math.nan]})
    width, height = png_size(render_png(steps, epochs, ("loss", "accuracy"), {"loss": "loss"}))
    assert (width, height) == (940, 260)  # two 470 px panels: one 1,000 px column
    w3, h3 = png_size(render_png(steps.iloc[:0], epochs.iloc[:0], ("loss", "accuracy", "x"), {}))
    assert (w3, h3) == (940, 520)  # empty frames draw "waiting for data", an odd count a hole


def test_show_redraws_in_place_and_always_draws_the_final_state(shown):
    live = LiveCurves(metrics=("loss", "accuracy"), min_interval_s=0)
    live.show(interval_s=3600)  # nothing is due between the first and the forced draw
    assert shown.bundles[0]["text/plain"].endswith("waiting for the first step")
    for s in range(1, 6):
        live(TrainEvent(kind="step", step=s, epoch=0, loss=1.0 / s, accuracy=0.1 * s))
    assert len(shown.bundles) == 1  # throttled
    live(TrainEvent(kind="fit_end", step=5, epoch=0, loss=0.2))
    assert len(shown.bundles) == 2
    final = shown.bundles[-1]
    assert final["text/plain"] == "step 5, epoch 0: loss 0.2, accuracy 0.5"
    png = base64.b64decode(final["image/png"])
    assert png_size(png) == (940, 260)
    assert png != base64.b64decode(shown.bundles[0]["image/png"])


def test_show_sends_while_due(shown):
    live = LiveCurves(metrics=("loss",), min_interval_s=0)
    live.show(interval_s=0)
    live.view._cost = 0.0  # drawing "took no time": every push is due
    for s in range(1, 4):
        live(TrainEvent(kind="step", step=s, epoch=0, loss=float(s)))
        live.view._cost = 0.0
    assert [b["text/plain"] for b in shown.bundles[1:]] == [
        "step 1, epoch 0: loss 1", "step 2, epoch 0: loss 2", "step 3, epoch 0: loss 3"]


def test_a_broken_front_end_turns_the_chart_off_not_the_training(monkeypatch):
    handle = FakeHandle(fail=True)
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: handle)
    live = LiveCurves(metrics=("loss",), min_interval_s=0)
    live.show(interval_s=0)
    with pytest.warns(RuntimeWarning, match="live chart turned off: ConnectionError"):
        live(TrainEvent(kind="fit_end", step=1, epoch=0, loss=1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reported once: later events neither warn nor raise
        live(TrainEvent(kind="step", step=2, epoch=0, loss=1.0))
        live(TrainEvent(kind="fit_end", step=2, epoch=0, loss=1.0))
    assert live.view.failed.startswith("ConnectionError") and live.buffer.data["step"].tolist() == [2]


def test_notebook_image_rejects_a_negative_interval():
    with pytest.raises(ValueError, match="interval_s=-1"):
        NotebookImage(lambda: b"", interval_s=-1)


def test_kernel_sends_display_updates_during_the_cell():
    """A real (in-process) IPython kernel: ``display_data`` then ``update_display_data`` with
    the same display id, emitted while the cell executes (before its reply)."""
    pytest.importorskip("ipykernel")
    from ipykernel.inprocess.manager import InProcessKernelManager
    from IPython.core.interactiveshell import InteractiveShell

    had_shell = InteractiveShell.initialized()
    km = InProcessKernelManager()
    km.start_kernel()
    kc = km.client()
    try:
        kc.start_channels()
        kc.execute(
            "from hstlab.train import TrainEvent\n"
            "from hstlab.viz import LiveCurves\n"
            "live = LiveCurves(metrics=('loss',))\n"
            "live.show(interval_s=0)\n"
            "for s in range(1, 4):\n"
            "    live(TrainEvent(kind='step', step=s, epoch=0, loss=1.0 / s))\n"
            "live(TrainEvent(kind='fit_end', step=3, epoch=0, loss=0.3))\n"
        )
        msgs = [m for m in kc.iopub_channel.get_msgs() if "transient" in m["content"]]
    finally:
        kc.stop_channels()
        km.shutdown_kernel()
        if not had_shell:  # later tests must not publish to this dead kernel
            InteractiveShell.clear_instance()
    kinds = [m["msg_type"] for m in msgs]
    assert kinds[0] == "display_data" and kinds[1:] and set(kinds[1:]) == {"update_display_data"}
    assert len({m["content"]["transient"]["display_id"] for m in msgs}) == 1
    assert msgs[-1]["content"]["data"]["text/plain"] == "step 3, epoch 0: loss 0.3333"
    assert base64.b64decode(msgs[-1]["content"]["data"]["image/png"])[:8] == PNG_MAGIC
