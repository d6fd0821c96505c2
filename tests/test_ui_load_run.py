"""The explorer on a trained model: ``ExplorerState.load_run`` and its buttons (no browser)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from ui_support import SMALL

from hstlab.config import HSTConfig
from hstlab.energy import energy_report
from hstlab.model import build_model
from hstlab.train import load_checkpoint, read_checkpoint
from hstlab.train.checkpoint import atomic_save, make_checkpoint
from hstlab.ui import BuildView, ExplorerState, InspectView, TrainSession, TrainView, create_app
from hstlab.ui.state import UNTRAINED
from hstlab.ui.training import RUN_COLUMNS


@pytest.fixture(scope="module")
def run_dir(digits_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of ``train_run`` on 16 samples (a few seconds): a real run directory."""
    from hstlab.train import train_run

    folder = tmp_path_factory.mktemp("runs") / "small-run"
    cfg = HSTConfig.from_preset("hst-small", n_embd=16, n_head=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HSTLAB_DATA", str(digits_root))
        train_run(cfg, "digits-dvs", epochs=1, limit=16, batch_size=8, checkpoint_every=0,
                  run_dir=folder)  # fmt: skip
    return folder




def batchnorm_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: v.clone()
        for k, v in model.state_dict().items()
        if k.endswith(("running_mean", "running_var"))
    }


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ---------------------------------------------------------------------------------------- loading
def test_load_run_shows_the_trained_weights(data_env, run_dir):
    state = ExplorerState(preset="hst-small")  # width 64: the run's config differs
    view = BuildView(state=state)
    assert state.weights == UNTRAINED and state.run_dir is None
    assert state.load_run(run_dir)
    ckpt = read_checkpoint(run_dir)
    assert_same_tensors(state.model.state_dict(), ckpt["model"])  # no BatchNorm recalibration
    assert not state.model.training
    accuracy = json.loads((run_dir / "metrics.json").read_text())["val_accuracy"]
    assert state.weights == f"trained: {run_dir} (val accuracy {accuracy:.3g})"
    assert state.run_dir == run_dir and state.error == ""
    assert state.cfg == HSTConfig.from_dict(ckpt["config"])
    assert state.n_params == sum(p.numel() for p in state.model.parameters())
    # the fields and their widgets show the run's config
    assert (state.preset, state.n_embd, state.n_head) == ("hst-small", 16, 2)
    assert view.widgets["n_embd"].value == "16" and view.widgets["n_head"].value == "2"
    assert view.table.widget(0, "attn_mode").value == state.cfg.layer(0).attn_mode
    # energy and recording are of the trained model on the sample
    trained, _, _ = load_checkpoint(run_dir)
    assert state.sample.from_data
    expected = energy_report(trained, state.sample.x).total_j
    assert state.energy.total_j == pytest.approx(expected)
    trained.reset_state()
    with torch.no_grad():
        logits = trained(state.sample.x)
    assert torch.allclose(state.inspection.logits, logits)
    assert InspectView(state=state).spike_layer in state.inspection.spikes


def test_load_run_switches_to_the_runs_dataset(data_env, run_dir):
    state = ExplorerState(preset="hst-small")
    other = next(n for n in state.param.dataset.objects if n != "digits-dvs")  # not on disk here
    state.dataset = other
    assert not state.sample.from_data
    assert state.load_run(run_dir)  # run.json says digits-dvs
    assert state.dataset == "digits-dvs" and state.sample.from_data
    assert "digits-dvs" in state.sample.source and state.weights.startswith("trained: ")
    run_json = json.loads((run_dir / "run.json").read_text())
    assert run_json["dataset"] == "digits-dvs"


def test_changing_the_sample_keeps_trained_batchnorm(data_env, run_dir):
    untrained = ExplorerState(**SMALL)
    before = batchnorm_buffers(untrained.model)
    untrained.sample_index = 3
    after = batchnorm_buffers(untrained.model)
    assert any(not torch.equal(before[k], after[k]) for k in before)  # untrained: recalibrated
    state = ExplorerState(**SMALL)
    assert state.load_run(run_dir)
    stored = batchnorm_buffers(state.model)
    energy, first = state.energy, state.sample.x
    state.sample_index = 3
    assert not torch.equal(state.sample.x, first) and "sample 3" in state.sample.source
    assert_same_tensors(batchnorm_buffers(state.model), stored)
    assert_same_tensors(state.model.state_dict(), read_checkpoint(run_dir)["model"])
    assert state.energy is not energy and state.weights.startswith("trained: ")
    state.reload_data()
    assert_same_tensors(batchnorm_buffers(state.model), stored)


def test_editing_a_field_builds_an_untrained_model_again(data_env, run_dir):
    state = ExplorerState(**SMALL)
    assert state.load_run(run_dir)
    trained = state.model
    state.set_layer(0, "attn_mode", "standard")
    assert state.model is not trained and state.weights == UNTRAINED and state.run_dir is None
    assert state.cfg.n_embd == 16 and state.cfg.modes == "HS"
    assert state.load_run(run_dir) and state.weights.startswith("trained: ")
    state.n_head = 5  # invalid: the trained model stays
    assert "n_head=5" in state.error and state.weights.startswith("trained: ")
    state.preset = "tiny"
    tiny = HSTConfig.from_preset("tiny")
    assert state.weights == UNTRAINED and state.n_params == sum(
        p.numel() for p in build_model(tiny).parameters()
    )
    assert state.cfg.resolved_layers() == tiny.resolved_layers()


def test_energy_variants_of_a_trained_model(data_env, run_dir):
    state = ExplorerState(**SMALL)
    assert state.load_run(run_dir)
    reports = state.energy_variants()
    assert list(reports) == [
        "current (SS, 32-bit)",
        "current, 8-bit weights",
        "standard twin (untrained)",
        "standard twin, int8 (untrained)",
        "bit-matched twin (untrained)",
    ]
    ckpt = read_checkpoint(run_dir)
    model8 = build_model(HSTConfig.from_dict({**ckpt["config"], "weight_bits": 8})).eval()
    model8.load_state_dict(ckpt["model"])  # the trained weights, quantized in the forward pass
    expected = energy_report(model8, state.sample.x).total_j
    assert reports["current, 8-bit weights"].total_j == pytest.approx(expected)


def test_load_run_without_data_uses_a_random_input(no_data, run_dir):
    state = ExplorerState(**SMALL)
    assert state.load_run(str(run_dir / "best.safetensors"))  # a checkpoint file works too
    assert not state.sample.from_data and "not available" in state.sample.note
    assert state.weights.startswith(f"trained: {run_dir}")


# ---------------------------------------------------------------------------------------- bad input
def _corrupt(tmp: Path) -> tuple[Path, str]:
    (tmp / "best.safetensors").write_bytes(b"not a torch file")
    return tmp, "could not be loaded as an hstlab checkpoint"


def _not_a_checkpoint(tmp: Path) -> tuple[Path, str]:
    torch.save({"weights": torch.zeros(2)}, tmp / "best.pt")  # a legacy run's file, read safely
    return tmp, "is not an hstlab checkpoint"


def _wrong_shape(tmp: Path) -> tuple[Path, str]:
    cfg = HSTConfig.from_preset("tiny")  # 16x16 frames; digits-dvs has 34x34
    atomic_save(make_checkpoint(build_model(cfg), cfg, {}), tmp / "best.safetensors")
    return tmp, "holds a model for input_shape (2, 16, 16) but digits-dvs frames are (2, 34, 34)"


BAD_INPUTS = {
    "missing folder": lambda tmp: (tmp / "nowhere", "does not exist: pick a run directory"),
    "no best.safetensors": lambda tmp: (tmp, "holds no best.safetensors: pick a run directory written by"),
    "empty path": lambda tmp: ("", "is empty"),
    "corrupt file": _corrupt,
    "not a checkpoint": _not_a_checkpoint,
    "wrong input shape": _wrong_shape,
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_run_sets_error_and_keeps_the_model(data_env, run_dir, tmp_path, case):
    path, needle = BAD_INPUTS[case](tmp_path)
    state = ExplorerState(**SMALL)
    assert state.load_run(run_dir)
    model, cfg, weights = state.model, state.cfg, state.weights
    assert state.load_run(path) is False  # never raises
    assert needle in state.error
    if path:
        assert str(path) in state.error
    assert (state.model, state.cfg, state.weights) == (model, cfg, weights)
    assert_same_tensors(state.model.state_dict(), read_checkpoint(run_dir)["model"])


def test_build_view_loads_a_run_and_shows_errors(data_env, run_dir, tmp_path):
    state = ExplorerState(**SMALL)
    view = BuildView(state=state)
    view.run_dir.value = str(tmp_path)
    view.load_button.clicks += 1
    assert "holds no best.safetensors" in state.error and view.error.visible
    assert "holds no best.safetensors" in view.error.object
    view.run_dir.value = str(run_dir)
    view.load_button.clicks += 1
    assert not view.error.visible and state.weights.startswith("trained: ")
    assert "trained: " in view.weights.object


def test_train_tab_button_inspects_the_last_run(data_env, run_dir, tmp_path):
    import shutil

    app = create_app(preset="hst-small", runs_dir=tmp_path)
    train = app.views["Train"]
    assert isinstance(train, TrainView) and not train.inspect_button.visible
    own_run = app.session.runs_dir / "run-001"  # where the Train tab writes its runs
    shutil.copytree(run_dir, own_run)
    row = {"run": "run-001", "status": "finished", "checkpoint": str(own_run / "best.safetensors")}
    app.session.runs = pd.DataFrame([row], columns=list(RUN_COLUMNS))  # as _finish records it
    assert train.inspect_button.visible
    train.inspect_button.clicks += 1
    assert app.state.weights.startswith(f"trained: {own_run.resolve()}")
    assert app.tabs.active == 1  # the Inspect tab; the served app records in the background
    assert app.state.settle(60) and app.state.inspection is not None and not app.state.stale


def test_failed_run_offers_no_inspect_button(no_data, tmp_path):
    session = TrainSession(runs_dir=tmp_path)
    view = TrainView(state=ExplorerState(preset="tiny"), session=session)
    row = {"run": "run-001", "status": "failed"}
    session.runs = pd.DataFrame([row], columns=list(RUN_COLUMNS))
    assert not view.inspect_button.visible


def test_run_of_an_unknown_preset_keeps_the_selector(data_env, tmp_path):
    import dataclasses

    cfg = dataclasses.replace(
        HSTConfig.from_preset("hst-small", n_embd=16, n_head=2), name="my-net"
    )
    atomic_save(make_checkpoint(build_model(cfg).eval(), cfg, {}), tmp_path / "best.safetensors")
    state = ExplorerState(preset="tiny", dataset="digits-dvs")
    assert state.load_run(tmp_path)
    assert state.preset == "tiny" and state.cfg.name == "my-net"
    assert state.weights == f"trained: {tmp_path}"  # no metrics.json, no accuracy in the meta
    state.n_layer = 3  # edits start from the run's config, not from the selected preset
    assert state.weights == UNTRAINED and state.cfg.name == "my-net"
    assert (state.cfg.n_layer, state.cfg.n_embd, state.cfg.input_shape) == (3, 16, (2, 34, 34))


def test_editing_a_loaded_run_keeps_the_layer_fields_the_grid_does_not_show(data_env, tmp_path):
    cfg = (HSTConfig.from_preset("hst-small", n_embd=16, n_head=2)
           .with_layer(1, attention="statten", attn_block=2, mask_policy="significance"))
    atomic_save(make_checkpoint(build_model(cfg).eval(), cfg, {}), tmp_path / "best.safetensors")
    state = ExplorerState(preset="tiny", dataset="digits-dvs")
    assert state.load_run(tmp_path)
    state.set_layer(0, "tim", True)  # an edit of another column rebuilds from the grid
    assert state.weights == UNTRAINED and state.cfg.layers[0].tim is True
    assert (state.cfg.layers[1].attn_block, state.cfg.layers[1].mask_policy) == (2, "significance")
    state.n_layer = 3  # an added layer copies the last one, fields the grid does not show included
    assert state.cfg.layers[2].attn_block == 2
