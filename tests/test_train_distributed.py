"""Data-parallel training: the DDP code path in-process (fast) and two gloo ranks via torchrun (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from server_support import free_port
from test_train_support import build_standin, one_thread, run_two_gloo_ranks, small_cfg, splits  # noqa: F401

from hstlab.train import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")
TESTS = Path(__file__).resolve().parent


def fit(run_dir=None, **kw):
    cfg = small_cfg()
    torch.manual_seed(0)
    model = build_standin(cfg)
    train, val, test = splits(24, 8, 8)
    trainer = Trainer(model, cfg, train, val, test, epochs=2, batch_size=8, lr=5e-3, seed=0,
                      build_fn=build_standin, run_dir=run_dir, measure_energy=False, **kw)
    return trainer, trainer.fit()


def test_ddp_path_with_one_rank_matches_plain_training(tmp_path):
    plain, ref = fit()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        wrapped, got = fit(run_dir=tmp_path)
        assert isinstance(wrapped.ddp_model, torch.nn.parallel.DistributedDataParallel)
        assert wrapped.ctx.enabled and got["world_size"] == 1
    finally:
        dist.destroy_process_group()
    assert got["val_loss"] == ref["val_loss"] and got["test_accuracy"] == ref["test_accuracy"]
    for (name, a), b in zip(plain.model.state_dict().items(), wrapped.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert (tmp_path / "metrics.json").exists()


WORKER = """
import sys, torch
sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
from test_train_support import build_standin, small_cfg, splits
from hstlab.train import Trainer
from hstlab.train.distributed import init_from_env, shutdown
ctx = init_from_env()
cfg = small_cfg()
torch.manual_seed(ctx.rank)  # different initial weights per rank: DDP must sync them
model = build_standin(cfg)
train, val, test = splits(24, 8, 8)
trainer = Trainer(model, cfg, train, val, test, epochs=2, batch_size=4, lr=5e-3, seed=0,
                  build_fn=build_standin, run_dir={run_dir!r}, measure_energy=False)
metrics = trainer.fit()
torch.save({{"state": trainer.model.state_dict(), "steps": metrics["steps"], "val": metrics["val_loss"]}},
           {out!r} + f"/rank{{ctx.rank}}.pt")
shutdown()
"""


@pytest.mark.slow
def test_two_gloo_ranks_end_with_identical_weights(tmp_path):
    r0, r1 = run_two_gloo_ranks(WORKER, tmp_path)
    assert r0["steps"] == r1["steps"] == 2 * 3  # 24 samples / 2 ranks / batch 4 = 3 steps per epoch
    assert r0["val"] == r1["val"]  # val sums all-reduced over the two shards
    for name, value in r0["state"].items():
        assert torch.equal(value, r1["state"][name]), name
    assert (tmp_path / "run" / "metrics.json").exists() and (tmp_path / "run" / "best.safetensors").exists()


def test_each_rank_takes_its_own_gpu(monkeypatch):
    from hstlab.train.distributed import DistContext, check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a 2-GPU machine, as far as the check sees
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    rank1 = DistContext(rank=1, world_size=2, local_rank=1)
    assert check_device("cuda", rank1) == torch.device("cuda", 1)
    assert check_device("cuda:1", rank1) == torch.device("cuda", 1)
    assert check_device("cpu", rank1) == torch.device("cpu")
    with pytest.raises(ValueError, match="device='cuda:0' under torchrun: each rank uses its own GPU"):
        check_device("cuda:0", rank1)
    with pytest.raises(ValueError, match=r"only 2 CUDA device\(s\); allowed: cuda:0 ... cuda:1"):
        check_device("cuda:2")
    assert check_device("cuda:0") == torch.device("cuda", 0)  # one process: any GPU it names
