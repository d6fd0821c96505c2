"""Model card: twins, fairness, rendering (fast, synthetic frames) and a real tiny run (slow)."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch
from test_train_support import one_thread  # noqa: F401

import hstlab
from hstlab.data import spread_indices
from hstlab.energy import energy_report
from hstlab.recorder import Recorder
from hstlab.train.card import comparison, fairness, write_model_card
from hstlab.train.card_render import joules, render_html, render_markdown
from hstlab.train.checkpoint import load_checkpoint
from hstlab.train.trainer import default_collate

pytestmark = pytest.mark.usefixtures("one_thread")
EXTERNAL = re.compile(r"<(script|link|img|iframe)[^>]+(src|href)\s*=\s*[\"']?(https?:)?//", re.IGNORECASE)


def frames(labels, shape=(2, 16, 16), steps=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [((torch.rand(steps, *shape, generator=g) < 0.15 + 0.05 * y).float(), y) for y in labels]


@pytest.fixture(scope="module")
def tiny():
    cfg = hstlab.HSTConfig.from_preset("tiny", num_classes=3)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = hstlab.build_model(cfg).eval()
    return cfg, model


def test_fairness_has_one_row_per_class_and_names_the_largest_gap(tiny):
    _cfg, model = tiny
    data = frames([0, 1, 2, 0, 1, 2, 2])
    fair = fairness(model, data, batch_size=2, classes=["zero", "one", "two"])
    assert [r["class"] for r in fair["rows"]] == ["zero", "one", "two"]
    assert [r["n"] for r in fair["rows"]] == [2, 2, 3]
    for row in fair["rows"]:  # recompute each class independently
        idx = [i for i, (_, y) in enumerate(data) if y == row["label"]]
        x, y = default_collate([data[i] for i in idx])
        model.reset_state()
        with torch.no_grad(), Recorder(model) as rec:
            pred = model(x).argmax(-1)
        assert row["accuracy"] == pytest.approx(float((pred == y).float().mean()))
        spikes = sum(float(s.sum()) for s in rec.spikes.values())
        assert row["firing_rate"] == pytest.approx(spikes / sum(s.numel() for s in rec.spikes.values()))
        chunks = [idx[i:i + 2] for i in range(0, len(idx), 2)]  # batch_size=2 -> energy per chunk, weighted
        fresh = sum(energy_report(model, default_collate([data[i] for i in c])[0]).total_j * len(c) for c in chunks)
        assert row["energy_j"] == pytest.approx(fresh / len(idx), rel=1e-9)
    for key in ("accuracy", "firing_rate", "energy_j"):
        gap = fair["gaps"][key]
        values = {r["class"]: r[key] for r in fair["rows"]}
        assert values[gap["high"]] == max(values.values()) and values[gap["low"]] == min(values.values())
        assert gap["gap"] == pytest.approx(max(values.values()) - min(values.values()))


def test_comparison_measures_standard_and_int8_twins_and_picks_the_lowest(tiny):
    cfg, model = tiny
    x, _ = default_collate(frames([0, 1]))
    comp = comparison(cfg, model, x, None, accuracy=0.5)
    rows = {r["variant"]: r for r in comp["rows"]}
    twin_cfg = cfg.with_modes("TT")
    fresh_twin = energy_report(hstlab.build_model(twin_cfg), x).total_j  # any init: dense energy is weight-free
    assert rows["standard twin"]["total_j"] == pytest.approx(fresh_twin, rel=1e-12)
    int8 = energy_report(hstlab.build_model(dataclasses.replace(twin_cfg, weight_bits=8)), x, preset="45nm-int8")
    assert rows["standard twin, int8"]["total_j"] == pytest.approx(int8.total_j, rel=1e-12)
    assert rows["standard twin, int8"]["preset"] == "45nm-int8"
    assert comp["rows"][0]["total_j"] == pytest.approx(energy_report(model, x).total_j, rel=1e-12)
    assert comp["rows"][0]["accuracy"] == 0.5 and comp["weight_independent"] is True
    assert comp["winner"] == min(comp["rows"], key=lambda r: r["total_j"])["variant"]
    one = rows["standard twin, T=1 on accumulated frames"]
    assert one["steps"] == 1 and one["macs"] < rows["standard twin"]["macs"]
    for r in comp["rows"]:
        assert r["ratio_to_this"] == pytest.approx(r["total_j"] / comp["rows"][0]["total_j"])
        for suffix in ("_time_batched", "_fused"):
            assert r[f"ratio_to_this{suffix}"] == pytest.approx(
                r[f"total_j{suffix}"] / comp["rows"][0][f"total_j{suffix}"])
    batched_twin = energy_report(hstlab.build_model(twin_cfg), x, dataflow="time-batched").total_j
    assert rows["standard twin"]["total_j_time_batched"] == pytest.approx(batched_twin, rel=1e-12)
    assert batched_twin < rows["standard twin"]["total_j"]  # weights read once instead of T times
    fused_twin = energy_report(hstlab.build_model(twin_cfg), x, dataflow="fused").total_j
    assert rows["standard twin"]["total_j_fused"] == pytest.approx(fused_twin, rel=1e-12)
    assert fused_twin < batched_twin  # the stem's ReLUs and the MLP's GELUs read their input in registers


def _fake_card(tiny) -> dict:
    """Card data assembled from the real measuring functions on synthetic frames."""
    cfg, model = tiny
    data = frames([0, 1, 2, 0, 1, 2])
    x, _ = default_collate(data[:4])
    rep = energy_report(model, x)
    summ = {"preset": rep.preset, "total_j": rep.total_j, "compute_j": rep.compute_j, "memory_j": rep.memory_j,
            "macs": rep.macs, "acs": rep.acs, "memory_level": rep.memory_level, "batch_size": 4,
            "input_shape": list(x.shape)}
    from hstlab.train.card import _components, _layer_rows, _top_layers

    return {"run_dir": "runs/x", "title": "tiny on frames (modes SS)", "config": cfg.to_dict(), "modes": cfg.modes,
            "parameters": 123, "components": _components(cfg), "layers": _layer_rows(cfg),
            "data": {"dataset": "frames", "kind": "events-vision", "description": "synthetic", "source": "test",
                     "full_sizes": {"train": 9, "val": 4, "test": 6}, "used_sizes": {"train": 9, "val": 4, "test": 6},
                     "limit": None, "time_bins": 2, "options": {}, "x_shape": "[T, 2, 16, 16]"},
            "training": {"epochs": 1, "seed": 0, "notes": ["a note"]},
            "metrics": {"val": {"accuracy": 0.3125, "loss": 1.0986}, "test": {"accuracy": 0.4375, "loss": 1.2}},
            "versions": {"torch": "x"},
            "energy": {"val": summ, "test": summ, "val_indices": "first 4", "test_indices": "first 4",
                       "assumptions": rep.assumptions, "baseline_note": rep.baseline_note,
                       "top_layers": _top_layers(rep), "unpriced": ["pos: AddedPositionalEncoding holds 512 parameters"]},
            "comparison": comparison(cfg, model, x, None, 0.4375, rep),
            "fairness": fairness(model, data, 4, None)}


def test_markdown_and_html_carry_the_same_numbers_and_no_external_resources(tiny):
    d = _fake_card(tiny)
    md, page = render_markdown(d), render_html(d)
    for text in (md, page):
        assert "0.3125" in text and "0.4375" in text  # val / test accuracy
        assert joules(d["energy"]["val"]["total_j"]) in text
        assert d["comparison"]["winner"] in text
        assert "largest accuracy gap" in text
        assert "Not priced" in text and "AddedPositionalEncoding holds 512 parameters" in text
        assert "bit-matched twin" in text
        for r in d["fairness"]["rows"]:
            assert joules(r["energy_j"]) in text
    assert not EXTERNAL.search(page) and "<script" not in page and "<style>" in page
    assert page.count('class="hl"') >= 2  # the winner row + the extreme-accuracy classes
    assert render_markdown(d) == md and render_html(d) == page  # deterministic


def test_bad_run_dir_is_named(tmp_path):
    with pytest.raises(ValueError, match="run_dir=.*missing best.safetensors"):
        write_model_card(tmp_path)


# ----------------------------------------------------------------------------------- a real run
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from hstlab.train.run import train_run

    root = tmp_path_factory.mktemp("card")
    train_run("tiny", "digits-dvs", epochs=1, limit=20, batch_size=10, run_dir=root / "snn")
    cfg = hstlab.HSTConfig.from_dict(json.loads((root / "snn" / "config.json").read_text()))
    train_run(cfg.with_modes("TT"), "digits-dvs", epochs=1, limit=20, batch_size=10, run_dir=root / "twin")
    return root


@pytest.mark.slow
def test_card_of_a_trained_run(runs):
    run = runs / "snn"
    path = write_model_card(run, twin_run_dir=runs / "twin", energy_batch=8)
    assert path == run / "model_card.md" and (run / "model_card.html").is_file()
    md, page = path.read_text(), (run / "model_card.html").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    data = json.loads((run / "model_card.json").read_text())
    for text in (md, page):
        assert f"{metrics['val_accuracy']:.4g}" in text and f"{metrics['test_accuracy']:.4g}" in text
        assert f"{metrics['val_loss']:.4g}" in text
    model, _, _ = load_checkpoint(run / "best.safetensors")
    from hstlab.train.run import load_splits

    rj = json.loads((run / "run.json").read_text())
    _, val, test, _ = load_splits("digits-dvs", model.cfg, rj["limit"], {}, None)
    fresh = energy_report(model, default_collate([val[i] for i in spread_indices(len(val), 8)])[0])
    assert data["energy"]["val"]["total_j"] == pytest.approx(fresh.total_j, rel=1e-12)
    assert joules(fresh.total_j) in md and fresh.assumptions[0] in md
    labels = sorted({int(test[i][1]) for i in range(len(test))})
    assert [r["label"] for r in data["fairness"]["rows"]] == labels
    gap = data["fairness"]["gaps"]["accuracy"]
    assert f"largest accuracy gap: **{gap['gap']:.3f}**" in md
    assert f"between class {gap['low']} ({gap['low_value']:.3f}) and class {gap['high']} ({gap['high_value']:.3f})" in md
    twin = data["comparison"]["twin_run"]
    assert twin["same_config"] and twin["test_accuracy"] == json.loads((runs / "twin" / "metrics.json").read_text())[
        "test_accuracy"]
    assert twin["trained_total_j"] == pytest.approx(data["comparison"]["rows"][1]["total_j"], rel=1e-9)
    assert not EXTERNAL.search(page)
    write_model_card(run, twin_run_dir=runs / "twin", energy_batch=8)  # deterministic given the run
    assert path.read_text() == md and (run / "model_card.html").read_text() == page


@pytest.mark.slow
def test_cli_card(runs, capsys):
    from hstlab.cli import main

    out = runs / "cli-card"
    assert main(["card", str(runs / "snn"), "--out", str(out), "--energy-batch", "4"]) == 0
    assert "model_card.md" in capsys.readouterr().out
    assert (out / "model_card.md").is_file() and (out / "model_card.html").is_file()
