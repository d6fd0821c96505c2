"""Trainer: learning, events, run directory, checkpoints, exact resume, divergence, mode schedules."""

from __future__ import annotations

import csv
import itertools
import json
import math

import pytest
import torch
from test_train_support import Kill, build_standin, one_thread, small_cfg, splits  # noqa: F401
from test_train_support import kill_at as kill_callback

from hstlab.train import Trainer, TrainEvent, TrainingDiverged, load_checkpoint, read_checkpoint
from hstlab.train.checkpoint import run_checkpoint
from hstlab.train.meters import SpikeRateMeter
from hstlab.train.trainer import default_collate

pytestmark = pytest.mark.usefixtures("one_thread")


def make_trainer(cfg=None, seed=0, **kw):
    cfg = cfg or small_cfg()
    torch.manual_seed(seed)
    model = build_standin(cfg)
    train, val, test = splits()
    kw.setdefault("epochs", 2)
    kw.setdefault("batch_size", 8)
    kw.setdefault("lr", 5e-3)
    return Trainer(model, cfg, train, val, test, seed=seed, build_fn=build_standin, **kw)


class Recorder:
    def __init__(self):
        self.events: list[TrainEvent] = []

    def on_step_end(self, ev):
        self.events.append(ev)

    def on_epoch_end(self, ev):
        self.events.append(ev)

    def on_fit_end(self, ev):
        self.events.append(ev)


def test_collate_puts_time_first():
    batch = [(torch.zeros(3, 2, 4, 4), 1), (torch.ones(3, 2, 4, 4), 2)]
    x, y = default_collate(batch)
    assert x.shape == (3, 2, 2, 4, 4) and torch.equal(x[:, 1], torch.ones(3, 2, 4, 4))
    assert y.tolist() == [1, 2]
    seq = [(torch.zeros(5, 3), torch.zeros(5, 3)), (torch.ones(5, 3), torch.ones(5, 3))]
    xs, ys = default_collate(seq)
    assert xs.shape == (5, 2, 3) and ys.shape == (5, 2, 3) and ys[:, 1].eq(1).all()


def test_fit_learns_and_writes_run_dir(tmp_path):
    rec = Recorder()
    seen = []
    trainer = make_trainer(epochs=3, run_dir=tmp_path, callbacks=[rec, seen.append])
    metrics = trainer.fit()
    assert metrics["val_accuracy"] > 0.5  # 4 classes: chance is 0.25
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    for key in ("val_accuracy", "test_accuracy", "train_seconds", "energy_per_sample_j", "seed", "versions"):
        assert key in json.loads((tmp_path / "metrics.json").read_text())
    names = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "metrics.json", "history.csv", "last.safetensors", "best.safetensors"} <= names
    assert not any(n.endswith((".pt", ".pth", ".pkl")) for n in names)  # no pickle in a run directory
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    kinds = [e.kind for e in rec.events]
    assert kinds.count("step") == 3 * 6 and kinds.count("epoch") == 3 and kinds[-1] == "fit_end"
    assert [e.kind for e in seen] == kinds  # plain callables receive every event
    step = rec.events[0]
    assert step.step == 1 and step.epoch == 0 and math.isfinite(step.loss) and 0 <= step.firing_rate <= 1
    epoch_ev = [e for e in rec.events if e.kind == "epoch"][-1]
    assert epoch_ev.val_accuracy is not None and epoch_ev.val_firing_rate is not None
    end = rec.events[-1]
    assert end.test_accuracy == metrics["test_accuracy"] and end.val_accuracy == metrics["val_accuracy"]


def test_best_checkpoint_reloads_to_reported_accuracy(tmp_path):
    trainer = make_trainer(epochs=2, run_dir=tmp_path)
    metrics = trainer.fit()
    model, cfg, meta = load_checkpoint(run_checkpoint(tmp_path), build_fn=build_standin)
    assert cfg == trainer.cfg and not model.training
    again = trainer.evaluate(trainer.val_data, model)
    assert again["accuracy"] == metrics["val_accuracy"] == meta["val_accuracy"]
    assert again["loss"] == metrics["val_loss"]
    from safetensors import safe_open

    with safe_open(str(tmp_path / "best.safetensors"), framework="pt") as f:  # tensors + JSON metadata only
        assert {"config", "meta", "format"} <= set(f.metadata()) and any(k.startswith("model/") for k in f.keys())


def test_test_split_evaluated_once_at_the_end():
    trainer = make_trainer(epochs=2)
    calls = []
    original = trainer.evaluate

    def spy(data, model=None, max_batches=None):
        calls.append("test" if data is trainer.test_data else "val")
        return original(data, model, max_batches)

    trainer.evaluate = spy
    trainer.fit()
    assert calls.count("test") == 1 and calls[-1] == "test"


@pytest.mark.parametrize("kill_at", [4, 9])
def test_resume_after_kill_matches_uninterrupted(tmp_path, kill_at):
    full = make_trainer(epochs=3, run_dir=tmp_path / "full", checkpoint_every=4, loss="cross_entropy")
    ref = full.fit()
    broken = make_trainer(epochs=3, run_dir=tmp_path / "cut", checkpoint_every=4, callbacks=kill_callback(kill_at))
    with pytest.raises(Kill):
        broken.fit()
    state = read_checkpoint(run_checkpoint(tmp_path / "cut", "last"))["train_state"]
    assert state["step"] == 4 * (kill_at // 4) and state["pos"] > 0  # a mid-epoch checkpoint
    resumed = make_trainer(epochs=3, resume=tmp_path / "cut", seed=0)
    got = resumed.fit()
    for key in ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "steps", "best_epoch"):
        assert got[key] == ref[key], key
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    drop = {"seconds"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed.progress.history] == \
        [{k: v for k, v in r.items() if k not in drop} for r in full.progress.history]


def test_nan_loss_raises_and_keeps_last_good_checkpoint(tmp_path):
    def poison(ev):
        if ev.kind == "step" and ev.step == 7:
            with torch.no_grad():
                trainer.model.head.weight.fill_(float("nan"))

    trainer = make_trainer(epochs=3, run_dir=tmp_path, checkpoint_every=3, callbacks=poison)
    with pytest.raises(TrainingDiverged, match="loss is nan at step 8"):
        trainer.fit()
    ckpt = read_checkpoint(run_checkpoint(tmp_path, "last"))
    assert ckpt["train_state"]["step"] == 6
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_warmup_and_clipping_reach_the_optimizer():
    trainer = make_trainer(epochs=2, warmup_frac=0.1, lr=1e-2, grad_clip=0.5)
    lrs, norms = [], []
    original = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *a, **k):
        norms.append(max_norm)
        return original(params, max_norm, *a, **k)

    torch.nn.utils.clip_grad_norm_ = spy
    try:
        trainer.callbacks = [lambda ev: lrs.append(ev.lr) if ev.kind == "step" else None]
        trainer.fit()
    finally:
        torch.nn.utils.clip_grad_norm_ = original
    assert trainer.scheduler.warmup_steps == 2  # ceil(0.1 * 12)
    assert lrs[0] == pytest.approx(5e-3) and lrs[1] == pytest.approx(1e-2)
    assert lrs[-1] < lrs[2] and all(a >= b for a, b in itertools.pairwise(lrs[1:]))
    assert norms and set(norms) == {0.5}


def test_mode_schedule_rebuilds_and_carries_weights():
    cfg = small_cfg(mode_schedule=((0, "TT"), (1, "ST")))
    trainer = make_trainer(cfg=cfg, epochs=2)
    seen = []
    trainer.callbacks = [lambda ev: seen.append(ev.modes)]
    assert trainer._apply_mode_schedule(0)
    assert trainer.cfg.modes == "TT" and hasattr(trainer.model.blocks[0], "gain")
    trainer.fit()
    assert seen[0] == "TT" and seen[-2] == "ST"
    assert trainer.cfg.modes == "ST" and not hasattr(trainer.model.blocks[0], "gain")


def test_mode_switch_keeps_shared_weights_and_adam_state():
    cfg = small_cfg(mode_schedule=((1, "ST"),))
    trainer = make_trainer(cfg=cfg, epochs=2)
    x, y = default_collate([trainer.train_data[i] for i in range(8)])
    trainer._train_step(x, y)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    old_moment = trainer.optimizer.state[trainer.model.embed.weight]["exp_avg"].clone()
    assert trainer._apply_mode_schedule(1)
    after = trainer.model.state_dict()
    assert trainer.cfg.modes == "ST"
    for k, v in after.items():
        if k in before:
            assert torch.equal(v, before[k]), k  # every surviving tensor carried over
    assert torch.equal(after["blocks.1.gain"], torch.ones(16))  # new parameter: fresh init
    assert torch.equal(trainer.optimizer.state[trainer.model.embed.weight]["exp_avg"], old_moment)
    assert not hasattr(trainer.model.blocks[0], "gain") and hasattr(trainer.model.blocks[1], "gain")


def test_spike_rate_meter_counts_only_spiking_neurons():
    cfg = small_cfg()
    model = build_standin(cfg)
    meter = SpikeRateMeter(model)
    assert meter.has_neurons
    spikes = []
    for block in model.blocks:
        block.act.register_forward_hook(lambda m, i, o: spikes.append(o.detach()))
    model(torch.rand(2, 3, *cfg.input_shape))
    expected = sum(float(s.sum()) for s in spikes) / sum(s.numel() for s in spikes)
    assert meter.rate() == pytest.approx(expected)
    meter.reset()
    assert meter.rate() is None
    meter.close()


def test_train_config_sets_the_schedule_and_keywords_override_it():
    from hstlab.data.augment import RandomShift
    from hstlab.train.config import TrainConfig

    tc = TrainConfig(epochs=3, batch_size=16, lr=2e-3, warmup_frac=0.1, grad_clip=None, augment_shift=1)
    cfg = small_cfg()
    train, val, test = splits()
    trainer = Trainer(build_standin(cfg), cfg, train, val, test, train_config=tc, lr=4e-3)
    assert trainer.train_config == tc.replace(lr=4e-3)
    assert (trainer.epochs, trainer.batch_size, trainer.lr, trainer.grad_clip) == (3, 16, 4e-3, None)
    assert trainer.total_steps == 3 * 3 and trainer.scheduler.warmup_steps == 1
    assert isinstance(trainer.augment, RandomShift) and trainer.augment.max_shift == 1
    assert Trainer(build_standin(cfg), cfg, train, val).epochs == 1  # DEFAULT_TRAIN_CONFIG
    with pytest.raises(ValueError, match=r"unknown training field\(s\) \['epoch'\]"):
        Trainer(build_standin(cfg), cfg, train, val, epoch=2)
    with pytest.raises(ValueError, match="train_config=.* must be a TrainConfig"):
        Trainer(build_standin(cfg), cfg, train, val, train_config={"epochs": 2})
    with pytest.raises(ValueError, match="both set the augmentation"):
        Trainer(build_standin(cfg), cfg, train, val, train_config=tc, augment=RandomShift(2))


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="batch_size=0"):
        make_trainer(batch_size=0)
    with pytest.raises(ValueError, match="warmup_frac=0.9"):
        make_trainer(warmup_frac=0.9)
    with pytest.raises(ValueError, match="callbacks\\[0\\]"):
        make_trainer(callbacks=[object()])
    with pytest.raises(ValueError, match="device='tpu' is not allowed; allowed: cpu, cuda, cuda:N"):
        make_trainer(device="tpu")


def test_max_seconds_stops_early():
    trainer = make_trainer(epochs=50, max_seconds=0.05)
    metrics = trainer.fit()
    assert metrics["stop_reason"].startswith("max_seconds") and metrics["steps"] < 50 * 6


def test_request_stop_ends_after_the_current_step(tmp_path):
    trainer = make_trainer(epochs=5, run_dir=tmp_path)

    def stop_at_third_step(event):
        if event.kind == "step" and event.step == 3:
            trainer.request_stop("user pressed stop")

    trainer.callbacks.append(stop_at_third_step)
    metrics = trainer.fit()
    assert metrics["stop_reason"] == "user pressed stop" and metrics["steps"] == 3
    assert run_checkpoint(tmp_path, "last").is_file() and run_checkpoint(tmp_path).is_file()
