"""TensorBoardLogger: a trainer callback whose event files read back with TensorBoard's EventAccumulator."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402

from hstlab import HSTConfig, build_model, example_input  # noqa: E402
from hstlab.train import Trainer  # noqa: E402
from hstlab.train.tensorboard import TensorBoardLogger, hparams_of  # noqa: E402


def _data(cfg: HSTConfig, n: int, seed: int) -> list:
    x = example_input(cfg, batch_size=n, seed=seed, rate=0.3)  # [T, n, C, H, W]
    return [(x[:, i], i % 2) for i in range(n)]


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory):
    cfg = HSTConfig.from_preset("tiny", num_classes=2).with_modes("ST")
    model = build_model(cfg)
    log_dir = tmp_path_factory.mktemp("tb")
    events: list = []
    hooks_before = len(torch.nn.modules.module._global_forward_hooks)
    tb = TensorBoardLogger(log_dir)
    trainer = Trainer(model, cfg, _data(cfg, 8, 0), _data(cfg, 4, 1), _data(cfg, 4, 2), epochs=2, batch_size=4,
                      callbacks=[tb, events.append], bn_recalibration_batches=1)
    trainer.fit()
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    return acc, events, trainer, tb, hooks_before


def test_scalars_match_the_trainer_events(logged) -> None:
    acc, events, *_ = logged
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/accuracy", "train/lr", "train/firing_rate", "val/accuracy", "val/loss",
            "energy/per_sample_uj", "final/test_accuracy"} <= tags
    steps = [e for e in events if e.kind == "step"]
    logged_loss = [(s.step, s.value) for s in acc.Scalars("train/loss")]
    assert logged_loss == [(e.step, pytest.approx(e.loss, rel=1e-6)) for e in steps]
    assert [s.value for s in acc.Scalars("train/lr")] == pytest.approx([e.lr for e in steps], rel=1e-6)
    epochs = [e for e in events if e.kind == "epoch"]
    assert [s.value for s in acc.Scalars("energy/per_sample_uj")] == pytest.approx(
        [e.energy_per_sample_j * 1e6 for e in epochs], rel=1e-6)
    assert [s.value for s in acc.Scalars("val/accuracy")] == pytest.approx([e.val_accuracy for e in epochs])


def test_per_layer_firing_rates_add_up_to_the_epoch_rate(logged) -> None:
    acc, events, trainer, *_ = logged
    neurons = {n: m for n, m in trainer.model.named_modules() if getattr(m, "is_spiking_neuron", False)}
    tags = set(acc.Tags()["scalars"])
    assert {f"firing_rate/{n}" for n in neurons} <= tags  # every spiking neuron, by its module name
    assert {f"firing_rate_per_neuron/{n}" for n in neurons} <= set(acc.Tags()["histograms"])
    # weight each layer's rate by its outputs per forward: the mean must be the trainer's epoch rate
    sizes: dict[str, int] = {}
    handles = [m.register_forward_hook(lambda m, i, o, n=n: sizes.__setitem__(n, o.numel()))
               for n, m in neurons.items()]
    trainer.model.reset_state()
    with torch.no_grad():
        trainer.model.train()(example_input(trainer.cfg, batch_size=4))
    for h in handles:
        h.remove()
    for epoch, event in enumerate(e for e in events if e.kind == "epoch"):
        rates = {n: acc.Scalars(f"firing_rate/{n}")[epoch].value for n in neurons}
        mean = sum(rates[n] * sizes[n] for n in neurons) / sum(sizes.values())
        assert mean == pytest.approx(event.firing_rate, rel=1e-5)
        hist = acc.Histograms(f"firing_rate_per_neuron/{next(iter(neurons))}")[epoch].histogram_value
        assert 0.0 <= hist.min <= hist.max <= 1.0


def test_config_is_logged_as_hparams(logged) -> None:
    acc, events, trainer, *_ = logged
    content = acc.PluginTagToContent("hparams")
    data = [plugin_data_pb2.HParamsPluginData.FromString(v) for v in content.values()]
    start = next(d.session_start_info for d in data if d.HasField("session_start_info"))
    assert start.hparams["modes"].string_value == "ST"
    assert start.hparams["n_embd"].number_value == trainer.cfg.n_embd
    assert hparams_of(trainer.cfg)["attention"] == "ssa"


def test_hooks_are_removed_at_fit_end(logged) -> None:
    *_, tb, hooks_before = logged
    assert len(torch.nn.modules.module._global_forward_hooks) == hooks_before
    assert tb._handles == []


def test_missing_tensorboard_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from hstlab._optional import MissingDependency

    monkeypatch.setitem(sys.modules, "tensorboard", None)
    message = "needs the 'tensorboard' package, which is not installed: pip install tensorboard"
    with pytest.raises(MissingDependency, match=message):
        TensorBoardLogger(tmp_path)


def test_bad_log_dir() -> None:
    with pytest.raises(ValueError, match="log_dir=None must be a folder path"):
        TensorBoardLogger(None)


def test_cli_tensorboard_flag_logs_a_run(tmp_path, data_env):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from hstlab.cli import main

    logs = tmp_path / "tb"
    assert main(["train", "--preset", "tiny", "--dataset", "digits-dvs", "--epochs", "1", "--limit", "16",
                 "--no-progress", "--run-dir", str(tmp_path / "run"), "--tensorboard", str(logs)]) == 0
    files = list(logs.rglob("events.out.tfevents.*"))
    assert files
    acc = EventAccumulator(str(files[0].parent))
    acc.Reload()
    assert any("loss" in tag for tag in acc.Tags()["scalars"])
