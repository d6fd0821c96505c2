"""TET loss and per-step head, spike regularisers, threshold balancing, and their trainer/recipe wiring."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hstlab import HSTConfig
from hstlab.model import HSTNet
from hstlab.neurons import LIF, TernaryLIF
from hstlab.neurons.balance import balance_thresholds, balanced_neurons
from hstlab.train import recipes
from hstlab.train.config import TrainConfig
from hstlab.train.losses import TETLoss, build_loss
from hstlab.train.meters import SpikeRateMeter
from hstlab.train.regularisers import FiringRateRegulariser, HoyerRegulariser, build_regulariser
from hstlab.train.run import fit_config_to_data, train_run
from hstlab.train.trainer import Trainer


def tiny_data(cfg: HSTConfig, n: int = 16, seed: int = 0) -> list:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(cfg.num_steps, n, *cfg.input_shape, generator=g) < 0.3).float()
    return [(x[:, i], i % cfg.num_classes) for i in range(n)]


# ------------------------------------------------------------------------------------------ TET
def test_tet_hand_computed():
    steps = torch.tensor([[[2.0, 0.0]], [[0.0, 1.0]]])  # T=2, B=1, K=2; label 0
    y = torch.tensor([0])
    ce0 = math.log(1 + math.exp(-2.0))  # step 0
    ce1 = math.log(1 + math.exp(1.0))  # step 1
    mse = ((2 - 1) ** 2 + (0 - 1) ** 2 + (0 - 1) ** 2 + (1 - 1) ** 2) / 4  # to φ = 1
    loss = TETLoss(lam=0.3, target=1.0)
    assert float(loss(steps, y)) == pytest.approx((ce0 + ce1) / 2 + 0.3 * mse, rel=1e-6)
    assert float(TETLoss(lam=0.0)(steps, y)) == pytest.approx((ce0 + ce1) / 2, rel=1e-6)
    # evaluation is on the mean logits (1, 0.5): class 0 is right although step 1 alone is wrong
    assert loss.score(loss.stats(steps, y)) == {"accuracy": 1.0}
    mean = steps.mean(0)
    assert float(loss(mean, y)) == pytest.approx(float(F.cross_entropy(mean, y)) + 0.3 * float((mean - 1).pow(2).mean()))


def test_tet_refuses_bad_lambda_and_sequence_outputs():
    with pytest.raises(ValueError, match="lam=-0.1 must be"):
        TETLoss(lam=-0.1)
    with pytest.raises(ValueError, match="lam=nan"):
        build_loss("tet", lam=float("nan"))
    with pytest.raises(ValueError, match="classify_steps"):
        TETLoss()(torch.zeros(3, 2, 4), torch.zeros(3, 2))  # a sequence head's [L, B, K] with [L, B] labels


def test_classify_steps_head_per_step_in_training_mean_in_eval():
    cfg = HSTConfig.from_preset("tiny", head="classify_steps")
    torch.manual_seed(0)
    model = HSTNet(cfg)
    x = torch.stack([d[0] for d in tiny_data(cfg, 3)], dim=1)  # [T, B, ...]
    model.train()
    steps = model(x)
    assert steps.shape == (cfg.num_steps, 3, cfg.num_classes)
    plain = HSTNet(HSTConfig.from_preset("tiny"))
    plain.load_state_dict(model.state_dict())
    model.eval()
    plain.eval()
    model.reset_state()
    out = model(x)
    plain.reset_state()
    assert out.shape == (3, cfg.num_classes)
    assert torch.allclose(out, plain(x), atol=1e-5)  # the mean of per-step logits is the classify head


def test_fit_config_switches_head_for_tet():
    cfg = HSTConfig.from_preset("tiny")
    x = torch.zeros(cfg.num_steps, *cfg.input_shape)
    new, notes = fit_config_to_data(cfg, x, 0, "events-vision", 10, "tet")
    assert new.head == "classify_steps" and any("head" in n for n in notes)
    assert fit_config_to_data(cfg, x, 0, "events-vision", 10, "cross_entropy")[0].head == "classify"


# ----------------------------------------------------------------------------------- regularisers
def test_firing_rate_regulariser_hand_computed_and_steers_rate():
    lif = LIF(tau=2.0)
    reg = FiringRateRegulariser(weight=2.0, target=0.25)
    reg.attach(lif)
    lif(torch.tensor([[3.0, 0.0, 0.0, 3.0]]))  # spikes (1, 0, 0, 1): r = 0.5
    assert float(reg.penalty()) == pytest.approx(2.0 * 0.25 ** 2)
    assert reg.last_rate == pytest.approx(0.5)
    # a few gradient steps on the penalty alone bring the rate down to the target
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), LIF(tau=2.0))
    reg = FiringRateRegulariser(weight=50.0, target=0.02)
    reg.attach(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    x = torch.randn(4, 16, 8) * 3
    rates = []
    for _ in range(30):
        net[1].reset_state()
        net(x)
        penalty = reg.penalty()
        rates.append(reg.last_rate)
        opt.zero_grad()
        penalty.backward()
        opt.step()
    assert rates[0] > 0.1 and rates[-1] < rates[0] / 2, rates


def test_hoyer_regulariser_hand_computed():
    lif = LIF(tau=2.0, threshold=2.0)
    reg = HoyerRegulariser(weight=0.5)
    reg.attach(lif)
    lif(torch.tensor([[1.0, 0.0, 0.0, 4.0], [6.0, -2.0, 0.0, 0.0]]))  # z = (0.5, 0, 0, 1, 1, 0, 0, 0)
    l1, l2 = 2.5, 0.25 + 1 + 1
    assert float(reg.penalty()) == pytest.approx(0.5 * l1 ** 2 / (8 * l2))


def test_regulariser_ignores_eval_and_no_grad_forwards_and_counts_ternary_events():
    n = TernaryLIF(tau=2.0, alpha_init=0.5, reset="soft")
    reg = build_regulariser("firing_rate", weight=1.0, target=0.0)
    reg.attach(n)
    with torch.no_grad():
        n(torch.ones(2, 3) * 9)
    n.eval()
    n(torch.ones(2, 3) * 9)
    assert float(reg.penalty()) == 0.0 and reg.last_rate is None
    n.train()
    n.reset_state()
    n(torch.tensor([[3.0, -6.0, 0.5]]))  # events +α, -α, 0: r = 2/3 (not the signed sum 0)
    assert reg.last_rate is None
    assert float(reg.penalty().detach()) == pytest.approx((2 / 3) ** 2)
    assert reg.last_rate == pytest.approx(2 / 3)


def test_regulariser_rate_is_the_meter_rate():
    cfg = HSTConfig.from_preset("tiny")
    model = HSTNet(cfg)
    meter = SpikeRateMeter(model)
    reg = build_regulariser("firing_rate")
    reg.attach(model)
    model(torch.stack([d[0] for d in tiny_data(cfg, 2)], dim=1))
    reg.penalty()
    assert reg.last_rate == pytest.approx(meter.rate(), rel=1e-6)
    meter.close()
    reg.close()


def test_trainer_adds_the_penalty_and_reports_the_steered_rate():
    cfg = HSTConfig.from_preset("tiny", num_classes=2)
    data = tiny_data(cfg)
    events = []
    torch.manual_seed(0)
    trainer = Trainer(HSTNet(cfg), cfg, data, data, epochs=1, batch_size=8, measure_energy=False,
                      regulariser="firing_rate", regulariser_options={"weight": 1.0, "target": 0.0},
                      bn_recalibration_batches=1, callbacks=[events.append])
    trainer.fit()
    steps = [e for e in events if e.kind == "step"]
    assert steps and steps[-1].firing_rate == pytest.approx(trainer.regulariser.last_rate, rel=1e-6)


# ------------------------------------------------------------------------------- threshold balancing
def test_balance_sets_each_layer_to_the_target_rate():
    cfg = HSTConfig.from_preset("tiny", threshold_balance="hold", threshold_balance_rate=0.2)
    torch.manual_seed(0)
    model = HSTNet(cfg)
    x = torch.stack([d[0] for d in tiny_data(cfg, 8)], dim=1)
    assert not any("threshold_scale" in n for n, _ in model.named_parameters())  # held: buffers
    thresholds = balance_thresholds(model, [x], rate=0.2)
    assert len(thresholds) == len(balanced_neurons(model)) > 5
    first_name, first = balanced_neurons(model)[0]
    model.train()
    model.reset_state()
    first.record = True
    model(x)
    h = first.last_v.flatten()
    assert float((h > first.threshold).float().mean()) == pytest.approx(0.2, abs=0.02)
    state = model.state_dict()
    again = HSTNet(cfg)
    again.load_state_dict(state)  # the scales are saved and restored with the model
    assert float(dict(again.named_modules())[first_name].threshold_scale) == float(first.threshold_scale)


def test_balance_learn_mode_trains_the_scale_and_off_mode_has_none():
    cfg = HSTConfig.from_preset("tiny", threshold_balance="learn", num_classes=2)
    data = tiny_data(cfg)
    torch.manual_seed(0)
    trainer = Trainer(HSTNet(cfg), cfg, data, data, epochs=1, batch_size=8, measure_energy=False,
                      bn_recalibration_batches=1)
    warm = dict(trainer.model.named_modules())
    trainer.fit()
    assert trainer.balanced_thresholds
    name = next(iter(trainer.balanced_thresholds))
    scale = warm[name].threshold_scale
    assert isinstance(scale, nn.Parameter)
    assert float(scale) * warm[name].threshold != pytest.approx(trainer.balanced_thresholds[name], rel=1e-7)
    assert balanced_neurons(HSTNet(HSTConfig.from_preset("tiny"))) == []
    with pytest.raises(ValueError, match="threshold_balance='hold' or 'learn'"):
        balance_thresholds(HSTNet(HSTConfig.from_preset("tiny")), [torch.zeros(1)])
    with pytest.raises(ValueError, match="threshold_balance_rate=0"):
        balance_thresholds(HSTNet(cfg), [torch.zeros(1)], rate=0)


# ------------------------------------------------------------------------------------ recipes, CLI
def test_train_config_carries_the_methods():
    tc = TrainConfig(loss="tet", loss_options={"lam": 0.1}, regulariser="hoyer", regulariser_weight=0.01)
    assert TrainConfig.from_dict(tc.to_dict()) == tc
    with pytest.raises(ValueError, match="loss='tett'"):
        TrainConfig(loss="tett")
    with pytest.raises(ValueError, match="regulariser='l2'"):
        TrainConfig(regulariser="l2")
    with pytest.raises(ValueError, match="regulariser_target=-0.1"):
        TrainConfig(regulariser_target=-0.1)


def test_recipe_with_tet_and_regulariser_trains(data_env, tmp_path, monkeypatch):
    recipe = recipes.Recipe("tiny", "digits-dvs", TrainConfig(epochs=1, batch_size=8, limit=16, loss="tet",
                                                              loss_options={"lam": 0.05}, regulariser="firing_rate",
                                                              regulariser_weight=0.5, regulariser_target=0.05),
                            "test recipe")
    monkeypatch.setitem(recipes._RECIPES, ("tiny", "digits-dvs"), recipe)
    metrics = train_run("tiny", "digits-dvs", run_dir=tmp_path / "run")
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert run["loss"] == "tet" and run["regulariser"] == "firing_rate" and run["regulariser_weight"] == 0.5
    assert cfg["head"] == "classify_steps"
    assert 0.0 <= metrics["val_accuracy"] <= 1.0


def test_cli_trains_with_tet_and_hoyer(data_env, tmp_path, capsys):
    from hstlab.cli import main

    code = main(["train", "--preset", "tiny", "--limit", "8", "--batch-size", "4", "--no-progress", "--epochs", "1",
                 "--run-dir", str(tmp_path / "r"), "--loss", "tet", "--loss-option", "lam=0.1",
                 "--regulariser", "hoyer", "--regulariser-weight", "0.01"])
    assert code == 0
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["loss_options"] == {"lam": 0.1} and run["regulariser"] == "hoyer"


def test_regulariser_names_match_the_registry():
    """The CLI's choices (read without importing torch) are exactly the registered regularisers."""
    from hstlab.train.config import REGULARISER_NAMES
    from hstlab.train.regularisers import REGULARISERS

    assert set(REGULARISER_NAMES) == {"none", *REGULARISERS.names()}
