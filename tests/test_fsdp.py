"""FSDP2 (``TrainConfig(parallel="fsdp")``): the sharded path in-process on one gloo rank (fast) and
two gloo ranks on CPU via torchrun (slow), checked against plain training and the checkpoint."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from server_support import free_port
from test_train_support import Kill, kill_at, one_thread, run_two_gloo_ranks, splits  # noqa: F401
from torch.distributed.tensor import DTensor

import hstlab
from hstlab.neurons.base import SpikingNeuron
from hstlab.train import Trainer, fsdp, load_checkpoint
from hstlab.train.config import TrainConfig
from hstlab.train.fsdp_plan import memory_table, sharded_memory, sharding_units

pytestmark = pytest.mark.usefixtures("one_thread")
TESTS = Path(__file__).resolve().parent
DOCS = TESTS.parent / "docs"


def tiny_cfg():
    return hstlab.HSTConfig.from_preset("tiny", num_classes=4, input_shape=(2, 8, 8))


def make(parallel="ddp", **kw):
    cfg = tiny_cfg()
    torch.manual_seed(0)
    model = hstlab.build_model(cfg)
    train, val, test = splits(24, 8, 8)
    kw.setdefault("epochs", 1)
    return Trainer(model, cfg, train, val, test, batch_size=8, lr=5e-3, seed=0, parallel=parallel,
                   build_fn=hstlab.build_model, measure_energy=False, **kw)


def first_losses():
    seen = []
    return seen, [lambda ev: seen.append(ev.loss) if ev.kind == "step" else None]


def test_parallel_field_is_checked_by_config_and_cli():
    with pytest.raises(ValueError, match=r"parallel='zero' is not allowed; allowed: ddp, fsdp"):
        TrainConfig(parallel="zero")
    assert TrainConfig().parallel == "ddp" and TrainConfig(parallel="fsdp").parallel == "fsdp"
    proc = subprocess.run([sys.executable, "-m", "hstlab", "train", "--parallel", "zero"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "--parallel: invalid choice: 'zero'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_one_rank_fsdp_trains_like_plain_and_saves_a_full_checkpoint(tmp_path):
    """The whole sharded code path (shard, gathered evaluation, gathered checkpoints) on one gloo rank."""
    plain_losses, plain_cbs = first_losses()
    plain = make(callbacks=plain_cbs)
    ref = plain.fit()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        losses, cbs = first_losses()
        sharded = make("fsdp", run_dir=tmp_path, callbacks=cbs)
        assert fsdp.is_sharded(sharded.model) and sharded.ddp_model is sharded.model
        assert all(fsdp.is_sharded(block) for block in sharded.model.blocks)
        got = sharded.fit()
        state = fsdp.full_state(sharded.model)
        neurons = [m for m in sharded.model.modules() if isinstance(m, SpikingNeuron)]
        x, _ = next(iter(sharded._loader(sharded.train_data, [[0, 1]])))
        with fsdp.gathered(sharded.model):
            sharded.model(x)  # leaves each neuron's membrane: this rank's own, whole, [B, N, D]-like
        memories = [v for m in neurons for v in m.memories().values() if isinstance(v, torch.Tensor)]
        assert memories and not any(isinstance(v, DTensor) for v in memories)
        assert not any(isinstance(b, DTensor) for b in sharded.model.buffers())  # BatchNorm stats stay whole
        sharded.model.reset_state()
        assert all(v is None or not isinstance(v, torch.Tensor) for m in neurons for v in m.memories().values())
    finally:
        dist.destroy_process_group()
    assert len(losses) == len(plain_losses) == 3
    assert losses[0] == pytest.approx(plain_losses[0], rel=1e-6)  # same weights, same first batch
    assert got["val_loss"] == pytest.approx(ref["val_loss"], rel=1e-4)
    plain_state = plain.model.state_dict()
    assert list(state) == list(plain_state)  # the plain model's keys, buffers included, no FSDP prefixes
    for name, value in plain_state.items():
        assert torch.allclose(state[name].float(), value.float(), atol=1e-5), name
    model, _, _ = load_checkpoint(tmp_path / "last.safetensors")  # an ordinary checkpoint
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name
    best, _, _ = load_checkpoint(tmp_path)
    assert isinstance(best, hstlab.HSTNet)


def test_one_rank_fsdp_resume_is_exact(tmp_path):
    """A sharded run's last checkpoint (full model and gathered AdamW moments) resumes sharded."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        full = make("fsdp", run_dir=tmp_path / "full")
        ref = full.fit()
        cut = make("fsdp", run_dir=tmp_path / "cut", checkpoint_every=1, callbacks=kill_at(2))
        with pytest.raises(Kill):
            cut.fit()
        resumed = make("fsdp", resume=tmp_path / "cut")  # from step 1, mid-epoch
        got = resumed.fit()
        moments = fsdp.optimizer_state(resumed.optimizer)["state"]
        ref_moments = fsdp.optimizer_state(full.optimizer)["state"]
        a, b = fsdp.full_state(resumed.model), fsdp.full_state(full.model)
    finally:
        dist.destroy_process_group()
    assert got["val_loss"] == ref["val_loss"] and got["steps"] == ref["steps"] == 3
    for name, value in b.items():
        assert torch.equal(a[name], value), name
    assert moments.keys() == ref_moments.keys()
    for i, state in ref_moments.items():
        assert torch.equal(moments[i]["exp_avg"], state["exp_avg"]), i


def test_one_rank_fsdp_mode_schedule_matches_plain():
    """A mode switch rebuilds the model from the gathered state and shards the new one."""
    def run(parallel):
        cfg = dataclasses.replace(tiny_cfg(), mode_schedule=((0, "TT"), (1, "SS")))
        torch.manual_seed(0)
        train, val, test = splits(16, 8, 8)
        trainer = Trainer(hstlab.build_model(cfg), cfg, train, val, test, epochs=2, batch_size=8, lr=5e-3,
                          seed=0, parallel=parallel, build_fn=hstlab.build_model, measure_energy=False)
        return trainer, trainer.fit(), fsdp.full_state(trainer.model)

    _, ref, plain = run("ddp")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        trainer, got, sharded = run("fsdp")
        assert fsdp.is_sharded(trainer.model) and trainer.cfg.modes == "SS"
    finally:
        dist.destroy_process_group()
    assert got["val_loss"] == pytest.approx(ref["val_loss"], rel=1e-5)
    for name, value in plain.items():
        assert torch.allclose(sharded[name].float(), value.float(), atol=1e-5), name


def test_a_training_step_leaves_every_parameter_storage_resizable():
    """FSDP2 frees a gathered parameter by resizing its storage to 0; ``Tensor.numpy()`` (the numba
    BatchNorm and neuron kernels) pins a storage for good, so no kernel may be handed a parameter."""
    cfg = hstlab.HSTConfig.from_preset("tiny", num_classes=4, input_shape=(2, 34, 34))  # large enough for numba
    model = hstlab.build_model(cfg)
    model(torch.rand(cfg.num_steps, 4, *cfg.input_shape)).sum().backward()
    pinned = []
    for name, p in model.named_parameters():
        storage = p.untyped_storage()
        try:
            storage.resize_(storage.nbytes())
        except RuntimeError:
            pinned.append(name)
    assert pinned == []


def test_fsdp_refuses_learned_threshold_scales():
    cfg = hstlab.HSTConfig.from_preset("tiny", num_classes=4, input_shape=(2, 8, 8), threshold_balance="learn")
    model = hstlab.build_model(cfg)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        with pytest.raises(ValueError, match=r"parallel='fsdp' cannot shard learned threshold scales .*"
                                             r"allowed with fsdp: threshold_balance='hold' or 'off'"):
            fsdp.shard(model)
    finally:
        dist.destroy_process_group()


WORKER = """
import copy, sys, torch
sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
import hstlab
from test_train_support import splits
from hstlab.train import Trainer, fsdp
from hstlab.train.distributed import init_from_env, shutdown
ctx = init_from_env()
cfg = hstlab.HSTConfig.from_preset("tiny", num_classes=4, input_shape=(2, 8, 8))
torch.manual_seed(ctx.rank)  # different initial weights per rank: sharding must start from rank 0's
model = hstlab.build_model(cfg)
reference = copy.deepcopy(model)  # rank 0's: the single-process model
train, val, test = splits(24, 9, 8)  # 9 validation samples: the ranks' shards differ in batch count
losses = []
trainer = Trainer(model, cfg, train, val, test, epochs=1, batch_size=4, lr=5e-3, seed=0, parallel="fsdp",
                  build_fn=hstlab.build_model, run_dir={run_dir!r}, measure_energy=False,
                  callbacks=[lambda ev: losses.append(ev.loss) if ev.kind == "step" else None])
first = trainer._epoch_batches(0)[0]
x, y = next(iter(trainer._loader(train, [first])))
metrics = trainer.fit()
state = fsdp.full_state(trainer.model)  # gathered on every rank
ref_loss = None
if ctx.rank == 0:  # the first step of a plain run on rank 0's first batch, with rank 0's weights
    torch.manual_seed(0)
    reference.train()
    reference.reset_state()
    inputs, targets = trainer.loss_fn.prepare(x, y)
    ref_loss = float(trainer.loss_fn(reference(inputs), targets))
torch.save({{"state": state, "losses": losses, "ref_loss": ref_loss, "steps": metrics["steps"],
            "val": metrics["val_loss"], "sharded": fsdp.is_sharded(trainer.model)}}, {out!r} + f"/rank{{ctx.rank}}.pt")
shutdown()
"""


@pytest.mark.slow  # ~30 s on two busy cores; test_one_rank_fsdp_... covers the same code path in-process
def test_two_gloo_ranks_shard_train_and_save_the_full_model(tmp_path):
    r0, r1 = run_two_gloo_ranks(WORKER, tmp_path)
    assert r0["sharded"] and r1["sharded"]
    assert r0["steps"] == r1["steps"] == 3  # 24 samples / 2 ranks / batch 4
    assert len(r0["losses"]) == 3 and all(torch.isfinite(torch.tensor(r0["losses"])))
    assert r0["losses"][0] == pytest.approx(r0["ref_loss"], rel=1e-6)  # FSDP's first step = a plain one
    assert r0["val"] == r1["val"]
    for name, value in r0["state"].items():  # parameters and synced BatchNorm statistics
        assert torch.equal(value, r1["state"][name]), name
    model, cfg, _ = load_checkpoint(tmp_path / "run" / "last.safetensors")
    gathered = hstlab.build_model(cfg)
    gathered.load_state_dict(r0["state"])
    x = torch.rand(cfg.num_steps, 3, *cfg.input_shape, generator=torch.Generator().manual_seed(1))
    model.eval(), gathered.eval()
    with torch.no_grad():
        model.reset_state(), gathered.reset_state()
        assert torch.equal(model(x), gathered(x))
    assert (tmp_path / "run" / "best.safetensors").exists() and (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize("preset", ["tiny", "qkformer-dvs", "sdt2-15m"])  # flat and staged models
def test_memory_plan_sizes_the_units_fsdp_shards(preset):
    cfg = hstlab.HSTConfig.from_preset(preset)
    model = hstlab.build_model(cfg)
    units, root = sharding_units(cfg)
    shards = fsdp.shard_units(model)
    assert [p for p, _ in units] == [sum(p.numel() for p in unit.parameters()) for unit in shards]
    inside = {id(p) for unit in shards for p in unit.parameters()}
    assert root[0] == sum(p.numel() for p in model.parameters() if id(p) not in inside)


def test_memory_plan_arithmetic():
    cfg = hstlab.HSTConfig.from_preset("tiny")
    one, four = sharded_memory(cfg, 8, 1), sharded_memory(cfg, 8, 4)
    assert one.state_bytes == 16 * one.params and four.state_bytes == 4 * one.params
    assert one.gathered_bytes == 0 and four.gathered_bytes == 4 * (3 * four.largest_unit + 2 * sharding_units(cfg)[1][0])
    assert one.activation_bytes == sharded_memory(cfg, 1, 1).activation_bytes * 8
    assert 0 < four.checkpointed_activation_bytes < four.activation_bytes
    with pytest.raises(ValueError, match="world_size=0 must be an integer >= 1"):
        sharded_memory(cfg, 8, 0)


def test_docs_fsdp_page_holds_the_computed_plan():
    text = (DOCS / "fsdp.md").read_text(encoding="utf-8")
    cfg = hstlab.HSTConfig.from_preset("hst-100m")
    assert memory_table(cfg, 64) in text  # the table is the function's output, not typed by hand
    assert f"**{sharded_memory(cfg, 64, 1).params:,} parameters**" in text
    units, root = sharding_units(cfg)
    for params in {p for p, _ in units} | {root[0]}:
        assert f"| {params:,} |" in text
