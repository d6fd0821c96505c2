"""The SpikeGPT-style attention kind: the wkv recurrence, its map, causality, streaming and energy counts."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hstlab import HSTConfig, build_model
from hstlab.energy.counting import CountContext, OpCounter
from hstlab.layers.attention.spikegpt import (
    WKV_MACS_PER_ELEMENT,
    SpikeGPTTimeMix,
    SpikingChannelMix,
    token_shift,
    wkv_scan,
)
from hstlab.layers.mlp import SpikingMLP
from hstlab.neurons import reset_state


def seq_cfg(**overrides) -> HSTConfig:
    base = dict(attention="spikegpt", tokenizer="linear", head="sequence", input_shape=(5,), num_classes=5,
                seq_len=10, causal=True, pos_encoding="none")
    return HSTConfig.from_preset("tiny", **{**base, **overrides})


def wkv_reference(k, v, w, u):
    """The wkv formula summed term by term in float64: [T, B, N, D]."""
    out = torch.zeros_like(k)
    n = k.shape[2]
    for i in range(n):
        num = torch.exp(u + k[:, :, i]) * v[:, :, i]
        den = torch.exp(u + k[:, :, i])
        for j in range(i):
            weight = torch.exp(-(i - 1 - j) * w + k[:, :, j])
            num, den = num + weight * v[:, :, j], den + weight
        out[:, :, i] = num / den
    return out


def test_wkv_scan_matches_the_formula_and_survives_large_exponents():
    g = torch.Generator().manual_seed(1)
    k, v = torch.randn(2, 3, 7, 4, generator=g, dtype=torch.float64), torch.randn(2, 3, 7, 4, generator=g, dtype=torch.float64)
    w, u = torch.rand(4, generator=g, dtype=torch.float64) * 2, torch.randn(4, generator=g, dtype=torch.float64)
    out, _ = wkv_scan(k, v, w, u)
    torch.testing.assert_close(out, wkv_reference(k, v, w, u))
    big, _ = wkv_scan(k.float() * 200, v.float(), w.float(), u.float())  # e^{±400} overflows float32 unscaled
    assert torch.isfinite(big).all()


def test_wkv_state_carries_across_calls():
    g = torch.Generator().manual_seed(2)
    k, v = torch.randn(2, 1, 9, 3, generator=g), torch.randn(2, 1, 9, 3, generator=g)
    w, u = torch.rand(3, generator=g), torch.randn(3, generator=g)
    whole, _ = wkv_scan(k, v, w, u)
    first, state = wkv_scan(k[:, :, :4], v[:, :, :4], w, u)
    second, _ = wkv_scan(k[:, :, 4:], v[:, :, 4:], w, u, state)
    torch.testing.assert_close(torch.cat([first, second], dim=2), whole)


def test_token_shift_stacks_the_previous_token():
    x = torch.arange(6.0).view(1, 1, 3, 2)  # [T, B, N, D]
    z = token_shift(x, None)
    assert z[0, 0].tolist() == [[0, 1, 0, 0], [2, 3, 0, 1], [4, 5, 2, 3]]
    assert token_shift(x, torch.full((1, 1, 2), 9.0))[0, 0, 0].tolist() == [0, 1, 9, 9]


def test_attention_map_is_the_weights_of_the_recurrence():
    """With one channel per head the map's rows weigh v exactly as wkv does."""
    cfg = seq_cfg(n_head=32)
    attn = SpikeGPTTimeMix(cfg, cfg.layer(0)).double()
    k, v = torch.randn(2, 1, 6, 32, dtype=torch.float64), torch.randn(2, 1, 6, 32, dtype=torch.float64)
    amap = attn.attention_map(None, attn.split_heads(k))  # [T, B, H, N, N]
    wkv, _ = wkv_scan(k, v, attn.time_decay.exp(), attn.time_first)
    mixed = torch.einsum("tbhnj,tbhjd->tbhnd", amap, attn.split_heads(v))
    torch.testing.assert_close(attn.merge_heads(mixed), wkv)
    assert (amap.triu(1) == 0).all()  # causal


def test_spikegpt_model_is_causal():
    model = build_model(seq_cfg()).eval()
    x = (torch.rand(10, 2, 5) < 0.5).float()
    y = model(x)
    x2 = x.clone()
    x2[6:] = 1 - x2[6:]
    model.reset_state()
    y2 = model(x2)
    torch.testing.assert_close(y[:6], y2[:6])
    assert not torch.equal(y[6:], y2[6:])


def test_block_uses_the_channel_mix_only_for_spikegpt_layers():
    cfg = seq_cfg().with_layer(1, attention="ssa")
    model = build_model(cfg)
    assert isinstance(model.blocks[0].mlp.branch, SpikingChannelMix)
    assert type(model.blocks[1].mlp.branch) is SpikingMLP
    standard = build_model(seq_cfg().with_modes("TT"))  # standard layers keep softmax and GELU
    assert not any(isinstance(m, (SpikeGPTTimeMix, SpikingChannelMix)) for m in standard.modules())


def test_parameter_count_by_hand():
    cfg = seq_cfg()
    d, h = cfg.n_embd, int(cfg.n_embd * cfg.mlp_ratio)
    time_mix = 2 * d * 3 * d + 2 * 3 * d + 2 * d + (d * d + d) + 2 * d  # kvr, its BN, decay+bonus, proj, its BN
    channel_mix = 2 * d * h + 2 * h + 2 * d * d + 2 * d + h * d + 2 * d  # key, receptance, value (+ BNs)
    assert sum(p.numel() for p in SpikeGPTTimeMix(cfg, cfg.layer(0)).parameters()) == time_mix
    assert sum(p.numel() for p in SpikingChannelMix(cfg).parameters()) == channel_mix


def test_stream_survives_neuron_reset_and_ends_cleanly():
    cfg = seq_cfg()
    mix = SpikeGPTTimeMix(cfg, cfg.layer(0))
    mix.begin_stream()
    mix(torch.rand(2, 1, 3, 32))
    reset_state(mix)
    assert set(mix.stream) == {"x", "wkv"} and mix.stream["x"].shape == (2, 1, 32)
    mix.end_stream()
    assert mix.stream is None


def _captured(module, name):
    store = {}
    getattr(module, name).register_forward_hook(lambda m, a, out: store.setdefault("out", out))
    return store


def test_energy_counts_by_hand():
    """Time mix: kvr reads z = [s_n; s_{n-1}] (nnz · 3D accumulates), wkv is 7 MACs per element of k,
    the gate one accumulate per r spike, proj one per spike of the gated average; channel mix alike."""
    cfg = dataclasses.replace(seq_cfg(), threshold=0.3)
    t, b, n, d = cfg.num_steps, 2, 6, cfg.n_embd
    h = int(d * cfg.mlp_ratio)
    time_mix, channel_mix = SpikeGPTTimeMix(cfg, cfg.layer(0)).eval(), SpikingChannelMix(cfg).eval()
    x = (torch.rand(t, b, n, d) < 0.3).float()  # [T, B, N, D] spikes
    z_nnz = float(token_shift(x, None).count_nonzero())
    r_tm, spikes_tm = _captured(time_mix, "receptance_neuron"), _captured(time_mix, "attn_neuron")
    r_cm, key_cm = _captured(channel_mix, "receptance_neuron"), _captured(channel_mix, "key_neuron")
    for module in (time_mix, channel_mix):
        with torch.no_grad(), OpCounter(module, CountContext(batch_size=b, act_bits=32)) as counter:
            module(x)
        tallies = counter.tallies
        if module is time_mix:
            assert tallies["kvr"].acs == z_nnz * 3 * d and tallies["kvr"].macs == 0
            assert tallies[""].macs == WKV_MACS_PER_ELEMENT * t * b * n * d and tallies[""].acs == 0
            assert tallies["gate"].acs == float(r_tm["out"].sum())
            assert tallies["proj"].acs == float(spikes_tm["out"].sum()) * d
            assert tallies["receptance_neuron"].calls == 1
        else:
            assert tallies["key"].acs == z_nnz * h and tallies["receptance"].acs == z_nnz * d
            assert tallies["value"].acs == float(key_cm["out"].sum()) * d
            assert tallies["gate"].acs == float(r_cm["out"].sum())
            assert all(t_.macs == 0 for name, t_ in tallies.items() if not name.endswith("neuron"))


def test_energy_report_prices_every_module_of_a_spikegpt_model():
    from hstlab import energy_report

    cfg = dataclasses.replace(seq_cfg(), residual="membrane")
    report = energy_report(build_model(cfg), (torch.rand(10, 2, 5) < 0.3).float())
    assert not report.unpriced
    layers = report.layers.set_index("name")
    weights = layers[layers["kind"] == "linear"].drop(index="head")
    assert (weights["mode"] == "spiking").all()  # every weight layer inside reads spikes
    assert layers.loc["blocks.0.attn.branch", "macs"] == WKV_MACS_PER_ELEMENT * cfg.num_steps * 10 * cfg.n_embd


def test_config_lists_spikegpt_among_the_kinds():
    with pytest.raises(ValueError, match=r"layers\[1\]\.attention='rwkv'.*spikegpt"):
        seq_cfg(n_layer=2).with_layer(1, attention="rwkv").validate()
    assert seq_cfg().with_layer(1, attention="spikegpt").layer(1).attention_kind == "spikegpt"


@pytest.mark.parametrize("overrides", [{}, {"neuron": "plif"}, {"residual": "membrane", "mlp_ratio": 1.5}])
def test_size_estimate_is_exact(overrides):
    from hstlab.sizing import estimate_size

    for cfg in (seq_cfg(**overrides), seq_cfg(**overrides).with_layer(1, attention="ssa"),
                seq_cfg(**overrides).with_modes(mlp="ST"), seq_cfg(**overrides).with_modes("TS")):
        assert estimate_size(cfg).params == sum(p.numel() for p in build_model(cfg).parameters()), cfg.modes
