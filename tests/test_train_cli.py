"""``hstlab train`` / ``hstlab energy`` and ``train_run`` on tiny in-memory spike data."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from test_train_support import one_thread  # noqa: F401

from hstlab.cli import main
from hstlab.train.checkpoint import read_checkpoint
from hstlab.train.cli import parse_options, parse_schedule
from hstlab.train.run import train_run

pytestmark = pytest.mark.usefixtures("one_thread", "no_smoke")
DATA = {"neurons": 6, "trials": 20}
COMMON = ["--preset", "tiny", "--dataset", "lorenz-spikes", "--limit", "8", "--time-bins", "12",
          "--data-option", "neurons=6", "--data-option", "trials=20", "--batch-size", "4", "--no-progress"]


@pytest.fixture
def no_smoke(monkeypatch):
    monkeypatch.delenv("HSTLAB_SMOKE", raising=False)


def test_smoke_mode_caps_epochs_and_data(tmp_path, monkeypatch):
    monkeypatch.setenv("HSTLAB_SMOKE", "1")
    metrics = train_run("tiny", "lorenz-spikes", run_dir=tmp_path, epochs=3, limit=100, time_bins=12,
                        batch_size=16, dataset_options=DATA)
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["epochs"] == 1 and run["limit"] == 32 and metrics["epochs_completed"] == 1


def test_cli_train_then_energy(tmp_path, capsys):
    rc = main(["train", *COMMON, "--epochs", "2", "--schedule", "0:TT,1:SS", "--run-dir", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "val  bits_per_spike" in out and f"modes {metrics['modes']}" in out  # the best epoch's modes
    with (tmp_path / "history.csv").open() as f:
        assert [row["modes"] for row in csv.DictReader(f)] == ["TT", "SS"]
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["dataset"] == "lorenz-spikes" and run["loss"] == "poisson_nll" and run["dataset_options"] == DATA
    assert metrics["test_accuracy"] is None and isinstance(metrics["val_bits_per_spike"], float)
    assert any(n.startswith("head.bias <- log mean count") for n in run["notes"])
    assert [json.loads((tmp_path / "config.json").read_text())["mode_schedule"]] == [[[0, "TT"], [1, "SS"]]]
    assert main(["energy", str(tmp_path), "--batch-size", "2"]) == 0
    assert "Energy per sample" in capsys.readouterr().out
    assert main(["energy", str(tmp_path), "--batch-size", "2", "--dataflow", "time-batched", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dataflow"] == "time-batched"
    assert main(["energy", str(tmp_path), "--batch-size", "2", "--dataflow", "fused", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dataflow"] == "fused"


def test_cli_resume_matches_uninterrupted(tmp_path, capsys):
    kw = {"epochs": 2, "limit": 8, "time_bins": 12, "batch_size": 4, "dataset_options": DATA,
          "checkpoint_every": 1}
    ref = train_run("tiny", "lorenz-spikes", run_dir=tmp_path / "full", **kw)

    def kill(ev):
        if ev.kind == "step" and ev.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run("tiny", "lorenz-spikes", run_dir=tmp_path / "cut", callbacks=[kill], **kw)
    assert main(["train", "--resume", str(tmp_path / "cut"), "--no-progress"]) == 0
    got = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    for key in ("val_loss", "val_bits_per_spike", "test_loss", "test_bits_per_spike", "steps", "best_epoch"):
        assert got[key] == ref[key], key
    a = read_checkpoint(tmp_path / "full" / "last.safetensors")["model"]
    b = read_checkpoint(tmp_path / "cut" / "last.safetensors")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_masked_modelling_run_with_progress_bar(tmp_path, capsys):
    metrics = train_run("tiny", "lorenz-spikes", run_dir=tmp_path, epochs=1, limit=8, time_bins=12, batch_size=4,
                        dataset_options=DATA, loss="masked_modelling", progress=True,
                        loss_options={"mask_ratio": 0.3, "mask_axis": "neuron"})
    assert metrics["loss"] == "masked_modelling" and "val_bits_per_spike" in metrics
    assert json.loads((tmp_path / "config.json").read_text())["causal"] is False
    assert "2/2" in capsys.readouterr().err  # tqdm: 2 of 2 steps


def test_cli_rejects_bad_arguments(capsys):
    assert main(["train", *COMMON, "--schedule", "x:TT"]) == 2
    assert "--schedule part 'x:TT'" in capsys.readouterr().err
    assert parse_schedule("0:TT, 3:SS") == ((0, "TT"), (3, "SS"))
    assert parse_options(["a=1", "b=x", "c=0.5"]) == {"a": 1, "b": "x", "c": 0.5}


def test_cli_device_is_checked_before_training(tmp_path, capsys):
    assert main(["train", *COMMON, "--device", "gpu", "--run-dir", str(tmp_path)]) == 2
    assert "device='gpu' is not allowed; allowed: cpu, cuda, cuda:N" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["train", *COMMON, "--device", "cuda", "--run-dir", str(tmp_path)]) == 2
        assert "torch sees no CUDA device here" in capsys.readouterr().err
    assert not (tmp_path / "last.safetensors").exists()
    assert main(["train", *COMMON, "--epochs", "1", "--device", "cpu", "--run-dir", str(tmp_path)]) == 0
    assert (tmp_path / "last.safetensors").exists()


def test_negative_binomial_dispersion_is_trained_and_checkpointed(tmp_path):
    train_run("tiny", "lorenz-spikes", run_dir=tmp_path, epochs=1, limit=8, time_bins=12, batch_size=4,
              dataset_options=DATA, loss="negative_binomial_nll", loss_options={"num_neurons": 6})
    saved = read_checkpoint(tmp_path / "last.safetensors")["train_state"]["loss"]["raw_dispersion"]
    start = torch.full((6,), 1.0 + math.log(-math.expm1(-1.0)))  # softplus^-1(1)
    assert saved.shape == (6,) and not torch.allclose(saved, start)


def test_resume_needs_a_run_directory(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path), "--no-progress"]) == 2
    assert "must be a run directory holding run.json and last.safetensors" in capsys.readouterr().err


def test_cli_augment_shift_needs_frames(tmp_path, capsys):
    assert main(["train", *COMMON, "--epochs", "1", "--augment-shift", "2", "--run-dir", str(tmp_path)]) == 2
    assert "augment_shift=2 needs frames" in capsys.readouterr().err


def test_cli_set_overrides_config_fields(tmp_path, capsys):
    assert main(["train", *COMMON, "--epochs", "1", "--set", "membrane_bits=8", "--set", "weight_bits=8",
                 "--set", "sps_channels=[4,8,8]", "--run-dir", str(tmp_path)]) == 0
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert (cfg["membrane_bits"], cfg["weight_bits"], cfg["sps_channels"], cfg["name"]) == (8, 8, [4, 8, 8], "tiny")
    capsys.readouterr()
    assert main(["train", *COMMON, "--set", "membrane_bits=5"]) == 2
    assert "membrane_bits=5 is not allowed; allowed: 4, 6, 8, 12, 16, 32" in capsys.readouterr().err
    assert main(["train", *COMMON, "--set", "bogus=1"]) == 2
    assert "unknown config field 'bogus'; allowed:" in capsys.readouterr().err
    assert main(["train", *COMMON, "--set", "membrane_bits"]) == 2
    assert "--set 'membrane_bits' must be FIELD=VALUE" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path), "--set", "weight_bits=4", "--no-progress"]) == 2
    assert "--set cannot change a resumed run" in capsys.readouterr().err


def test_two_runs_started_in_one_second_get_their_own_directories(tmp_path, monkeypatch):
    """The default run directory is stamped to the second; a second run in that second must not collide."""
    from hstlab.train import checkpoint as ckpt_io

    monkeypatch.setattr(ckpt_io, "utc_stamp", lambda: "20260102-030405")
    runs = [train_run("tiny", "lorenz-spikes", out=tmp_path, epochs=1, limit=8, time_bins=12, batch_size=4,
                      dataset_options=DATA) for _ in range(2)]
    dirs = [r["run_dir"] for r in runs]
    assert dirs[0] != dirs[1] and dirs[1].endswith("-20260102-030405-2"), dirs


def test_train_run_takes_a_train_config_and_a_resume_checks_it(tmp_path):
    from hstlab.train.config import TrainConfig

    tc = TrainConfig(epochs=1, lr=2e-3, batch_size=4, limit=8, time_bins=12, dataset_options=DATA)
    metrics = train_run("tiny", "lorenz-spikes", train_config=tc, run_dir=tmp_path, warmup_frac=0.1)
    run = json.loads((tmp_path / "run.json").read_text())
    # the run records the loss it resolved from the dataset kind (tc.loss=None: the task's loss)
    assert run["loss"] == "poisson_nll"
    assert TrainConfig.from_dict({k: run[k] for k in TrainConfig.defaults()}) == tc.replace(warmup_frac=0.1,
                                                                                             loss="poisson_nll")
    assert run["recipe"]["notice"] is None and metrics["notes"] == [n for n in metrics["notes"] if "recipe" not in n]
    assert metrics["steps"] == 2  # 8 samples in batches of 4
    with pytest.raises(ValueError, match=r"resume: lr=0.01 differs from the run's lr=0.002"):
        train_run(resume=tmp_path, train_config=tc.replace(lr=1e-2, warmup_frac=0.1))


def test_a_run_without_a_recipe_says_so_in_its_notes(tmp_path):
    """tiny has no recipe for lorenz-spikes: the generic-defaults notice reaches the metrics and run.json."""
    metrics = train_run("tiny", "lorenz-spikes", run_dir=tmp_path, epochs=1, limit=8, time_bins=12, batch_size=4,
                        dataset_options=DATA)
    run = json.loads((tmp_path / "run.json").read_text())
    assert any("no recipe for preset 'tiny'" in n for n in metrics["notes"]), metrics["notes"]
    assert run["notes"][0] == run["recipe"]["notice"]
    assert any("(from the data)" in n for n in metrics["notes"])  # the fitted fields follow it
