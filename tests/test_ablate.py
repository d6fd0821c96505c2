"""Cumulative ablation: config chain, same seed/budget, failures recorded, files and waterfall written."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re

import pandas as pd
import pytest
from test_train_support import one_thread  # noqa: F401

from hstlab.config import HSTConfig
from hstlab.train import TrainingDiverged
from hstlab.train.ablate import (
    ABLATION_STEPS,
    BASELINE_FIELDS,
    ablation_configs,
    run_ablation,
    same_network,
)
from hstlab.train.config import TrainConfig
from hstlab.viz import save_ablation_waterfall

pytestmark = pytest.mark.usefixtures("one_thread")
EXTERNAL = re.compile(r"<(script|link)[^>]+(src|href)\s*=\s*[\"']?(https?:)?//", re.IGNORECASE)
STEPS = ("+cpg", "+tim", "+sew", "+rsm")


def test_configs_are_cumulative_from_an_honest_baseline():
    base = HSTConfig.from_preset("tiny").with_layer(0, tim=True, residual="sew_and")  # overrides are cleared
    variants = ablation_configs(base, STEPS)
    assert [v for v, _, _ in variants] == ["baseline", *STEPS]
    first = variants[0][2]
    assert {k: getattr(first, k) for k in BASELINE_FIELDS} == BASELINE_FIELDS
    assert all(not lay.tim and lay.residual == "add" for lay in first.resolved_layers())
    for (_, _, prev), (step, change, cfg) in itertools.pairwise(variants):
        fields = ABLATION_STEPS.get(step)
        changed = {k for k in cfg.to_dict() if cfg.to_dict()[k] != prev.to_dict()[k] and k != "layers"}
        assert changed <= set(fields) and changed, step  # only the step's own fields move
        assert all(getattr(cfg, k) == v for k, v in fields.items())
        assert all(k in change for k in changed)
    last = variants[-1][2]
    assert (last.pos_encoding, last.tim, last.residual, last.mask_ratio) == ("cpg", True, "sew_add", 0.25)


def test_unknown_or_repeated_step_names_the_known_steps(tmp_path):
    with pytest.raises(ValueError, match=r"unknown ablation step '\+bogus'; allowed: \+cpg, \+tim"):
        run_ablation("tiny", "digits-dvs", steps=("+cpg", "+bogus"), out_dir=tmp_path / "x")
    assert not (tmp_path / "x").exists()  # nothing trained or written
    with pytest.raises(ValueError, match="repeats"):
        ablation_configs("tiny", "+cpg,+cpg")
    with pytest.raises(ValueError, match="seed"):
        run_ablation("tiny", "digits-dvs", seed=-1, out_dir=tmp_path)


def test_same_network_detects_a_step_that_changes_nothing():
    variants = {v: c for v, _, c in ablation_configs("tiny", STEPS)}
    assert same_network(variants["+tim"], dataclasses.replace(variants["+tim"], name="renamed"))
    assert not same_network(variants["+tim"], variants["+sew"])  # SN(x + branch) vs x + SN(branch)
    assert not same_network(variants["baseline"], variants["+cpg"])
    assert not same_network(variants["+sew"], variants["+rsm"])  # masking changes the gradients


class FakeTrain:
    """Stands in for train_run: records the calls, fails on one variant."""

    def __init__(self, fail_on: str | None = None):
        self.calls: list[dict] = []
        self.fail_on = fail_on

    def __call__(self, cfg, dataset, **kw):
        self.calls.append({"cfg": cfg, "dataset": dataset, **kw})
        if self.fail_on is not None and cfg.tim and cfg.residual == "add" and self.fail_on == "+tim":
            raise TrainingDiverged("loss is nan at step 3")
        kw["run_dir"].mkdir(parents=True, exist_ok=True)
        n = len(self.calls)
        tc = kw["train_config"]
        return {"val_accuracy": 0.5 + 0.01 * n, "test_accuracy": 0.4 + 0.02 * n, "energy_per_sample_j": 1e-5 / n,
                "val_firing_rate": 0.03, "epochs_completed": tc.epochs, "limit": tc.limit, "steps": 7,
                "train_seconds": 1.0, "run_dir": str(kw["run_dir"])}


def test_run_ablation_same_seed_and_budget_and_failures_recorded(tmp_path):
    fake = FakeTrain(fail_on="+tim")
    df = run_ablation("tiny", "digits-dvs", steps=STEPS, epochs=2, seed=7, out_dir=tmp_path, limit=12,
                      train_fn=fake, batch_size=4)
    assert list(df["variant"]) == ["baseline", *STEPS] and list(df["step"]) == list(range(5))
    assert [(c["seed"], c["train_config"], c["dataset"]) for c in fake.calls] == [
        (7, TrainConfig(epochs=2, limit=12, batch_size=4), "digits-dvs")] * 5  # tiny has no recipe: generic defaults
    assert [c["cfg"].pos_encoding for c in fake.calls] == ["none", "cpg", "cpg", "cpg", "cpg"]
    failed = df[df["status"] == "failed"]
    assert list(failed["variant"]) == ["+tim"] and "TrainingDiverged: loss is nan" in failed["error"].iloc[0]
    assert (tmp_path / "02-tim" / "error.txt").is_file()
    ok = df[df["status"] == "ok"]
    assert ok["seed"].eq(7).all() and ok["epochs"].eq(2).all()
    expected_acc = [0.4 + 0.02 * n for n in (1, 2, 4, 5)]  # call 3 failed
    assert ok["accuracy"].tolist() == pytest.approx(expected_acc)
    assert df.loc[3, "delta_accuracy"] == pytest.approx(expected_acc[2] - expected_acc[1])  # skips the failed row
    assert not str(df.loc[3, "note"]).startswith("same network")  # +sew: SEW ADD differs from SN(x + branch)
    assert df["energy_vs_baseline"].iloc[-1] == pytest.approx(1 / 5)
    saved = pd.read_csv(tmp_path / "ablation.csv")
    assert list(saved["variant"]) == list(df["variant"]) and saved["accuracy"].tolist()[0] == pytest.approx(0.42)
    md = (tmp_path / "ablation.md").read_text()
    assert all(v in md for v in df["variant"]) and "failed: TrainingDiverged" in md
    assert not (tmp_path / "ablation.html").exists()  # the runner returns data; viz draws it
    page = save_ablation_waterfall(df, tmp_path / "ablation.html").read_text()
    assert "Bokeh" in page and not EXTERNAL.search(page)  # resources inlined: opens offline


@pytest.mark.slow
def test_run_ablation_trains_real_variants(tmp_path):
    df = run_ablation("tiny", "digits-dvs", steps=("+cpg",), epochs=1, seed=3, out_dir=tmp_path, limit=10,
                      batch_size=10)
    assert list(df["variant"]) == ["baseline", "+cpg"] and df["status"].eq("ok").all()
    runs = [json.loads((tmp_path / d / "run.json").read_text()) for d in ("00-baseline", "01-cpg")]
    assert {r["seed"] for r in runs} == {3} and {r["epochs"] for r in runs} == {1}
    cfgs = [json.loads((tmp_path / d / "config.json").read_text()) for d in ("00-baseline", "01-cpg")]
    assert (cfgs[0]["pos_encoding"], cfgs[1]["pos_encoding"]) == ("none", "cpg")
    for d, (_, row) in zip(("00-baseline", "01-cpg"), df.iterrows()):
        metrics = json.loads((tmp_path / d / "metrics.json").read_text())
        assert row["accuracy"] == metrics["test_accuracy"] and row["energy_j"] == metrics["energy_per_sample_j"]
    assert save_ablation_waterfall(df, tmp_path / "ablation.html").stat().st_size > 10_000


def test_run_ablation_takes_a_train_config_and_refuses_bad_fields(tmp_path):
    fake = FakeTrain()
    tc = TrainConfig(epochs=1, lr=0.01, batch_size=8)
    run_ablation("tiny", "digits-dvs", steps=("+cpg",), train_config=tc, out_dir=tmp_path, train_fn=fake, limit=6)
    assert [c["train_config"] for c in fake.calls] == [tc.replace(limit=6)] * 2
    with pytest.raises(ValueError, match="epochs=0 must be an integer >= 1"):
        run_ablation("tiny", "digits-dvs", steps=("+cpg",), epochs=0, out_dir=tmp_path, train_fn=fake)
    with pytest.raises(ValueError, match="train_config=.* must be a TrainConfig"):
        run_ablation("tiny", "digits-dvs", train_config={"epochs": 1}, out_dir=tmp_path, train_fn=fake)


def test_training_package_does_not_import_plotting():
    import ast
    from pathlib import Path

    import hstlab.train

    for path in Path(hstlab.train.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "holoviews" or n.startswith("hstlab.viz") for n in names), path


def test_cli_ablate_rejects_bad_steps(capsys):
    from hstlab.cli import main

    assert main(["ablate", "--base", "tiny", "--steps", "+cpg,+nope"]) != 0
    assert "unknown ablation step '+nope'" in capsys.readouterr().err
