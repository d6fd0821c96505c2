"""RandomShift augmentation: exact translation without wrap-around, training batches only, exact resume."""

from __future__ import annotations

import pytest
import torch
from test_train_hstnet import make, tiny_cfg
from test_train_support import Kill, kill_at, one_thread  # noqa: F401

from hstlab.data import RandomShift
from hstlab.train import read_checkpoint
from hstlab.train.run import train_run

pytestmark = pytest.mark.usefixtures("one_thread")


def test_each_sample_moves_by_its_drawn_offset_at_every_step():
    x = torch.rand(3, 4, 2, 9, 9)  # [T, B, C, H, W]
    torch.manual_seed(5)
    y = RandomShift(2)(x)
    torch.manual_seed(5)
    corners = torch.randint(0, 5, (4, 2)).tolist()  # the same draw: padded-frame crop corners
    for b, (cy, cx) in enumerate(corners):
        dy, dx = 2 - cy, 2 - cx  # content moves down/right by (dy, dx)
        expected = torch.zeros_like(x[:, b])
        src = x[:, b, :, max(0, -dy):9 - max(0, dy), max(0, -dx):9 - max(0, dx)]
        expected[:, :, max(0, dy):max(0, dy) + src.shape[-2], max(0, dx):max(0, dx) + src.shape[-1]] = src
        torch.testing.assert_close(y[:, b], expected)


def test_events_pushed_out_are_dropped_not_wrapped():
    x = torch.zeros(2, 64, 1, 5, 5)
    x[:, :, :, :, 0] = 1.0  # a column of events on the left edge
    y = RandomShift(1)(x)
    assert y[..., -1].sum() == 0  # nothing wrapped round to the right edge
    kept = y.sum(dim=(0, 2, 3, 4))
    assert set(kept.tolist()) <= {0.0, 2 * 4.0, 2 * 5.0}  # column dropped, or moved by at most one row
    assert (kept == 0).any() and (kept > 0).any()


@pytest.mark.parametrize("bad", [-1, True, 1.5])
def test_bad_shift_names_the_argument(bad):
    with pytest.raises(ValueError, match="max_shift"):
        RandomShift(bad)


def test_frames_only():
    with pytest.raises(ValueError, match=r"\[T, B, C, H, W\]"):
        RandomShift(1)(torch.zeros(4, 2, 8))
    assert torch.equal(RandomShift(0)(torch.ones(1, 1, 1, 2, 2)), torch.ones(1, 1, 1, 2, 2))


def test_trainer_augments_training_batches_only():
    seen: list[tuple[int, ...]] = []

    def record(x):
        seen.append(tuple(x.shape))
        return x

    trainer = make(tiny_cfg(), epochs=1, augment=record)
    trainer.fit()
    assert len(seen) == trainer.total_steps == 3  # 24 training samples in batches of 8; val/test untouched
    with pytest.raises(ValueError, match="augment"):
        make(tiny_cfg(), augment="shift")


def test_resume_with_augmentation_is_exact(tmp_path):
    full = make(tiny_cfg(), run_dir=tmp_path / "full", checkpoint_every=2, augment=RandomShift(2))
    ref = full.fit()
    cut = make(tiny_cfg(), run_dir=tmp_path / "cut", checkpoint_every=2, augment=RandomShift(2),
               callbacks=kill_at(3))
    with pytest.raises(Kill):
        cut.fit()
    assert read_checkpoint(tmp_path / "cut" / "last.safetensors")["train_state"]["step"] == 2
    got = make(tiny_cfg(), resume=tmp_path / "cut", augment=RandomShift(2)).fit()
    assert got["val_loss"] == ref["val_loss"] and got["steps"] == ref["steps"]
    a = read_checkpoint(tmp_path / "full" / "last.safetensors")["model"]
    b = read_checkpoint(tmp_path / "cut" / "last.safetensors")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_run_rejects_shift_on_non_frames(tmp_path):
    with pytest.raises(ValueError, match="augment_shift=2 needs frames"):
        train_run("tiny", "lorenz-spikes", run_dir=tmp_path, epochs=1, limit=8, time_bins=12,
                  dataset_options={"neurons": 8, "trials": 20}, augment_shift=2)
    with pytest.raises(ValueError, match="augment_shift"):
        train_run("tiny", "digits-dvs", run_dir=tmp_path, epochs=1, limit=8, augment_shift=-1)
