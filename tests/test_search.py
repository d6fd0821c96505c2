"""hstlab.search: the design space, objectives, the Optuna search (storage, resume, front) and its CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hstlab import HSTConfig
from hstlab.search import SearchSpace, check_objectives, load_search, pareto_mask, run_search

optuna = pytest.importorskip("optuna")

SPACE = SearchSpace(num_steps=(2,), weight_bits=(8, 32), attention_kinds=("ssa", "sdsa"))
FAST = {"epochs": 1, "limit": 16, "train_options": {"batch_size": 16}}


# ------------------------------------------------------------------ space and objectives
def test_space_without_a_spiking_option_names_the_fields() -> None:
    with pytest.raises(ValueError, match="stem_modes, attn_modes and mlp_modes.*no spiking option"):
        SearchSpace(stem_modes=("standard",), attn_modes=("standard",), mlp_modes=("standard",))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("attn_modes", ("spiking", "fast"), "attn_modes holds 'fast'"),
    ("attention_kinds", ("softmax",), "attention_kinds holds 'softmax'"),
    ("num_steps", (0,), "num_steps"),
    ("weight_bits", (), "weight_bits=\\(\\) is empty"),
    ("mask_ratios", (1.0,), "mask_ratios"),
])
def test_space_rejects_bad_values(field: str, value: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SearchSpace(**{field: value})


def test_space_sample_sets_every_choice(tiny_cfg) -> None:
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=1))
    space = SearchSpace(num_steps=(3,), weight_bits=(8,), membrane_bits=(16,), mask_ratios=(0.25,))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        cfg, record = space.sample(trial, tiny_cfg)
        assert cfg.num_steps == 3 and cfg.weight_bits == 8 and cfg.membrane_bits == 16
        assert all(layer.mask_ratio == 0.25 for layer in cfg.resolved_layers())
        assert cfg.tokenizer_mode == ("spiking" if record["stem"] == "S" else "standard")
        for i, layer in enumerate(cfg.resolved_layers()):
            assert record["attn"][i] == ("S" if layer.attn_mode == "spiking" else "T")
            assert layer.attention_kind == record["kinds"].split(",")[i]
            # a kind is a parameter only where attention spikes
            assert (f"layer{i}.attention" in trial.params) == (layer.attn_mode == "spiking")
        seen.add(record["design"])
        study.tell(trial, [0.0, 0.0])
    assert len(seen) > 3  # the sampler explores several designs


def test_unknown_objective_is_named() -> None:
    with pytest.raises(ValueError, match="unknown objective 'accuracy'; allowed: val_accuracy"):
        check_objectives(["accuracy", "energy_per_sample_j"])


def test_pareto_mask_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    values = rng.random((40, 2))
    mask = pareto_mask(values, [True, False])  # maximise column 0, minimise column 1
    for i, (a, e) in enumerate(values):
        dominated = any((b >= a and f <= e) and (b > a or f < e) for b, f in values)
        assert mask[i] == (not dominated)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"epochs": 0}, "epochs=0 must be an integer >= 1"),
    ({"seconds": 0}, "seconds=0 must be a number > 0"),
    ({"objectives": ["val_accuracy", "joules"]}, "unknown objective 'joules'"),
    ({"n_trials": 0}, "n_trials=0"),
    ({"dataflow": "magic"}, "dataflow='magic' is not allowed"),
    ({"train_options": {"epochs": 3}}, "train_options: unknown key"),
])
def test_bad_search_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_search("tiny", "digits-dvs", search_dir=tmp_path / "s", **kwargs)
    assert not (tmp_path / "s" / "search.db").exists()  # nothing stored for a refused search


# ------------------------------------------------------------------ a real (tiny) search
@pytest.fixture(scope="module")
def searched(digits_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """Two one-step trials of the tiny preset on the small digits-dvs build."""
    search_dir = tmp_path_factory.mktemp("search")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HSTLAB_DATA", str(digits_root))
        rows: list[dict] = []
        result = run_search("tiny", "digits-dvs", search_dir=search_dir, n_trials=2, space=SPACE,
                            dataflow="time-batched", on_trial=rows.append, **FAST)
        yield result, rows, search_dir, mp


def test_search_trains_measures_and_finds_the_front(searched) -> None:
    from hstlab import energy_report, load_checkpoint
    from hstlab.data import load_dataset
    from hstlab.data.collate import spread_indices
    from hstlab.train import default_collate

    result, rows, search_dir, _ = searched
    assert [r["status"] for r in rows] == ["complete", "complete"]
    assert len(result.trials) == 2 and result.front["number"].isin(result.trials["number"]).all()
    assert 1 <= len(result.front) <= 2
    row = result.trials.iloc[0]
    run_dir = Path(row["run_dir"])
    assert run_dir.parent == search_dir / "runs"
    model, cfg, _ = load_checkpoint(run_dir)  # a normal run directory
    assert row["design"].startswith("S" if cfg.stem_mode == "spiking" else "T")
    assert cfg.num_steps == 2 and cfg.weight_bits == row["weight_bits"]
    # energy is the best model's, under the search's dataflow, on spread validation samples
    val = load_dataset("digits-dvs", "val", time_bins=cfg.input_steps, limit=16)
    x, _ = default_collate([val[i] for i in spread_indices(len(val), 32)])
    expected = energy_report(model, x, dataflow="time-batched").total_j
    assert row["energy_per_sample_j"] == pytest.approx(expected, rel=1e-6)
    assert row["val_accuracy"] == json.loads((run_dir / "metrics.json").read_text())["val_accuracy"]
    # the front carries the test score of its members only
    assert result.front["test_accuracy"].notna().all()
    assert "test_accuracy" not in result.trials.columns


def test_search_resumes_and_refuses_other_settings(searched) -> None:
    result, _, search_dir, _ = searched
    again = load_search(search_dir)
    pd.testing.assert_frame_equal(again.trials, result.trials)
    with pytest.raises(ValueError, match=r"other settings.*space\.num_steps: stored \[2\], now \[2, 4\]"):
        run_search("tiny", "digits-dvs", search_dir=search_dir, n_trials=3, dataflow="time-batched",
                   space=SearchSpace(num_steps=(2, 4), weight_bits=(8, 32)), **FAST)


def test_killed_trial_is_run_again(searched) -> None:
    result, _, search_dir, _ = searched
    study = optuna.load_study(study_name="hstlab-search", storage=f"sqlite:///{search_dir / 'search.db'}")
    study.ask()  # a trial a killed search left RUNNING
    resumed = run_search("tiny", "digits-dvs", search_dir=search_dir, n_trials=3, space=SPACE,
                         dataflow="time-batched", **FAST)
    states = [t.state for t in study.get_trials()]
    assert states.count(optuna.trial.TrialState.FAIL) == 1  # the stale one
    assert states.count(optuna.trial.TrialState.COMPLETE) == 3
    assert len(resumed.trials) == 3 and set(result.trials["number"]) < set(resumed.trials["number"])


def test_max_params_prunes_before_training(data_env: Path, tmp_path: Path) -> None:
    rows: list[dict] = []
    result = run_search("tiny", "digits-dvs", search_dir=tmp_path, n_trials=1, space=SPACE, max_params=10,
                        on_trial=rows.append, **FAST)
    assert rows[0]["status"] == "pruned (max_params)" and result.trials.empty
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------ plot and CLI
def test_pareto_plot_hover_shows_the_design(searched) -> None:
    from hstlab.viz.search import pareto_plot

    result = searched[0]
    plot = pareto_plot(result.trials)
    front_points = plot.get(2)
    assert "design" in [d.name for d in front_points.vdims]
    assert len(front_points) == len(result.front)
    with pytest.raises(ValueError, match="trials lacks column"):
        pareto_plot(result.trials.drop(columns="pareto"))


@pytest.mark.parametrize(("argv", "message"), [
    (["--epochs", "0"], "epochs=0"),
    (["--objectives", "val_accuracy,speed"], "unknown objective 'speed'"),
    (["--stem-modes", "standard", "--attn-modes", "standard", "--mlp-modes", "standard"], "no spiking option"),
])
def test_cli_bad_input_is_one_line(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    from hstlab.cli import main

    assert main(["search", "--preset", "tiny", "--dir", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("hstlab search: error:")


def test_cli_search_prints_the_front(data_env: Path, tmp_path: Path, capsys) -> None:
    from hstlab.cli import main

    argv = ["search", "--preset", "tiny", "--dir", str(tmp_path), "--trials", "1", "--epochs", "1", "--limit", "16",
            "--batch-size", "16", "--num-steps", "2", "--plot", str(tmp_path / "front.html")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Pareto front (1 of 1 trials" in out and "val_accuracy" in out
    assert (tmp_path / "front.csv").is_file() and (tmp_path / "front.html").is_file()


def test_a_design_proposed_again_is_not_retrained(data_env: Path, tmp_path: Path) -> None:
    one = SearchSpace(stem_modes=("spiking",), attn_modes=("spiking",), mlp_modes=("spiking",),
                      attention_kinds=("ssa",), num_steps=(2,), weight_bits=(32,))
    assert one.size(n_layer=2) == 1
    rows: list[dict] = []
    result = run_search("tiny", "digits-dvs", search_dir=tmp_path, n_trials=2, space=one, on_trial=rows.append, **FAST)
    assert [r["status"] for r in rows] == ["complete", "duplicate of trial 0 (not retrained)"]
    assert rows[1]["val_accuracy"] == rows[0]["val_accuracy"]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["trial-0000"]
    assert len(result.trials) == 2 and result.front["number"].tolist() == [0]


# ------------------------------------------------------------------ fields the search does not vary
def test_a_space_that_does_not_fit_attn_block_is_refused_before_any_trial(tmp_path: Path) -> None:
    space = SearchSpace(attention_kinds=("ssa", "statten"), num_steps=(2, 3))  # tiny: attn_block=2
    with pytest.raises(ValueError, match=r"num_steps=3, attention_kinds 'statten'.*attn_block=2 does not divide "
                                         r"num_steps=3.*allowed: 1, 3\. Drop those values"):
        run_search("tiny", "digits-dvs", search_dir=tmp_path / "s", space=space, **FAST)
    assert not (tmp_path / "s").exists()  # refused before the study is created


@pytest.mark.parametrize(("base", "space", "message"), [
    (lambda c: c.with_layer(1, attn_block=4), SearchSpace(attention_kinds=("statten",), num_steps=(2, 4)),
     r"num_steps=2.*layers\[1\]\.attn_block=4 does not divide num_steps=2"),
    (lambda c: c.with_layer(0, experts=3), SearchSpace(attention_kinds=("ssa", "emsa")),
     r"attention_kinds 'emsa'.*layers\[0\]\.experts=3 does not divide n_embd=32"),
    (lambda c: c.with_layer(0, mlp_kind="emsp"), SearchSpace(attention_kinds=("spikegpt",), mlp_modes=("spiking",)),
     r"attention_kinds 'spikegpt'.*layers\[0\]\.mlp_kind='emsp' does not apply"),
    (lambda c: HSTConfig.from_preset("tiny", neuron="ilif"),
     SearchSpace(membrane_bits=(32, 16)), r"membrane_bits 16: membrane_bits=16 is not supported with neuron='ilif'"),
    (lambda c: HSTConfig.from_preset("sdt2-15m"), SearchSpace(attention_kinds=("ssa", "lateral")),
     r"attention_kinds 'lateral'.*layers\[4\]\.attention='lateral' does not fit stages\[3\]\.projection='repconv'"),
])
def test_check_fits_names_the_space_values_and_the_config_field(tiny_cfg, base, space, message) -> None:
    with pytest.raises(ValueError, match=message):
        space.check_fits(base(tiny_cfg))


def test_trials_keep_the_presets_per_layer_fields(tiny_cfg) -> None:
    base = (tiny_cfg.with_layer(0, attn_block=4, experts=8)
            .with_layer(1, mlp_kind="emsp", experts=2))  # attn_block=4 fits every T of the space
    space = SearchSpace(attention_kinds=("statten", "emsa"), num_steps=(4, 8), attn_modes=("spiking",))
    space.check_fits(base)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    kinds = set()
    for _ in range(8):
        trial = study.ask()
        cfg, record = space.sample(trial, base)
        first, second = cfg.layer(0), cfg.layer(1)
        assert (first.attn_block, first.experts, second.mlp_kind, second.experts) == (4, 8, "emsp", 2)
        assert second.mlp_built == ("emsp" if second.mlp_mode == "spiking" else "mlp")
        kinds.add(record["kinds"])
        study.tell(trial, 0.0)
    assert len(kinds) > 1


def test_conv_stage_layers_get_no_attention_parameter() -> None:
    base = HSTConfig.from_preset("sdt2-15m")  # 4 conv-stage layers, then 8 transformer layers
    space = SearchSpace(attention_kinds=("ssa", "statten"), num_steps=(2,), attn_modes=("spiking",))
    space.check_fits(base)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    cfg, record = space.sample(trial, base)
    assert not any(f"layer{i}.attention" in trial.params for i in range(4))  # a conv stage has no attention
    assert all(f"layer{i}.attention" in trial.params for i in range(4, 12))
    assert record["kinds"].split(",")[:4] == ["sepconv"] * 4
