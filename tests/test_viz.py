"""Tests for hstlab.viz: element dimensions, data against analytic values, Bokeh rendering."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading

import holoviews as hv
import numpy as np
import pandas as pd
import pytest
import torch

from hstlab.layers.posenc import cpg_code, cpg_phases, sincos_code
from hstlab.viz import (
    LiveCurves,
    ablation_waterfall,
    attention_dynamicmap,
    attention_holomap,
    attention_map,
    code_image,
    code_vs_phase,
    energy_comparison,
    event_cloud,
    event_frames,
    firing_rate_heatmap,
    firing_rate_table,
    layer_energy_bars,
    layer_ops_bars,
    membrane_traces,
    phase_portrait,
    posenc_views,
    position_similarity,
    spike_raster,
    to_numpy,
    waterfall_steps,
)


@pytest.fixture(scope="module", autouse=True)
def bokeh():
    hv.extension("bokeh")


def render(element):
    model = hv.render(element, backend="bokeh")
    assert model is not None
    return model


def names(dims):
    return [d.name for d in dims]


def has_hover(model) -> bool:
    from bokeh.models import HoverTool

    return bool(model.select({"type": HoverTool}))


def spikes_dict(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return {
        "tok.lif": (torch.rand(4, 2, 3, 5, generator=g) > 0.7).float(),  # [T, B, C, N]
        "blocks.0.lif": (torch.rand(4, 2, 2000, generator=g) > 0.9).float(),  # [T, B, N]
    }


# ---------------------------------------------------------------- spikes


def test_spike_raster_points_are_the_nonzero_entries():
    spikes = spikes_dict()
    el = spike_raster(spikes, "tok.lif", sample=1)
    assert isinstance(el, hv.Scatter)
    assert names(el.kdims) == ["t"] and names(el.vdims) == ["neuron"]
    expected = np.argwhere(spikes["tok.lif"][:, 1].reshape(4, -1).numpy() != 0)  # [(t, n)]
    got = np.stack([el.dimension_values("t"), el.dimension_values("neuron")], axis=1)
    assert sorted(map(tuple, got.astype(int))) == sorted(map(tuple, expected))
    assert has_hover(render(el))


def test_spike_raster_subsamples_and_keeps_true_indices():
    spikes = spikes_dict()["blocks.0.lif"].clone()
    spikes[2, 0, 1999] = 1.0
    el = spike_raster(spikes, sample=0, max_neurons=100)
    shown = np.unique(el.dimension_values("neuron"))
    assert shown.size <= 100
    assert 1999 in shown and shown.max() < 2000
    assert "100 of 2000" in el.opts.get().kwargs["title"]
    render(el)


def test_spike_raster_rejects_bad_sample_and_layer():
    with pytest.raises(ValueError, match="sample"):
        spike_raster(spikes_dict(), "tok.lif", sample=5)
    with pytest.raises(ValueError, match="nope"):
        spike_raster(spikes_dict(), "nope")
    with pytest.raises(ValueError, match=r"\[T, B"):
        spike_raster(torch.zeros(5))


def test_membrane_traces_match_input_and_draw_threshold():
    v = torch.randn(6, 2, 4)  # [T, B, N]
    el = membrane_traces({"lif": v}, {"lif": 0.75}, sample=1, neurons=[0, 3])
    nd = el.get(0)
    assert isinstance(nd, hv.NdOverlay) and list(nd.keys()) == [0, 3]
    np.testing.assert_allclose(nd[3].dimension_values("v"), v[:, 1, 3].numpy(), rtol=1e-6)
    hline = el.get(1)
    assert isinstance(hline, hv.HLine) and hline.data == pytest.approx(0.75)
    render(el)


def test_membrane_traces_adaptive_threshold_curves():
    v, th = torch.randn(5, 1, 3), torch.rand(5, 1, 3) + 1.0
    el = membrane_traces(v, th, neurons=2)
    th_curves = [c for c in el if isinstance(c, hv.Curve)]
    assert len(th_curves) == 2
    np.testing.assert_allclose(th_curves[0].dimension_values("v"), th[:, 0, 0].numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="threshold"):
        membrane_traces(v, torch.ones(2, 2))
    render(el)


def test_firing_rate_heatmap_is_mean_per_layer_and_step():
    spikes = spikes_dict()
    table = firing_rate_table(spikes)
    want = spikes["tok.lif"].mean(dim=(1, 2, 3)).numpy()  # [T]
    got = table[table["layer"] == "tok.lif"]["rate"].to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    one = firing_rate_table(spikes, sample=1)
    np.testing.assert_allclose(
        one[one["layer"] == "blocks.0.lif"]["rate"], spikes["blocks.0.lif"][:, 1].mean(1), rtol=1e-6
    )
    el = firing_rate_heatmap(spikes)
    assert isinstance(el, hv.HeatMap)
    assert names(el.kdims) == ["t", "layer"] and el.vdims[0].name == "rate"
    assert list(el.dimension_values("layer", expanded=False)) == ["tok.lif", "blocks.0.lif"]
    assert has_hover(render(el))


# ---------------------------------------------------------------- attention


def attention_dict():
    g = torch.Generator().manual_seed(1)
    return {
        "blocks.0.attn": torch.rand(2, 2, 3, 5, 5, generator=g),  # [T, B, H, N, N]
        "blocks.1.attn": torch.randn(3, 2, 2, 5, 5, generator=g),
    }


def test_attention_map_selects_layer_head_step_sample():
    att = attention_dict()
    el = attention_map(att, "blocks.0.attn", head=2, t=1, sample=1)
    assert isinstance(el, hv.Image)
    assert names(el.kdims) == ["key", "query"] and names(el.vdims) == ["weight"]
    want = att["blocks.0.attn"][1, 1, 2].numpy()  # [Nq, Nk]
    grid = el.dimension_values("weight", flat=False)
    assert grid.shape == (5, 5)
    # value at (key=k, query=q) is A[q, k]
    assert el[3, 1] == pytest.approx(want[1, 3])
    assert has_hover(render(el))
    with pytest.raises(ValueError, match="head"):
        attention_map(att, "blocks.0.attn", head=3)
    with pytest.raises(ValueError, match=r"\[T, B, H, N, N\]"):
        attention_map(torch.zeros(2, 3, 4))


def test_attention_map_summarizes_steps_on_request():
    att = {"a": torch.zeros(3, 1, 1, 2, 2)}  # [T, B, H, N, N]: empty at t=0, as spiking maps start
    att["a"][1] = 1.0
    att["a"][2] = 2.0
    mean = attention_map(att, "a", t="mean")
    assert mean[0, 0] == pytest.approx(1.0) and "mean over 3 steps" in mean.opts.get().kwargs["title"]
    peak = attention_map(att, "a", t="peak")
    assert peak[0, 0] == pytest.approx(2.0) and "t=2 (most active step)" in peak.opts.get().kwargs["title"]
    with pytest.raises(ValueError, match="allowed: a time step index, mean, peak"):
        attention_map(att, "a", t="max")


def test_attention_signed_map_uses_symmetric_colour_range():
    el = attention_map(attention_dict(), "blocks.1.attn")
    low, high = el.opts.get().kwargs["clim"]
    assert low == pytest.approx(-high) and high > 0


def test_attention_holomap_keys_are_head_and_step():
    att = attention_dict()
    hmap = attention_holomap(att, "blocks.1.attn", sample=1)
    assert names(hmap.kdims) == ["head", "t"]
    assert sorted(hmap.keys()) == [(h, t) for h in range(2) for t in range(3)]
    np.testing.assert_allclose(
        hmap[1, 2].dimension_values("weight", flat=False),
        att["blocks.1.attn"][2, 1, 1].numpy(),
        rtol=1e-6,
    )
    render(hmap)


def test_attention_dynamicmap_draws_any_layer():
    att = attention_dict()
    dmap = attention_dynamicmap(att)
    assert names(dmap.kdims) == ["layer", "head", "t"]
    el = dmap["blocks.1.attn", 1, 2]
    np.testing.assert_allclose(
        el.dimension_values("weight", flat=False), att["blocks.1.attn"][2, 0, 1].numpy(), rtol=1e-6
    )
    render(dmap)


# ---------------------------------------------------------------- positional encoding


def test_phase_portrait_points_lie_on_unit_circle():
    phases = cpg_phases(32, 8)  # [P, N]
    el = phase_portrait(phases, pairs=[0, 3], threshold=0.8)
    pairs = next(e for e in el if isinstance(e, hv.NdOverlay))
    assert list(pairs.keys()) == [0, 3] and names(pairs.kdims) == ["pair"]
    scatter = pairs[3]
    assert names(scatter.kdims) == ["sin"] and names(scatter.vdims) == ["cos", "position"]
    assert len(scatter) == 32
    np.testing.assert_allclose(scatter.dimension_values("cos"), phases[:, 7].numpy(), rtol=1e-6)
    for s in pairs:
        radius = s.dimension_values("sin") ** 2 + s.dimension_values("cos") ** 2
        np.testing.assert_allclose(radius, 1.0, atol=1e-5)
    assert any(isinstance(e, hv.VLine) for e in el)
    render(el)


def test_code_vs_phase_marks_exactly_the_spikes():
    phases, code = cpg_phases(40, 8), cpg_code(40, 8, threshold=0.8)
    el = code_vs_phase(phases, code, channels=[0, 1], threshold=0.8)
    marks = next(e for e in el if isinstance(e, hv.Scatter))
    assert len(marks) == int(code[:, :2].sum())
    assert (marks.dimension_values("value") >= 0.8 - 1e-6).all()
    render(el)
    continuous = code_vs_phase(sincos_code(40, 8))
    assert not any(isinstance(e, hv.Scatter) for e in continuous)
    with pytest.raises(ValueError, match="code has shape"):
        code_vs_phase(phases, code[:, :4])


def test_position_similarity_cosine_is_symmetric_with_unit_diagonal():
    code = sincos_code(24, 16)
    el = position_similarity(code)
    sim = el.dimension_values(2, flat=False)
    assert sim.shape == (24, 24)
    np.testing.assert_allclose(sim, sim.T, atol=1e-6)
    np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-6)
    x = code.numpy().astype(np.float64)
    want = x[3] @ x[7] / np.linalg.norm(x[3]) / np.linalg.norm(x[7])
    assert el[7, 3] == pytest.approx(want, abs=1e-6)
    with pytest.raises(ValueError, match="similarity metric"):
        position_similarity(code, metric="euclid")
    render(el)


def test_code_image_and_posenc_views_for_both_kinds():
    img = code_image(cpg_code(16, 8))
    assert names(img.kdims) == ["channel", "position"]
    assert img.dimension_values(2, flat=False).shape == (16, 8)
    for kind in ("cpg", "sincos"):
        views = posenc_views(kind, num_positions=16, n_neurons=8)
        assert set(views) == {"phase_portrait", "code_vs_phase", "code", "similarity"}
        for view in views.values():
            render(view)
    with pytest.raises(ValueError, match="learned"):
        posenc_views("learned")


# ---------------------------------------------------------------- events


def test_event_frames_show_on_minus_off_per_bin():
    frames = torch.poisson(
        torch.full((3, 2, 6, 7), 1.5), generator=torch.Generator().manual_seed(2)
    )
    hmap = event_frames(frames)
    assert names(hmap.kdims) == ["t"] and sorted(hmap.keys()) == [0, 1, 2]
    img = hmap[2]
    assert names(img.kdims) == ["x", "y"]
    want = (frames[2, 1] - frames[2, 0]).numpy()  # ON (channel 1) - OFF (channel 0), [H, W]
    np.testing.assert_allclose(img.dimension_values(2, flat=False), want)
    assert img[4, 1] == pytest.approx(want[1, 4])  # (x=4, y=1) is row 1, column 4
    render(hmap.layout())
    batch = event_frames(frames[:, None].expand(-1, 2, -1, -1, -1), sample=1)
    assert len(batch) == 3
    with pytest.raises(ValueError, match="channels"):
        event_frames(torch.zeros(3, 4, 5, 5))


def test_event_frames_polarity_matches_the_data_binning():
    from hstlab.data.frames import events_to_frames

    ev = np.zeros(2, dtype=[("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i1")])
    ev["x"], ev["y"], ev["t"], ev["p"] = [1, 3], [2, 0], [10, 20], [1, 0]  # one ON, one OFF
    frames = events_to_frames(ev, (4, 3, 2), time_bins=1, window_us=100)  # [T, P, H, W]
    img = event_frames(frames)[0]
    assert img[1, 2] == 1.0  # the ON event is positive (red)
    assert img[3, 0] == -1.0  # the OFF event is negative (blue)


def tonic_events(n: int = 300) -> np.ndarray:
    rng = np.random.default_rng(3)
    ev = np.zeros(n, dtype=[("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i1")])
    ev["x"], ev["y"] = rng.integers(0, 34, n), rng.integers(0, 34, n)
    ev["t"], ev["p"] = np.sort(rng.integers(0, 100_000, n)), rng.integers(0, 2, n)
    return ev


def test_event_cloud_bokeh_projections():
    ev = tonic_events()
    layout = event_cloud(ev, max_events=100, backend="bokeh")
    assert isinstance(layout, hv.Layout) and len(layout) == 2
    xt, yt = layout
    assert names(xt.kdims) == ["t"] and names(xt.vdims) == ["x", "polarity"]
    assert names(yt.vdims) == ["y", "polarity"]
    assert len(xt) == 100
    on = xt.dimension_values("polarity") == "ON"
    assert set(np.unique(xt.dimension_values("polarity"))) <= {"ON", "OFF"} and on.any()
    render(layout)
    full = event_cloud(ev, backend="bokeh")[0]
    assert (full.dimension_values("polarity") == "ON").sum() == int((ev["p"] > 0).sum())
    with pytest.raises(ValueError, match="p"):
        event_cloud(ev[["x", "y", "t"]])
    with pytest.raises(ValueError, match="backend"):
        event_cloud(ev, backend="matplotlib")


@pytest.mark.skipif(importlib.util.find_spec("plotly") is not None, reason="plotly installed")
def test_event_cloud_auto_falls_back_without_plotly():
    assert isinstance(event_cloud(tonic_events()), hv.Layout)
    with pytest.raises(ValueError, match="plotly"):
        event_cloud(tonic_events(), backend="plotly")


# ---------------------------------------------------------------- energy


def layers_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "name": ["tok.conv", "blocks.0.attn", "head"],
            "kind": ["conv", "attention", "linear"],
            "mode": ["standard", "spiking", "spiking"],
            "macs": [1e6, 2e5, 1e3],
            "acs": [0.0, 5e4, 200.0],
            "input_rate": [1.0, 0.1, 0.2],
            "compute_j": [4.6e-6, 5e-8, 2e-10],
            "memory_j": [1e-6, 2e-7, 1e-9],
        }
    )


def test_layer_energy_bars_stack_compute_and_memory():
    df = layers_frame()
    el = layer_energy_bars(df)
    assert isinstance(el, hv.Bars)
    assert names(el.kdims) == ["layer", "part"] and el.vdims[0].name == "energy"
    assert el.vdims[0].unit == "µJ"
    data = el.data
    totals = data.groupby("layer", sort=False)["energy"].sum().to_numpy()
    np.testing.assert_allclose(totals, (df["compute_j"] + df["memory_j"]) / 1e-6)
    assert has_hover(render(el))

    class Report:
        layers = df

    ops = layer_ops_bars(Report())
    mac = ops.data[ops.data["part"] == "MAC"]["ops"].to_numpy()
    np.testing.assert_allclose(mac, df["macs"])
    render(ops)
    with pytest.raises(ValueError, match="memory_j"):
        layer_energy_bars(df.drop(columns="memory_j"))


def test_energy_comparison_ratios_and_accuracy():
    el = energy_comparison({"standard": 2e-4, "spiking": 3e-5, "int8": 5e-5}, {"spiking": 0.91})
    bars = el.get(0)
    assert isinstance(bars, hv.Bars) and names(bars.kdims) == ["variant"]
    np.testing.assert_allclose(bars.dimension_values("ratio"), [1.0, 0.15, 0.25])
    acc = bars.dimension_values("accuracy")
    assert acc[1] == pytest.approx(0.91) and np.isnan(acc[0])
    assert bars.vdims[0].unit == "µJ"
    render(el)
    with pytest.raises(ValueError, match="baseline"):
        energy_comparison({"a": 1.0}, baseline="b")
    with pytest.raises(ValueError, match="accuracy"):
        energy_comparison({"a": 1.0}, {"b": 0.5})


def test_waterfall_steps_deltas_add_up():
    values = np.array([0.95, 0.91, 0.93, 0.92])
    steps = waterfall_steps(values, higher_is_better=True)
    assert steps["delta"].iloc[1:-1].sum() == pytest.approx(values[-1] - values[0])
    assert list(steps["effect"]) == ["baseline", "worse", "better", "worse", "final"]
    energy = waterfall_steps(np.array([2.0, 0.5, 0.6]), higher_is_better=False)
    assert list(energy["effect"]) == ["baseline", "better", "worse", "final"]


def test_ablation_waterfall_layout():
    df = pd.DataFrame(
        {
            "variant": ["ANN", "+spiking", "+CPG-PE"],
            "accuracy": [0.95, 0.91, 0.93],
            "energy_j": [2e-4, 3e-5, 3.1e-5],
        }
    )
    layout = ablation_waterfall(df)
    assert isinstance(layout, hv.Layout) and len(layout) == 2
    rects = layout[0].get(0)
    assert isinstance(rects, hv.Rectangles) and len(rects) == 4  # baseline, 2 steps, final
    assert names(rects.vdims) == ["variant", "delta", "accuracy", "effect"]
    np.testing.assert_allclose(rects.dimension_values("delta")[1:3], [-0.04, 0.02], atol=1e-12)
    energy = layout[1].get(0)
    assert energy.dimension_values("effect")[1] == "better"
    render(layout)
    with pytest.raises(ValueError, match="energy_j"):
        ablation_waterfall(df.drop(columns="energy_j"))


# ---------------------------------------------------------------- live curves


def test_live_curves_buffer_and_plots():
    from hstlab.train.events import TrainEvent

    live = LiveCurves(min_interval_s=0)
    plots = live.plots()
    assert set(plots) == {"loss", "accuracy", "firing_rate", "energy_per_sample_j"}
    for s in range(3):
        live(TrainEvent(kind="step", step=s, epoch=0, loss=1.0 / (s + 1), accuracy=None))
    live.push(
        TrainEvent(
            kind="epoch", step=3, epoch=0, loss=0.4, val_accuracy=0.6, energy_per_sample_j=2.5e-6
        )
    )
    live.push(TrainEvent(kind="fit_end", step=3, epoch=0, loss=0.4))
    steps, epochs = live.buffer.data, live.epoch_buffer.data
    assert len(steps) == 3 and len(epochs) == 1
    np.testing.assert_allclose(steps["loss"], [1.0, 0.5, 1 / 3])
    assert steps["accuracy"].isna().all()
    assert epochs["val_accuracy"].iloc[0] == pytest.approx(0.6)
    assert epochs["energy_per_sample_uj"].iloc[0] == pytest.approx(2.5)  # J -> µJ
    overlay = plots["accuracy"][()]
    assert names(overlay.get(0).kdims) == ["step"] and overlay.get(0).vdims[0].name == "accuracy"
    for dmap in plots.values():
        render(dmap)
    render(live.layout())


def test_live_curves_batches_step_rows_until_flush():
    live = LiveCurves(metrics=("loss",), min_interval_s=3600)

    class Event:
        kind, epoch = "step", 0

        def __init__(self, step):
            self.step, self.loss = step, float(step)

    for s in range(5):
        live.push(Event(s))
    assert len(live.buffer.data) == 1  # the first push sends, the rest wait for the interval
    live.flush()
    assert live.buffer.data["step"].tolist() == [0, 1, 2, 3, 4]


def test_live_curves_push_from_threads():
    class Event:  # duck-typed: only some attributes
        kind = "step"

        def __init__(self, step):
            self.step, self.epoch, self.loss = step, 0, float(step)

    live = LiveCurves(metrics=("loss",), length=1000, min_interval_s=0.01)
    threads = [
        threading.Thread(target=lambda k=k: [live.push(Event(k * 50 + i)) for i in range(50)])
        for k in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    live.flush()
    assert sorted(live.buffer.data["step"]) == list(range(200))
    with pytest.raises(ValueError, match="metrics"):
        LiveCurves(metrics=("speed",))


# ---------------------------------------------------------------- helpers / import contract


def test_to_numpy_accepts_tensors_arrays_lists():
    assert to_numpy(torch.ones(2, 3, dtype=torch.bfloat16)).dtype == np.float32
    assert to_numpy(torch.ones(2, requires_grad=True)).shape == (2,)
    assert to_numpy([[1, 2]]).shape == (1, 2)


@pytest.mark.slow
def test_import_loads_no_backend_and_functions_render_without_extension():
    code = (
        "import holoviews as hv, numpy as np, hstlab.viz as v\n"
        "assert not hv.Store.renderers, list(hv.Store.renderers)\n"
        "el = v.spike_raster(np.ones((2, 1, 3)))\n"
        "assert 'bokeh' in hv.Store.renderers\n"
        "hv.render(el, backend='bokeh')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr


def test_membrane_threshold_line_stays_in_view_when_no_trace_reaches_it():
    membranes = {"a": torch.full((4, 1, 3), 0.1)}  # [T, B, N], far below the threshold
    fig = hv.render(membrane_traces(membranes, 1.0, "a"), backend="bokeh")
    assert fig.y_range.start <= 0.1 and fig.y_range.end >= 1.0


def test_each_variant_keeps_its_colour_and_empty_series_leave_the_legend():
    import panel as pn
    from bokeh.models import Legend

    from hstlab.train.events import TrainEvent
    from hstlab.viz.palette import VARIANT_COLORS, variant_color

    totals = {"current (HS, 32-bit)": 2e-5, "all spiking": 1e-5, "standard twin": 3e-4,
              "standard twin, int8": 5e-5, "bit-matched twin": 2e-5}
    from hstlab import viz

    bars = viz.energy_comparison(totals).get(0)
    assert list(bars.data["color"]) == [VARIANT_COLORS[k] for k in
                                        ("hybrid", "spiking", "standard", "int8", "bit-matched")]
    assert variant_color("current (TT, 32-bit)") == VARIANT_COLORS["standard"]
    live = viz.LiveCurves(min_interval_s=0)
    model = pn.pane.HoloViews(live.layout()).get_root()

    def shown() -> set[str]:
        return {item.label.value for legend in model.select({"type": Legend})
                for item in legend.items if item.visible}

    assert shown() == set()  # nothing trained yet: no legend entries
    live.push(TrainEvent(kind="epoch", step=1, epoch=0, loss=2.3))
    live.flush()
    assert shown() == {"train (epoch)"}  # no validation value yet
    live.push(TrainEvent(kind="epoch", step=2, epoch=1, loss=2.0, val_loss=2.1))
    live.flush()
    assert shown() == {"train (epoch)", "validation"}


# ---------------------------------------------------------------- per-layer config table
def test_layers_frame_shows_block_and_experts_only_where_a_layer_uses_them():
    from hstlab import HSTConfig
    from hstlab.viz import layers_frame
    from hstlab.viz.config_table import LAYER_COLUMNS

    flat = layers_frame(HSTConfig.from_preset("tiny"))
    assert list(flat.columns) == list(LAYER_COLUMNS)  # nothing applies: the table stays narrow
    cfg = (HSTConfig.from_preset("tiny", num_steps=4).with_depth(3).with_layer(0, attention="statten", attn_block=4)
           .with_layer(1, attention="emsa", experts=8).with_layer(2, mlp_kind="emsp", experts=2)
           .with_modes(attn="SSS", mlp="TTS"))
    frame = layers_frame(cfg)
    assert list(frame.columns) == [*LAYER_COLUMNS, "attn_block", "experts"]
    assert frame["attn_block"].tolist() == [4, pd.NA, pd.NA]  # only the statten layer has a block
    assert frame["experts"].tolist() == [pd.NA, 8, 2]  # EMSA heads; EMSP channel groups (its MLP spikes)
    standard = layers_frame(cfg.with_modes("TTT"))  # standard halves build softmax and the GELU MLP
    assert "attn_block" not in standard and "experts" not in standard


def test_layers_frame_shows_the_stage_of_each_layer():
    from hstlab import HSTConfig
    from hstlab.viz import layers_frame

    frame = layers_frame(HSTConfig.from_preset("qkformer-dvs"))
    assert frame["stage"].tolist() == [0, 1] and frame["attention"].tolist() == ["qk", "ssa"]
