"""Trainer on the real HST-Net (tiny preset): exact reload, exact resume across a mode switch."""

from __future__ import annotations

import pytest
import torch
from test_train_support import Kill, kill_at, one_thread, splits  # noqa: F401

import hstlab
from hstlab.train import Trainer, load_checkpoint, read_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cfg(**overrides):
    return hstlab.HSTConfig.from_preset("tiny", num_classes=4, input_shape=(2, 8, 8), **overrides)


def make(cfg, **kw):
    torch.manual_seed(0)
    model = hstlab.build_model(cfg)
    train, val, test = splits(24, 8, 8)
    kw.setdefault("epochs", 2)
    return Trainer(model, cfg, train, val, test, batch_size=8, lr=5e-3, seed=0, build_fn=hstlab.build_model,
                   measure_energy=False, **kw)


def test_best_checkpoint_rebuilds_from_config_and_reproduces_val(tmp_path):
    trainer = make(tiny_cfg(), run_dir=tmp_path)
    metrics = trainer.fit()
    model, cfg, meta = load_checkpoint(tmp_path)  # run dir -> best checkpoint, default builder
    assert isinstance(model, hstlab.HSTNet) and cfg.modes == "SS"
    again = trainer.evaluate(trainer.val_data, model)
    assert again["accuracy"] == metrics["val_accuracy"] and again["loss"] == metrics["val_loss"]
    assert meta["val_loss"] == metrics["val_loss"]


def test_resume_across_a_mode_switch_is_exact(tmp_path):
    cfg = tiny_cfg(mode_schedule=((0, "TS"), (1, "SS")))
    full = make(cfg, run_dir=tmp_path / "full", checkpoint_every=2)
    ref = full.fit()
    cut = make(cfg, run_dir=tmp_path / "cut", checkpoint_every=2, callbacks=kill_at(5))
    with pytest.raises(Kill):
        cut.fit()
    saved = read_checkpoint(tmp_path / "cut" / "last.safetensors")
    assert saved["train_state"]["step"] == 4 and saved["meta"]["modes"] == "SS"  # after the switch
    resumed = make(cfg, resume=tmp_path / "cut")  # starts from an all-"S" model built from cfg
    got = resumed.fit()
    assert resumed.cfg.modes == full.cfg.modes == "SS"
    for key in ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "best_epoch", "modes"):
        assert got[key] == ref[key], key
    ref_state = full.model.state_dict()
    for name, value in resumed.model.state_dict().items():
        assert torch.equal(value, ref_state[name]), name


def test_mode_switch_carries_shared_tensors_and_moments():
    cfg = tiny_cfg(mode_schedule=((1, "ST"),))
    trainer = make(cfg)
    x, y = next(iter(trainer._loader(trainer.train_data, [list(range(8))])))
    trainer._train_step(x, y)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    moments = {n: trainer.optimizer.state[p]["exp_avg"].clone() for n, p in trainer._named_params()}
    assert trainer._apply_mode_schedule(1) and trainer.cfg.modes == "ST"
    after = trainer.model.state_dict()
    shared = [k for k in after if k in before and after[k].shape == before[k].shape]
    assert len(shared) > 10 and set(after) != set(before)  # layer 1 changed its modules
    assert all(torch.equal(after[k], before[k]) for k in shared)
    carried = [n for n, p in trainer._named_params() if n in moments]
    assert carried and all(torch.equal(trainer.optimizer.state[p]["exp_avg"], moments[n])
                           for n, p in trainer._named_params() if n in moments)
    trainer._train_step(x, y)  # the new optimizer steps the new model
