"""Config validation, per-layer resolution, serialization and presets."""

from __future__ import annotations

import dataclasses
import json

import pytest

from hstlab import HSTConfig, LayerSpec, build_model, list_presets
from hstlab.config import ATTENTION_KINDS, POS_ENCODINGS, RESIDUALS, TOKENIZERS
from hstlab.layers.attention import ATTENTION
from hstlab.layers.posenc import POS_ENCODINGS as PE_REGISTRY
from hstlab.layers.residual import RESIDUALS as RESIDUAL_REGISTRY
from hstlab.layers.tokenizers import TOKENIZERS as TOKENIZER_REGISTRY

BAD_CONFIGS = [
    (dict(n_embd=30, n_head=4), "n_head"),
    (dict(num_steps=0), "num_steps"),
    (dict(num_steps=-2), "num_steps"),
    (dict(attention="flash"), "attention"),
    (dict(neuron="izhikevich"), "neuron"),
    (dict(tokenizer="pixels"), "tokenizer"),
    (dict(pos_encoding="rope"), "pos_encoding"),
    (dict(residual="concat"), "residual"),
    (dict(surrogate="relu"), "surrogate"),
    (dict(mask_ratio=1.0), "mask_ratio"),
    (dict(mask_ratio=-0.1), "mask_ratio"),
    (dict(weight_bits=1), "weight_bits"),
    (dict(weight_bits=12), "weight_bits"),
    (dict(layers=(LayerSpec(),)), "layers"),
    (dict(layers=(LayerSpec(attention="nope"), LayerSpec())), "layers[0].attention"),
    (dict(layers=(LayerSpec(), LayerSpec(mask_ratio=2.0))), "layers[1].mask_ratio"),
    (dict(tau=1.0), "tau"),
    (dict(input_shape=(2, 16)), "input_shape"),
    (dict(mode_schedule=((0, "SXS"),)), "mode_schedule"),
    (dict(head="sequence"), "head"),
    (dict(reset="sometimes"), "reset"),
    (dict(sps_channels=(8, 16)), "sps_channels"),
    (dict(sps_pool_first="yes"), "sps_pool_first"),
]


@pytest.mark.parametrize("overrides,field_name", BAD_CONFIGS)
def test_invalid_config_names_field(tiny_cfg, overrides, field_name):
    with pytest.raises(ValueError) as err:
        dataclasses.replace(tiny_cfg, **overrides)
    assert field_name in str(err.value)


def test_error_lists_allowed_values(tiny_cfg):
    with pytest.raises(ValueError, match="ssa, sdsa, qk, qk_channel, conv, softmax"):
        dataclasses.replace(tiny_cfg, attention="flash")
    with pytest.raises(ValueError, match=r"allowed n_head for this width: \[1, 2, 3, 5, 6, 10, 15, 30\]"):
        dataclasses.replace(tiny_cfg, n_embd=30, n_head=4)


def test_unknown_preset_lists_known():
    with pytest.raises(ValueError, match="tiny"):
        HSTConfig.from_preset("huge")


def test_config_names_match_registries():
    assert set(ATTENTION_KINDS) == set(ATTENTION.names())
    assert set(POS_ENCODINGS) == set(PE_REGISTRY.names())
    assert set(RESIDUALS) == set(RESIDUAL_REGISTRY.names())
    assert set(TOKENIZERS) == set(TOKENIZER_REGISTRY.names())


@pytest.mark.parametrize("name", list_presets())
def test_json_round_trip_is_exact(name):
    cfg = HSTConfig.from_preset(name)
    last = cfg.n_layer - 1  # an attention layer in every preset (a staged one may start with conv stages)
    cfg = cfg.with_modes(None).with_layer(last, tim=True, mask_ratio=0.25)
    cfg = dataclasses.replace(cfg, mode_schedule=((0, "T" * cfg.n_layer), (2, "S" * cfg.n_layer)))
    text = json.dumps(cfg.to_dict())
    assert HSTConfig.from_dict(json.loads(text)) == cfg
    assert HSTConfig.from_json(cfg.to_json()) == cfg


def test_from_dict_rejects_unknown_field(tiny_cfg):
    with pytest.raises(ValueError, match="unknown config field"):
        HSTConfig.from_dict({**tiny_cfg.to_dict(), "n_layers": 3})


def test_per_layer_none_follows_global(tiny_cfg):
    cfg = tiny_cfg.with_layer(1, attention="sdsa")
    cfg = dataclasses.replace(cfg, attention="qk")
    assert [layer.attention for layer in cfg.resolved_layers()] == ["qk", "sdsa"]


def test_with_modes_sets_halves(tiny_cfg):
    cfg = tiny_cfg.with_modes("ST")
    assert [(layer.attn_mode, layer.mlp_mode) for layer in cfg.resolved_layers()] == [
        ("spiking", "spiking"), ("standard", "standard")]
    hybrid = tiny_cfg.with_modes(attn="TS", mlp="SS")
    assert hybrid.modes == "HS"
    assert hybrid.layer(0).attention_kind == "softmax"
    with pytest.raises(ValueError, match="one per layer"):
        tiny_cfg.with_modes("SST")


def test_with_depth_and_schedule(tiny_cfg):
    deeper = tiny_cfg.with_layer(0, tim=True).with_depth(4)
    assert deeper.n_layer == 4 and deeper.layer(0).tim and not deeper.layer(3).tim
    scheduled = dataclasses.replace(tiny_cfg, mode_schedule=((0, "TT"), (3, "ST")))
    assert [scheduled.modes_at_epoch(e) for e in (0, 2, 3, 9)] == ["TT", "TT", "ST", "ST"]


@pytest.mark.parametrize("name,expected", [("spikformer-dvs-2-256", 2_566_923), ("sdt-dvs-2-256", 2_566_923)])
def test_published_parameter_counts(name, expected):
    model = build_model(HSTConfig.from_preset(name))
    assert sum(p.numel() for p in model.parameters()) == expected
    # the papers report 2.57 M; also within 2 % of that
    assert abs(expected - 2.57e6) / 2.57e6 < 0.02


def test_published_token_counts():
    assert HSTConfig.from_preset("spikformer-dvs-2-256").num_tokens == 64
    assert HSTConfig.from_preset("sdt-dvs-2-256").num_tokens == 256
