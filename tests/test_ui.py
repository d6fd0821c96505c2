"""Explorer state and views without a browser: trigger params, check config, model, plots, runs."""

from __future__ import annotations

import json

import panel as pn
import pytest
import torch
from ui_support import SMALL

from hstlab.config import HSTConfig
from hstlab.energy import energy_report
from hstlab.model import build_model, example_input
from hstlab.ui import (
    BuildView,
    EnergyView,
    ExplorerState,
    InspectView,
    LayerTable,
    TrainSession,
    TrainView,
    create_app,
)
from hstlab.ui.card import model_card
from hstlab.ui.samples import SampleSource


def n_params(cfg: HSTConfig) -> int:
    return sum(p.numel() for p in build_model(cfg).parameters())




# ---------------------------------------------------------------------------------------- state
def test_preset_fields_become_params_and_build_the_preset_model(no_data):
    state = ExplorerState(preset="tiny")
    preset = HSTConfig.from_preset("tiny")
    assert (state.n_layer, state.n_embd, state.n_head, state.num_steps) == (2, 32, 2, 2)
    assert state.cfg.resolved_layers() == preset.resolved_layers()
    assert state.n_params == n_params(preset)
    assert state.error == ""
    state.preset = "hst-small"
    assert state.n_embd == 64 and state.cfg.input_shape == (2, 34, 34)
    assert state.n_params == n_params(HSTConfig.from_preset("hst-small"))


def test_layer_toggle_rebuilds_with_library_count(no_data):
    state = ExplorerState(preset="tiny")
    before = state.n_params
    state.set_layer(0, "attn_mode", "standard")
    state.set_layer(0, "mlp_mode", "standard")
    expected = HSTConfig.from_preset("tiny").with_modes("TS")
    assert state.cfg.modes == "TS"
    assert state.n_params == n_params(expected) != before
    state.set_layer(1, "tim", True)
    assert state.cfg.layer(1).tim is True
    assert state.n_params == n_params(expected.with_layer(1, tim=True))


def test_membrane_bits_reach_the_neurons_and_the_energy(no_data):
    state = ExplorerState(preset="tiny")
    fp32_energy = state.energy.total_j
    state.membrane_bits = 8
    assert state.error == "" and state.cfg.membrane_bits == 8
    neurons = [m for m in state.model.modules() if getattr(m, "is_spiking_neuron", False)]
    assert neurons and all(n.membrane_bits == 8 for n in neurons)
    assert state.energy.total_j < fp32_energy  # 8-bit membrane traffic and neuron arithmetic


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [("n_head", 5, "n_head=5"), ("n_layer", 0, "n_layer=0"), ("num_steps", -1, "num_steps=-1")],
)
def test_invalid_field_sets_error_and_keeps_model(no_data, field, value, needle):
    state = ExplorerState(preset="tiny")
    model, count = state.model, state.n_params
    setattr(state, field, value)
    assert needle in state.error
    assert state.model is model and state.n_params == count
    setattr(state, field, getattr(HSTConfig.from_preset("tiny"), field))
    assert state.error == "" and state.model is not model


def test_bad_layer_cell_names_the_layer_field(no_data):
    state = ExplorerState(preset="tiny")
    state.set_layer(1, "mask_ratio", 1.5)
    assert state.error.startswith("layers[1].mask_ratio=1.5")
    state.set_layer(1, "mask_ratio", 0.25)
    assert state.error == "" and state.cfg.layer(1).mask_ratio == 0.25
    with pytest.raises(ValueError, match="column='bogus'"):
        state.set_layer(0, "bogus", 1)


def test_depth_change_resizes_the_layer_table(no_data):
    state = ExplorerState(preset="tiny")
    state.set_layer(1, "attn_mode", "standard")
    state.n_layer = 4
    assert len(state.layers) == 4 and state.cfg.n_layer == 4
    assert state.cfg.modes == "SHHH"  # new layers copy the last row
    state.n_layer = 1
    assert state.cfg.modes == "S" and len(state.layers) == 1


def test_energy_and_recording_come_from_the_library(no_data):
    state = ExplorerState(preset="tiny")
    assert "not available" in state.sample.note  # no data: random input, with a reason
    x = example_input(state.cfg, batch_size=1)
    assert torch.equal(state.sample.x, x)
    assert state.energy.total_j == pytest.approx(energy_report(state.model, x).total_j)
    neurons = {n for n, m in state.model.named_modules() if getattr(m, "is_spiking_neuron", False)}
    assert set(state.inspection.spikes) == neurons
    attn = state.inspection.attention
    assert attn and all(a.shape[:3] == (2, 1, 2) for a in attn.values())  # [T, B, H, N, N]


def test_dataflow_selector_remeasures_the_energy(no_data):
    state = ExplorerState(preset="tiny")
    step = state.energy
    state.dataflow = "time-batched"
    expected = energy_report(state.model, state.sample.x, dataflow="time-batched")
    assert state.energy.dataflow == "time-batched" and state.energy.total_j == pytest.approx(expected.total_j)
    assert state.energy.memory_j < step.memory_j and state.energy.compute_j == pytest.approx(step.compute_j)
    variants = state.energy_variants()  # the variants follow the same dataflow
    assert {r.dataflow for r in variants.values()} == {"time-batched"}
    state.n_layer = 3  # a rebuild keeps the chosen dataflow
    assert state.energy.dataflow == "time-batched" and not state.error
    batched = state.energy
    state.dataflow = "fused"
    assert state.energy.dataflow == "fused" and state.energy.memory_j < batched.memory_j
    assert state.energy.compute_j == pytest.approx(batched.compute_j)


def test_sample_from_dataset(data_env):
    state = ExplorerState(**SMALL)
    sample = state.sample
    assert sample.from_data and sample.label is not None
    assert tuple(sample.x.shape) == (state.cfg.input_steps, 1, 2, 34, 34)
    assert sample.x.sum() > 0 and sample.events is not None
    first = sample.x
    state.sample_index = 3
    assert not torch.equal(state.sample.x, first) and "sample 3" in state.sample.source
    state.num_steps = 2  # re-binned to the new T
    assert state.sample.x.shape[0] == 2


def test_sample_shape_mismatch_falls_back(data_env):
    sample = SampleSource().sample(HSTConfig.from_preset("tiny"), "digits-dvs", 0)
    assert not sample.from_data and "input_shape" in sample.note


def test_energy_variants_match_independent_builds(no_data):
    state = ExplorerState(preset="tiny")
    reports = state.energy_variants()
    assert list(reports) == ["current (SS, 32-bit)", "current, 8-bit weights", "standard twin",
                             "standard twin, int8", "bit-matched twin"]
    torch.manual_seed(0)
    standard = build_model(state.cfg.with_modes("TT")).eval()
    expected = energy_report(standard, state.sample.x).total_j
    assert reports["standard twin"].total_j == pytest.approx(expected)
    assert reports["current, 8-bit weights"].total_j < reports["current (SS, 32-bit)"].total_j
    assert reports["bit-matched twin"].total_j < reports["standard twin, int8"].total_j


def test_explorer_and_model_card_price_the_same_twins(no_data):
    """One twin builder: the Energy tab and the model card report the same twin energies."""
    from hstlab.train.card import comparison

    state = ExplorerState(preset="tiny")
    tab = state.energy_variants()
    card = {row["variant"]: row["total_j"] for row in comparison(state.cfg, state.model, state.sample.x, None)["rows"]}
    for name in ("standard twin", "standard twin, int8", "bit-matched twin"):
        assert tab[name].total_j == pytest.approx(card[name], rel=1e-9)


def test_explorer_shows_zoo_models_with_their_weights(no_data):
    from hstlab.ui.state import NO_PRETRAINED, UNTRAINED

    state = ExplorerState(preset="tiny", pretrained="hst-small-digits-dvs")
    assert state.weights == "pretrained: hst-small-digits-dvs (test accuracy 98.9 %)"
    assert state.cfg.modes == "SS" and state.preset == "hst-small" and state.pretrained == "hst-small-digits-dvs"
    assert "hst-small-text-chars" not in state.param.pretrained.objects  # a sequence model: no frames
    state.pretrained = "hst-small-digits-dvs-standard"
    assert state.cfg.modes == "TT" and state.weights.startswith("pretrained: hst-small-digits-dvs-standard")
    state.n_head = 2  # editing a field: an untrained build, and the selector says so
    assert state.weights == UNTRAINED and state.pretrained == NO_PRETRAINED
    assert not state.load_pretrained("hst-small-text-chars") and "allowed:" in state.error


# ---------------------------------------------------------------------------------------- views
def test_layer_table_widgets_drive_the_state(no_data):
    state = ExplorerState(preset="tiny")
    table = LayerTable(state=state)
    table.widget(0, "attn_mode").value = "standard"
    assert state.cfg.layer(0).attn_mode == "standard"
    table.widget(1, "mask_ratio").value = "0.5"  # typed text, parsed
    assert state.cfg.layer(1).mask_ratio == 0.5
    state.n_layer = 3  # state -> widgets
    assert len(table._rows) == 3 and table.widget(2, "mask_ratio").value == "0.5"


def test_build_view_summary_and_error(no_data):
    state = ExplorerState(preset="tiny")
    view = BuildView(state=state)
    assert f"{state.n_params:,}" in view.summary_text()
    view.widgets["n_head"].value = "3"
    assert "n_head=3" in state.error
    assert view.error.visible
    view.widgets["n_head"].value = "2"
    assert not view.error.visible


@pytest.mark.slow
def test_views_render_to_bokeh(no_data):
    app = create_app(preset="tiny", runs_dir=no_data / "runs")
    root = app.__panel__()
    for i in range(len(app.tabs)):
        app.tabs.active = i
        model = root.get_root()
        assert len(list(model.references())) > 10  # widgets and plots became Bokeh models


def test_inspect_view_choices_follow_the_model(no_data):
    state = ExplorerState(preset="tiny")
    view = InspectView(state=state)
    assert view.spike_layer in state.inspection.spikes
    assert view.attention_layer in state.inspection.attention
    state.set_layer(0, "attn_mode", "standard")  # softmax attention in layer 0
    assert view.attention_layer in state.inspection.attention
    assert view.param.spike_layer.objects == list(state.inspection.spikes)


def test_energy_view_and_model_card(no_data):
    state = ExplorerState(preset="tiny")
    view = EnergyView(state=state, session=TrainSession(runs_dir=no_data / "runs"))
    totals = view.comparison_totals()
    assert totals["standard twin"] > 0
    name, text = model_card(state)
    assert name.endswith(".md")
    assert f"{state.n_params:,}" in text and "## Assumptions" in text
    assert (
        json.loads(text.split("## Config")[1].split("```json")[1].split("```")[0])["name"] == "tiny"
    )
    assert view._card().read() == text


def test_sessions_do_not_share_state(no_data):
    a, b = create_app(preset="tiny", runs_dir=no_data), create_app(preset="tiny", runs_dir=no_data)
    a.state.n_layer = 3
    assert b.state.n_layer == 2 and b.state.cfg.n_layer == 2
    assert a.session is not b.session and a.session.runs_dir != b.session.runs_dir


# ---------------------------------------------------------------------------------------- training
@pytest.mark.slow
def test_training_run_collects_events_and_checkpoint(data_env, tmp_path):
    state = ExplorerState(**SMALL)
    session = TrainSession(runs_dir=tmp_path, limit=8, batch_size=4)
    view = TrainView(state=state, session=session)
    assert session.start(state)
    assert not session.start(state) and "already running" in session.message
    session.join(60)
    session.poll()
    assert not session.running
    row = session.runs.iloc[-1]
    assert row["status"] == "finished" and row["steps"] == 2 and row["modes"] == "SS"
    assert row["params"] == state.n_params
    assert (tmp_path / "run-001" / "best.safetensors").is_file()
    assert session.live.buffer.data["step"].tolist() == [1.0, 2.0]
    assert session.events_received == 3  # two steps and one epoch
    assert "Chart points received: **3**" in view.received.object
    name, text = model_card(state, session.last_run_dir)  # the trainer's card reads our run.json
    assert name == f"model_card_{state.cfg.name}_{state.cfg.modes}_run-001.md"
    assert (tmp_path / "run-001" / "model_card.md").read_text() == text
    assert text.startswith("# Model card: hst-small on digits-dvs (modes SS)")


def test_stop_keeps_the_checkpoint(data_env, tmp_path):
    state = ExplorerState(**SMALL)
    session = TrainSession(runs_dir=tmp_path, limit=32, batch_size=4, epochs=20)
    assert session.start(state)
    assert session.stop()
    session.join(60)
    session.poll()
    row = session.runs.iloc[-1]
    assert row["status"] == "stopped" and row["steps"] < 20 * 8
    assert (tmp_path / "run-001" / "last.safetensors").is_file()
    assert not session.stop() and "No training run" in session.message


def test_training_without_data_reports(no_data, tmp_path):
    state = ExplorerState(**SMALL)
    session = TrainSession(runs_dir=tmp_path)
    assert session.start(state)
    session.join(30)
    session.poll()
    assert session.runs.empty  # a failed run is reported, not recorded as a row of missing numbers
    assert "not available" in session.message and "run-001 failed" in session.status
    session.batch_size = 0
    assert not session.start(state) and "batch_size=0" in session.message


def test_inspection_is_recorded_only_while_live(no_data):
    state = ExplorerState(preset="tiny", live_inspection=False)
    assert state.inspection is None
    state.set_layer(0, "attn_mode", "standard")
    assert state.inspection is None
    state.live_inspection = True
    assert set(state.inspection.attention) == {
        n for n, m in state.model.named_modules() if hasattr(m, "attention_map")
    }
    assert torch.equal(state.inspection.sample.x, state.sample.x)


def test_inspect_attention_defaults_to_the_mean_over_steps(no_data):
    state = ExplorerState(preset="tiny")
    view = InspectView(state=state)
    view.section = "Attention"
    pane = view._content(state.inspection, "Attention", view.spike_layer, view.attention_layer, 0, 0,
                         view.steps, state.cfg)
    title = pane.object.opts.get().kwargs["title"]
    assert view.steps == "mean over steps" and f"mean over {state.cfg.num_steps} steps" in title
    one = view._content(state.inspection, "Attention", None, view.attention_layer, 0, 1, "one step (slider)",
                        state.cfg)
    assert "t=1," in one.object.opts.get().kwargs["title"]


def test_inspect_shows_the_sample_through_the_spiking_and_standard_zoo_models(no_data):
    state = ExplorerState(preset="tiny")
    pair = state.zoo_comparison()
    assert pair["spiking"].spikes and not pair["standard"].spikes  # the twin has no spiking neuron
    assert pair["spiking"].logits.shape == pair["standard"].logits.shape == (1, 10)
    view = InspectView(state=state)
    pane = view._content(state.inspection, "Spiking vs standard", None, None, 0, 0, view.steps, state.cfg)
    text = " ".join(str(p.object) for p in pane.select(pn.pane.Markdown))
    assert "zoo: hst-small-digits-dvs-standard" in text and "predicts **" in text


def test_the_stem_has_its_own_control_and_the_summary_says_what_it_follows(no_data):
    state = ExplorerState(preset="tiny")
    assert state.summary()["stem"] == "spiking (follows layer 0)"
    state.set_layer(0, "attn_mode", "standard")  # with the stem following layer 0, it turns standard too
    assert state.summary()["stem"] == "standard (follows layer 0)" and state.cfg.stem_mode == "standard"
    state.tokenizer_mode = "spiking"  # pinned: a hybrid with a spiking stem and a standard layer 0
    assert state.cfg.tokenizer_mode == "spiking" and state.summary()["stem"] == "spiking"
    hybrid = ExplorerState(preset="tiny", pretrained="hst-small-digits-dvs-hybrid-stem")
    assert hybrid.tokenizer_mode == "standard" and hybrid.cfg.modes == "SS"  # the README's hybrid-stem model


def test_summary_names_the_memory_level_and_says_when_a_change_crosses_one(no_data):
    state = ExplorerState(preset="hst-small")
    assert state.summary()["memory"] == "sram-1mb, step-major" and state.memory_note == ""
    state.n_layer = 4  # 1,061.5 KiB of fp32 weights: past the 1 MiB on-chip level
    assert "memory moved from sram-1mb to dram" in state.memory_note
    assert "⚠ weights now take 1,061.5 KiB" in BuildView(state=state).summary_text()
    state.n_layer = 3
    assert "from dram to sram-1mb" in state.memory_note
    state.n_head = 8
    assert state.memory_note == ""  # no level crossed by this change


def test_energy_layer_table_is_readable_and_downloads_as_csv(no_data):
    import pandas as pd

    from hstlab.ui.views.energy import layer_csv, layer_table

    state = ExplorerState(preset="tiny")
    table = layer_table(state.energy)
    assert list(table.columns) == ["layer", "kind", "mode", "input", "MACs / sample", "ACs / sample",
                                   "input rate", "compute (µJ)", "memory (µJ)"]
    row = state.energy.layers.iloc[0]
    assert table["MACs / sample"].iloc[0] == f"{row['macs']:,.0f}"
    assert float(table["compute (µJ)"].iloc[0].replace(",", "")) == pytest.approx(row["compute_j"] * 1e6, rel=1e-3)
    raw = pd.read_csv(layer_csv(state.energy))
    assert raw["compute_j"].sum() == pytest.approx(state.energy.layers["compute_j"].sum())


def test_summary_lists_the_stages_of_a_staged_model(no_data):
    state = ExplorerState(preset="tiny")
    assert state.summary()["stages"] == [] and "stage 0" not in BuildView(state=state).summary_text()
    staged = HSTConfig.from_preset("qkformer-dvs")
    state.param.update(cfg=staged)  # as an accepted staged model would publish it
    lines = state.summary()["stages"]
    assert lines == [
        "stage 0: speds /8 -> 16x16 tokens, 1 transformer block (qk), width 128, 16 heads (layer 0)",
        "stage 1: speds /2 -> 8x8 tokens, 1 transformer block (ssa), width 256, 16 heads (layer 1)"]
    text = BuildView(state=state).summary_text()
    assert "**stage 0:** speds /8 -> 16x16 tokens" in text and "**stage 1:**" in text


# ---------------------------------------------------------------------------------------- recipes, help
def test_train_tab_starts_from_the_recipe_and_follows_the_preset(no_data, tmp_path):
    from hstlab.train.recipes import recipe_for
    from hstlab.ui import create_app
    from hstlab.ui.training import ALL_SAMPLES

    app = create_app(preset="hst-small", runs_dir=tmp_path)
    session, view = app.session, app.views["Train"]
    recipe = recipe_for("hst-small", "digits-dvs").train
    assert (session.epochs, session.lr, session.batch_size, session.augment_shift) == (
        recipe.epochs, recipe.lr, recipe.batch_size, recipe.augment_shift)
    assert session.limit == ALL_SAMPLES and recipe.limit is None  # every sample of each split
    assert view.settings["epochs"].value == str(recipe.epochs)
    assert "Recipe hst-small on digits-dvs" in view.recipe.object
    view.settings["epochs"].value = "2"
    app.state.preset = "tiny"  # no recipe: TrainConfig's generic defaults, and it says so
    generic = recipe_for("tiny", "digits-dvs").train
    assert (session.epochs, session.lr) == (generic.epochs, generic.lr)
    assert "No recipe for tiny on digits-dvs" in session.recipe


def test_every_control_explains_itself_from_the_glossary(no_data):
    from hstlab.glossary import GLOSSARY, explain, missing
    from hstlab.ui.views.build import BuildView

    assert missing() == []
    view = BuildView(state=ExplorerState(preset="tiny"))
    for name, widget in view.widgets.items():
        assert widget.description == explain(name), name
    assert "samples per split" in GLOSSARY["limit"]
    for term in ("SSA", "SDSA", "QK", "conv", "TIM", "SEW", "masking", "CPG-PE", "step-major",
                 "time-batched", "fused"):
        assert any(term in line for line in GLOSSARY.values()), term


def test_stem_box_shows_follows_layer_0_and_sets_the_stem(no_data):
    from hstlab.ui.views.build import BuildView

    state = ExplorerState(preset="tiny")
    box = BuildView(state=state).widgets["tokenizer_mode"]
    assert box.value == "follows layer 0" and box.get_root().value == "follows layer 0"  # not blank
    box.value = "spiking"
    assert state.cfg.tokenizer_mode == "spiking" and state.error == ""
    state.load_pretrained("hst-small-digits-dvs")  # showing a config does not edit it
    assert box.value == "follows layer 0" and state.weights.startswith("pretrained:")
