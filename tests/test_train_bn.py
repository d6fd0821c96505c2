"""BatchNorm recalibration before validation: eval-mode networks must not fall silent after short runs.

Bug: epoch events reported ``val_firing_rate`` near 0 while training fired at ~0.03. With
momentum 0.1 the running variance still held mostly its initial 1.0 after a few steps while
the real batch variance of sparse spike input is ~1e-2, so every eval-mode neuron after the
first BatchNorm stayed below threshold.
"""

from __future__ import annotations

import pytest
import torch
from test_train_support import one_thread  # noqa: F401
from torch import nn

import hstlab
from hstlab.train import Trainer, TrainEvent
from hstlab.train.trainer import default_collate

pytestmark = pytest.mark.usefixtures("one_thread")


def spike_frames(n: int, shape=(2, 16, 16), steps: int = 2, classes: int = 4, seed: int = 0):
    """Sparse binary event frames [T, C, H, W] (about 5 % ones), labels cycling over ``classes``."""
    g = torch.Generator().manual_seed(seed)
    return [((torch.rand(steps, *shape, generator=g) < 0.05).float(), i % classes) for i in range(n)]


def make_trainer(recal: int, **kw) -> Trainer:
    cfg = hstlab.HSTConfig.from_preset("tiny", num_classes=4)
    torch.manual_seed(0)
    model = hstlab.build_model(cfg)
    data = spike_frames(16)
    return Trainer(model, cfg, data[:12], data[12:], epochs=1, batch_size=4, measure_energy=False,
                   bn_recalibration_batches=recal, **kw)


def test_val_firing_rate_tracks_training_after_a_short_run():
    events: list[TrainEvent] = []
    make_trainer(8, callbacks=[events.append]).fit()
    epoch = next(e for e in events if e.kind == "epoch")
    assert epoch.firing_rate > 0.005
    assert epoch.val_firing_rate > 0.3 * epoch.firing_rate  # before the fix: ~0.05x

    silent: list[TrainEvent] = []
    make_trainer(0, callbacks=[silent.append]).fit()  # recalibration off reproduces the bug
    off = next(e for e in silent if e.kind == "epoch")
    assert off.val_firing_rate < 0.3 * off.firing_rate


def test_recalibration_sets_running_stats_to_the_batch_average():
    trainer = make_trainer(2)
    bn = trainer.model.tokenizer.norms[0]  # its input (first conv of raw frames) does not depend on BN state
    seen: list[torch.Tensor] = []
    handle = bn.register_forward_hook(lambda m, i, o: seen.append(i[0].detach().clone()))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    used = trainer.recalibrate_batchnorm()
    handle.remove()
    assert used == 2 and len(seen) == 2
    assert torch.equal(torch.get_rng_state(), before)  # training randomness untouched
    means = torch.stack([s.mean(dim=(0, 2, 3)) for s in seen])  # [batches, C]
    variances = torch.stack([s.transpose(0, 1).flatten(1).var(dim=1, unbiased=True) for s in seen])
    torch.testing.assert_close(bn.running_mean, means.mean(0), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(bn.running_var, variances.mean(0), rtol=1e-4, atol=1e-7)
    assert bn.momentum == 0.1 and trainer.model.training


def test_recalibration_uses_fixed_training_batches():
    trainer = make_trainer(1)
    x, _ = default_collate(trainer.train_data[:4])
    trainer.recalibrate_batchnorm()
    first = {k: v.clone() for k, v in trainer.model.state_dict().items() if "running" in k}
    trainer.model.train()
    with torch.no_grad():  # disturb the stats, then recalibrate again: same result
        trainer.model.reset_state()
        trainer.model(x * 3)
    trainer.recalibrate_batchnorm()
    for k, v in trainer.model.state_dict().items():
        if "running" in k:
            assert torch.equal(v, first[k]), k


def test_recalibration_batches_mix_classes_of_a_class_sorted_split():
    """Bug: calibration took the first batches in stored order; digits-dvs is sorted by class, so
    the statistics came from class-pure batches of the first two digits (val accuracy fell by
    10-20 points in eval mode against batch statistics)."""
    cfg = hstlab.HSTConfig.from_preset("tiny", num_classes=4)
    data = sorted(spike_frames(64), key=lambda item: item[1])  # 16 of class 0, then class 1, ...
    trainer = Trainer(hstlab.build_model(cfg), cfg, data, data[:8], epochs=1, batch_size=8,
                      measure_energy=False, bn_recalibration_batches=3)
    batches = trainer._calibration_batches()
    assert [len(b) for b in batches] == [8, 8, 8]
    for batch in batches:
        assert len({data[i][1] for i in batch}) >= 3  # mixed, not class-pure
    assert len({i for b in batches for i in b}) == 24  # no repeats
    assert batches == trainer._calibration_batches()  # fixed: same batches every epoch


def test_bad_recalibration_count_names_the_argument():
    with pytest.raises(ValueError, match="bn_recalibration_batches"):
        make_trainer(-1)
    with pytest.raises(ValueError, match="bn_recalibration_batches"):
        make_trainer(True)


def test_models_without_batchnorm_are_left_alone():
    trainer = make_trainer(4)
    assert trainer.recalibrate_batchnorm(nn.Sequential(nn.Linear(2, 2))) == 0
