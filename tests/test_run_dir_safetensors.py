"""Run directories hold safetensors, never pickles; legacy .pt runs still load, and a planted
pickle is never executed."""

from __future__ import annotations

import pickle
import warnings

import pytest
import torch
from test_train_support import Kill, build_standin, one_thread, small_cfg, splits  # noqa: F401
from test_train_support import kill_at as kill_callback

from hstlab.train import Trainer
from hstlab.train.checkpoint import (
    CheckpointError,
    convert_legacy,
    load_checkpoint,
    read_checkpoint,
    run_checkpoint,
)

pytestmark = pytest.mark.usefixtures("one_thread")
PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # a raw pickle (protocol >= 2), a torch.save zip


def make_trainer(**kw):
    cfg = small_cfg()
    torch.manual_seed(0)
    train, val, test = splits()
    kw = {"epochs": 2, "batch_size": 8, "lr": 5e-3, **kw}
    return Trainer(build_standin(cfg), cfg, train, val, test, seed=0, build_fn=build_standin,
                   measure_energy=False, **kw)


class Planted:
    """Unpickling this creates ``marker`` (what an attacker's payload would run instead)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_run_directory_holds_no_pickle(tmp_path):
    make_trainer(run_dir=tmp_path, checkpoint_every=3).fit()
    files = sorted(p for p in tmp_path.iterdir() if p.is_file())
    assert {p.name for p in files} >= {"best.safetensors", "last.safetensors", "config.json", "metrics.json"}
    for path in files:
        assert not path.read_bytes().startswith(PICKLE_MAGIC), path.name


def test_optimizer_and_rng_state_round_trip_exactly(tmp_path):
    trainer = make_trainer(run_dir=tmp_path, epochs=1)
    trainer.fit()
    state = read_checkpoint(run_checkpoint(tmp_path, "last"))["train_state"]
    saved, live = state["optimizer"], trainer.optimizer.state_dict()
    assert saved["param_groups"] == live["param_groups"]  # tuples (betas) and int keys survive JSON
    assert set(saved["state"]) == set(live["state"]) and all(isinstance(k, int) for k in saved["state"])
    for k, v in live["state"].items():
        assert all(torch.equal(v[name], saved["state"][k][name]) for name in v)
    rng = state["ranks"][0]["rng"]
    assert isinstance(rng["python"], tuple) and rng["torch"].dtype == torch.uint8
    assert state["best_score"] == trainer.progress.best_score and isinstance(state["history"], list)


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_a_planted_pickle_named_best_pt_is_never_executed(tmp_path, writer):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    if writer == "pickle":
        (run / "best.pt").write_bytes(pickle.dumps({"format": "hstlab-checkpoint-1", "x": Planted(marker)}))
    else:
        torch.save({"format": "hstlab-checkpoint-1", "model": Planted(marker)}, run / "best.pt")
    with warnings.catch_warnings(), pytest.raises(CheckpointError, match="best.pt"):
        warnings.simplefilter("ignore", DeprecationWarning)
        load_checkpoint(run, build_fn=build_standin)
    assert not marker.exists()


def test_safetensors_wins_over_a_planted_legacy_file(tmp_path):
    marker = tmp_path / "pwned"
    make_trainer(run_dir=tmp_path / "run", epochs=1).fit()
    torch.save({"model": Planted(marker)}, tmp_path / "run" / "best.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the .pt is not even opened
        model, cfg, meta = load_checkpoint(tmp_path / "run", build_fn=build_standin)
    assert meta["epoch"] == 0 and not marker.exists()


def test_a_damaged_safetensors_file_is_named(tmp_path):
    make_trainer(run_dir=tmp_path, epochs=1).fit()
    path = run_checkpoint(tmp_path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"best\.safetensors.*cannot be read"):
        read_checkpoint(path)


def _to_legacy(run_dir):
    """Rewrite a run directory as hstlab wrote it before safetensors (best.pt / last.pt)."""
    for kind in ("best", "last"):
        new = run_checkpoint(run_dir, kind, new=True)
        if not new.exists():  # a run cut before its first epoch end has no best checkpoint yet
            continue
        torch.save(read_checkpoint(new), run_dir / f"{kind}.pt")
        new.unlink()


def test_legacy_pt_run_loads_with_a_deprecation_warning_and_converts(tmp_path):
    trainer = make_trainer(run_dir=tmp_path, epochs=1)
    metrics = trainer.fit()
    _to_legacy(tmp_path)
    assert run_checkpoint(tmp_path).name == "best.pt"
    with pytest.warns(DeprecationWarning, match="legacy pickled checkpoint"):
        model, _, meta = load_checkpoint(tmp_path, build_fn=build_standin)
    assert meta["val_accuracy"] == metrics["val_accuracy"]
    with pytest.warns(DeprecationWarning):
        assert convert_legacy(tmp_path) == ["best.safetensors", "last.safetensors"]
    assert not list(tmp_path.glob("*.pt")) and run_checkpoint(tmp_path).name == "best.safetensors"
    again, _, _ = load_checkpoint(tmp_path, build_fn=build_standin)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_resume_from_a_legacy_last_pt_matches_uninterrupted(tmp_path):
    ref = make_trainer(run_dir=tmp_path / "full", epochs=2, checkpoint_every=4).fit()
    cut = make_trainer(run_dir=tmp_path / "cut", epochs=2, checkpoint_every=4, callbacks=kill_callback(5))
    with pytest.raises(Kill):
        cut.fit()
    _to_legacy(tmp_path / "cut")
    with pytest.warns(DeprecationWarning):
        got = make_trainer(resume=tmp_path / "cut", epochs=2).fit()
    for key in ("val_accuracy", "val_loss", "test_accuracy", "steps", "best_epoch"):
        assert got[key] == ref[key], key
    assert run_checkpoint(tmp_path / "cut", "last").name == "last.safetensors"  # the resumed run writes the new format
