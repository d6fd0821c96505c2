"""Hostile and careless input (issue #21): every bad config, override or forward input raises
``ValueError`` naming the field (or the input), and resource bombs are refused in under a second."""

from __future__ import annotations

import dataclasses
import json
import math
import time
import typing

import numpy as np
import pytest
import torch

from hstlab import HSTConfig, LayerSpec, build_model, example_input, list_presets
from hstlab.config import ATTENTION_KINDS, FLOAT_RANGES, divisors
from hstlab.model import HSTNet
from hstlab.sizing import DEFAULT_MAX_PARAMS, check_size, estimate_size

NAN, INF = float("nan"), float("inf")


def tiny(**overrides):
    return HSTConfig.from_preset("tiny", **overrides)


def from_tiny_dict(**changes):
    return HSTConfig.from_dict({**HSTConfig.from_preset("tiny").to_dict(), **changes})


def staged(index: int, **changes):
    """qkformer-dvs with stage ``index`` changed (through with_stages, as a user would)."""
    stages = [dict(s.__dict__) for s in HSTConfig.from_preset("qkformer-dvs").stages]
    stages[index].update(changes)
    return HSTConfig.from_preset("qkformer-dvs").with_stages(stages)


# (label, call, words the message must contain)
CONFIG_CASES = [
    # 2. booleans are real bools, everywhere
    ("causal='no'", lambda: tiny(causal="no"), ["causal"]),
    ("tim='false'", lambda: tiny(tim="false"), ["tim"]),
    ("detach_reset=1", lambda: tiny(detach_reset=1), ["detach_reset"]),
    ("mask_in_eval='yes'", lambda: tiny(mask_in_eval="yes"), ["mask_in_eval"]),
    ("sps_pools strings", lambda: tiny(sps_pools=["no", "no", "no", "no"]), ["sps_pools[0]"]),
    ("sps_pools ints", lambda: tiny(sps_pools=(0, 1, 1, 0)), ["sps_pools[0]"]),
    ("LayerSpec tim='no'", lambda: tiny(layers=(LayerSpec(tim="no"), LayerSpec())), ["layers[0].tim"]),
    ("from_dict tim string", lambda: from_tiny_dict(tim="false"), ["tim"]),
    ("from_dict layer tim string", lambda: from_tiny_dict(layers=[{"tim": "no"}, {}]), ["layers[0].tim"]),
    ("--set tim quoted", lambda: HSTConfig.parse_overrides(['tim="false"']), ["tim"]),
    ("--set causal=no", lambda: HSTConfig.parse_field("causal", "no"), ["causal"]),
    ("--set sps_pools strings", lambda: HSTConfig.parse_field("sps_pools", '["no","no","no","no"]'),
     ["sps_pools[0]"]),
    # 6. floats finite and in range
    ("cpg_threshold=nan", lambda: tiny(cpg_threshold=NAN), ["cpg_threshold"]),
    ("cpg_threshold=2", lambda: tiny(cpg_threshold=2.0), ["cpg_threshold"]),
    ("attn_scale=inf", lambda: tiny(attn_scale=INF), ["attn_scale"]),
    ("tau=nan", lambda: tiny(tau=NAN), ["tau"]),
    ("threshold=-inf", lambda: tiny(threshold=-INF), ["threshold"]),
    ("tim_alpha=nan", lambda: tiny(tim_alpha=NAN), ["tim_alpha"]),
    ("alif_beta=-1", lambda: tiny(alif_beta=-1.0), ["alif_beta"]),
    ("mlp_ratio=10**400", lambda: tiny(mlp_ratio=10**400), ["mlp_ratio"]),
    ("layer mask_ratio=nan", lambda: tiny().with_layer(0, mask_ratio=NAN), ["layers[0].mask_ratio"]),
    ("--set attn_scale=nan", lambda: HSTConfig.parse_field("attn_scale", "NaN"), ["attn_scale"]),
    # 7. types
    ("mlp_ratio='4'", lambda: tiny(mlp_ratio="4"), ["mlp_ratio"]),
    ("mlp_ratio=True", lambda: tiny(mlp_ratio=True), ["mlp_ratio"]),
    ("cpg_neurons='32'", lambda: tiny(cpg_neurons="32"), ["cpg_neurons"]),
    ("cpg_neurons=4.0", lambda: tiny(cpg_neurons=4.0), ["cpg_neurons"]),
    ("n_embd=32.0", lambda: tiny(n_embd=32.0), ["n_embd"]),
    ("attention=None", lambda: tiny(attention=None), ["attention"]),
    ("name=3", lambda: tiny(name=3), ["name"]),
    ("input_shape=None", lambda: tiny(input_shape=None), ["input_shape"]),
    ("input_shape strings", lambda: tiny(input_shape=("2", "16", "16")), ["input_shape[0]"]),
    ("sps_channels floats", lambda: tiny(sps_channels=(8.0, 16, 32)), ["sps_channels[0]"]),
    ("LayerSpec unknown key", lambda: from_tiny_dict(layers=[{"foo": 1}, {}]), ["layers[0]", "foo"]),
    ("LayerSpec.from_dict unknown key", lambda: LayerSpec.from_dict({"tim": True, "foo": 1}), ["foo"]),
    ("with_layer unknown key", lambda: tiny().with_layer(0, foo=1), ["foo"]),
    ("from_preset unknown key", lambda: HSTConfig.from_preset("tiny", foo=1), ["foo"]),
    ("from_dict unknown key", lambda: from_tiny_dict(foo=1), ["foo"]),
    ("layers as strings", lambda: from_tiny_dict(layers=["SS", "TT"]), ["layers[0]"]),
    ("layers not a list", lambda: from_tiny_dict(layers="SS"), ["layers"]),
    ("mode_schedule flat", lambda: tiny(mode_schedule=(0, "SS")), ["mode_schedule[0]"]),
    ("mode_schedule extra items", lambda: tiny(mode_schedule=[[0, "SS", 1]]), ["mode_schedule[0]"]),
    ("mode_schedule epoch string", lambda: tiny(mode_schedule=[["0", "SS"]]), ["mode_schedule[0][0]"]),
    ("mode_schedule bad letters", lambda: tiny(mode_schedule=[[0, "SX"]]), ["mode_schedule[0][1]"]),
    ("garbage JSON", lambda: HSTConfig.from_json("{not json"), ["config JSON"]),
    ("JSON list", lambda: HSTConfig.from_json("[1, 2]"), ["config"]),
    ("JSON null", lambda: HSTConfig.from_json("null"), ["config"]),
    ("JSON wrong field type", lambda: HSTConfig.from_json('{"n_layer": "2"}'), ["n_layer"]),
    ("mlp_ratio=1e-9", lambda: tiny(mlp_ratio=1e-9), ["mlp_ratio"]),
    ("--set unknown field", lambda: HSTConfig.parse_overrides(["n_layers=3"]), ["n_layers"]),
    ("--set without =", lambda: HSTConfig.parse_overrides(["tim"]), ["--set", "tim"]),
    ("--set int as text", lambda: HSTConfig.parse_field("n_layer", "two"), ["n_layer"]),
    ("--set int as float", lambda: HSTConfig.parse_field("n_layer", "2.5"), ["n_layer"]),
    ("--set bad JSON tuple", lambda: HSTConfig.parse_field("input_shape", "(2, 3)"), ["input_shape"]),
    # issue 16: attention and MLP kinds whose fields do not fit the config
    ("statten attn_block=3, T=4", lambda: tiny(attention="statten", num_steps=4, attn_block=3),
     ["attn_block=3", "num_steps=4", "allowed: 1, 2, 4"]),
    ("layer statten attn_block=3", lambda: tiny(num_steps=4).with_layer(1, attention="statten", attn_block=3),
     ["layers[1].attn_block=3", "num_steps=4", "allowed: 1, 2, 4"]),
    ("attn_block=0", lambda: tiny(attn_block=0), ["attn_block=0", ">= 1"]),
    ("layer attn_block=-2", lambda: tiny().with_layer(0, attn_block=-2), ["layers[0].attn_block=-2", ">= 1"]),
    ("experts=0", lambda: tiny(attention="emsa", experts=0), ["experts=0", ">= 1"]),
    ("layer experts=0", lambda: tiny().with_layer(0, mlp_kind="emsp", experts=0), ["layers[0].experts=0", ">= 1"]),
    ("experts=5 for emsa", lambda: tiny(attention="emsa", experts=5),
     ["experts=5", "n_embd=32", "allowed: 1, 2, 4, 8, 16, 32"]),
    ("experts=3 for emsp", lambda: tiny(mlp_kind="emsp", experts=3), ["experts=3", "hidden width", "allowed"]),
    ("mlp_kind='moe'", lambda: tiny(mlp_kind="moe"), ["mlp_kind='moe'", "mlp, emsp"]),
    ("layer mlp_kind=1", lambda: tiny().with_layer(0, mlp_kind=1), ["layers[0].mlp_kind"]),
    ("attention='stattn'", lambda: tiny(attention="stattn"), ["attention='stattn'", "statten", "lateral"]),
    ("statten causal", lambda: tiny(attention="statten", causal=True),
     ["attention='statten'", "causal=True", "allowed with causal=True", "ssa"]),
    ("layer statten causal", lambda: tiny(causal=True).with_layer(0, attention="statten"),
     ["layers[0].attention='statten'", "causal=True"]),
    ("bipolar with tim", lambda: tiny(attention="bipolar", tim=True), ["tim=True", "bipolar", "allowed: tim=False"]),
    ("schedule turns bipolar+tim on", lambda: tiny(attention="bipolar", tim=True, mode_schedule=[[2, "SS"]],
                                                       layers=(LayerSpec(attn_mode="standard", mlp_mode="standard"),) * 2),
     ["mode_schedule[0][1]='SS' at epoch 2", "tim=True", "bipolar"]),
    ("--set experts=0 builds", lambda: tiny(**HSTConfig.parse_overrides(["experts=0"])), ["experts=0"]),
    ("spikegpt with emsp", lambda: tiny(attention="spikegpt", causal=True, mlp_kind="emsp"),
     ["mlp_kind='emsp'", "spikegpt", "allowed: mlp_kind='mlp'"]),
    # training methods: integer / ternary spikes, threshold balancing
    ("spike_max=0", lambda: tiny(neuron="ilif", spike_max=0), ["spike_max=0", ">= 1"]),
    ("spike_max=-3", lambda: tiny(spike_max=-3), ["spike_max"]),
    ("spike_max=2.0", lambda: tiny(spike_max=2.0), ["spike_max"]),
    ("ternary_alpha=0", lambda: tiny(neuron="ternary", ternary_alpha=0.0, ternary_learn_alpha=False),
     ["ternary_alpha=0.0"]),
    ("ternary_alpha=-1", lambda: tiny(ternary_alpha=-1.0), ["ternary_alpha"]),
    ("ternary_alpha=nan", lambda: tiny(ternary_alpha=NAN), ["ternary_alpha"]),
    ("threshold_balance='auto'", lambda: tiny(threshold_balance="auto"), ["threshold_balance", "hold", "learn"]),
    ("threshold_balance_rate=1", lambda: tiny(threshold_balance_rate=1.0), ["threshold_balance_rate"]),
    ("--set spike_max=0", lambda: tiny(**HSTConfig.parse_overrides(["spike_max=0"])), ["spike_max"]),
    # 10. divisors
    ("n_head=10**9", lambda: tiny(n_head=10**9), ["n_head"]),
    ("odd width 10**8+1", lambda: tiny(n_embd=10**8 + 1, n_head=2), ["n_head", "n_embd"]),
    ("n_layer=10**9", lambda: tiny(n_layer=10**9, layers=()), ["n_layer"]),
    # 12. staged models (issue 16): stages that do not fit, empty stages, kinds where they do not apply
    ("stage depth=0", lambda: staged(0, depth=0), ["stages[0].depth=0", ">= 1"]),
    ("stage depth=10**9", lambda: staged(1, depth=10**9), ["stages[1].depth", "1024"]),
    ("stage depth string", lambda: staged(0, depth="1"), ["stages[0].depth", "integer"]),
    ("stage n_embd=0", lambda: staged(1, n_embd=0), ["stages[1].n_embd=0"]),
    ("stage n_head not dividing", lambda: staged(1, n_head=7), ["stages[1].n_head=7", "allowed n_head", "16"]),
    ("stage kind", lambda: staged(0, kind="mlp"), ["stages[0].kind='mlp'", "conv, transformer"]),
    ("stage embed", lambda: staged(0, embed="patch"), ["stages[0].embed='patch'", "conv, speds"]),
    ("stage attention", lambda: staged(0, attention="flash"), ["stages[0].attention='flash'", "ssa"]),
    ("stage projection", lambda: staged(0, projection="conv"), ["stages[0].projection", "linear, repconv"]),
    ("repconv with conv attention", lambda: staged(1, projection="repconv", attention="conv"),
     ["stages[1].projection='repconv'", "ssa, sdsa, qk, qk_channel"]),
    ("conv stage with attention", lambda: staged(1, kind="conv"), ["stages[1].kind='conv'", "attention must be None"]),
    ("speds first stride 3", lambda: staged(0, stride=3), ["stages[0].stride=3", "1, 2, 4, 8"]),
    ("speds later stride 4", lambda: staged(1, stride=4), ["stages[1].stride=4", "1, 2"]),
    ("even embed kernel", lambda: staged(0, embed="conv", embed_kernel=4), ["stages[0].embed_kernel=4", "odd"]),
    ("stage mlp_ratio nan", lambda: staged(0, mlp_ratio=NAN), ["stages[0].mlp_ratio"]),
    ("stage unknown key", lambda: staged(0, foo=1), ["stages[0]", "foo", "allowed"]),
    ("stage not a dict", lambda: HSTConfig.from_preset("qkformer-dvs").with_stages([1, 2]), ["stages[0]", "StageSpec"]),
    ("grid not divisible at stage 0", lambda: HSTConfig.from_preset("qkformer-dvs", input_shape=(2, 36, 36)),
     ["stages[0].stride=8", "36x36", "not divisible", "allowed strides here: [1, 2, 4]"]),
    ("grid not divisible at stage 1", lambda: HSTConfig.from_preset("qkformer-dvs", input_shape=(2, 40, 40)),
     ["stages[1].stride=2", "5x5", "allowed strides here: [1]"]),
    ("n_layer not the stages' depth", lambda: HSTConfig.from_preset("qkformer-dvs", n_layer=3, layers=()),
     ["n_layer=3", "sum to 2", "with_stages"]),
    ("n_embd not the last stage's", lambda: HSTConfig.from_preset("qkformer-dvs", n_embd=128, n_head=16),
     ["n_embd=128", "256"]),
    ("staged with cpg", lambda: HSTConfig.from_preset("qkformer-dvs", pos_encoding="cpg"), ["pos_encoding='cpg'", "none"]),
    ("staged with events", lambda: HSTConfig.from_preset("qkformer-dvs", tokenizer="events"), ["tokenizer", "sps"]),
    ("tim on a conv-stage layer", lambda: HSTConfig.from_preset("sdt2-15m").with_layer(0, tim=True),
     ["layers[0]", "conv stage 0", "tim"]),
    ("with_depth on a staged config", lambda: HSTConfig.from_preset("qkformer-dvs").with_depth(4),
     ["n_layer=4", "with_stages"]),
    ("stage JSON wrong type", lambda: HSTConfig.from_json(
        HSTConfig.from_preset("qkformer-dvs").to_json().replace('"depth": 1', '"depth": "1"', 1)), ["stages[0].depth"]),
]


@pytest.mark.parametrize("label,call,words", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_raises_value_error_naming_field(label, call, words):
    start = time.perf_counter()
    with pytest.raises(ValueError) as err:
        call()
    assert type(err.value) is ValueError
    for word in words:
        assert word in str(err.value), f"{label}: {word!r} not in {err.value}"
    assert time.perf_counter() - start < 1.0, f"{label} took {time.perf_counter() - start:.2f} s"
    assert len(str(err.value)) < 2000  # hostile values are shown cut short


# 11. resource bombs: refused from the config estimate before anything is allocated
BOMBS = [
    (dict(n_embd=20000), "n_embd"),
    (dict(num_steps=10**5), "num_steps"),
    (dict(num_classes=10**9), "num_classes"),
    (dict(cpg_neurons=10**8), "cpg_neurons"),
    (dict(mlp_ratio=1e6), "mlp_ratio"),
    (dict(input_shape=(2, 10**6, 10**6)), "input_shape"),
    (dict(tokenizer="linear", input_shape=(3,), seq_len=10**9), "seq_len"),
]


@pytest.mark.parametrize("overrides,field_name", BOMBS, ids=[b[1] for b in BOMBS])
def test_resource_bomb_refused_fast(overrides, field_name):
    start = time.perf_counter()
    cfg = tiny(**overrides)  # a valid config: only building it is refused
    with pytest.raises(ValueError) as err:
        build_model(cfg)
    elapsed = time.perf_counter() - start
    message = str(err.value)
    assert elapsed < 1.0, f"took {elapsed:.2f} s"
    assert field_name in message and "too large" in message
    assert "HSTLAB_MAX_" in message  # says how to override
    with pytest.raises(ValueError):
        HSTNet(cfg)  # the class itself checks too


def test_divisor_list_is_capped_and_fast():
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"\.\.\. \(\d+ more\)") as err:
        tiny(n_embd=720720, n_head=7 * 11 * 13 * 17)  # 240 divisors
    assert time.perf_counter() - start < 1.0
    assert "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, ..." in str(err.value)
    assert divisors(10**8 + 1) == [1, 17, 5882353, 100000001]
    assert divisors(36) == [1, 2, 3, 4, 6, 9, 12, 18, 36]


def test_size_limit_overrides(monkeypatch):
    cfg = tiny(num_classes=10**6)  # 3.3e7 parameters
    assert check_size(cfg).params == estimate_size(cfg).params
    with pytest.raises(ValueError, match="max_params"):
        check_size(cfg, max_params=10**6)
    monkeypatch.setenv("HSTLAB_MAX_PARAMS", "1e6")
    with pytest.raises(ValueError, match="HSTLAB_MAX_PARAMS"):
        check_size(cfg)
    assert check_size(cfg, max_params=0).params > 10**6  # an argument beats the environment; 0: no limit
    monkeypatch.setenv("HSTLAB_MAX_PARAMS", "lots")
    with pytest.raises(ValueError, match="HSTLAB_MAX_PARAMS"):
        check_size(cfg)
    monkeypatch.delenv("HSTLAB_MAX_PARAMS")
    monkeypatch.setenv("HSTLAB_MAX_ACTIVATION_BYTES", "1000")
    with pytest.raises(ValueError, match="activations per training sample"):
        build_model(tiny())
    assert DEFAULT_MAX_PARAMS > estimate_size(HSTConfig.from_preset("hst-100m")).params


def _real_params(cfg: HSTConfig) -> int:
    return sum(p.numel() for p in HSTNet(cfg).parameters())


VARIANTS = [dict(attention=k) for k in ATTENTION_KINDS] + [
    dict(attention="emsa", experts=8, neuron="plif"), dict(attention="bipolar", neuron="plif"),
    dict(attention="lateral", neuron="plif"), dict(mlp_kind="emsp", neuron="plif"), dict(mlp_kind="emsp", experts=2),
    dict(neuron="plif", tim=True), dict(neuron="alif"), dict(tokenizer="events", neuron="plif"),
    dict(tokenizer="linear", input_shape=(5,), seq_len=6), dict(pos_encoding="learned"),
    dict(pos_encoding="sincos"), dict(pos_encoding="none"), dict(residual="membrane"),
    dict(residual="add", neuron="plif"), dict(mlp_ratio=1.5), dict(tokenizer_mode="standard", neuron="plif"),
    dict(attention="conv", neuron="plif", conv_kernel=5), dict(sps_channels=(3, 5, 7)),
    dict(neuron="ilif"), dict(neuron="ternary"), dict(neuron="ternary", ternary_learn_alpha=False),
    dict(threshold_balance="learn", neuron="plif"), dict(threshold_balance="hold"),
]


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "hst-100m" else n
                                  for n in list_presets()])  # hst-100m: 2 s to build; the variants cover its code
def test_parameter_estimate_exact_for_presets(name):
    cfg = HSTConfig.from_preset(name)
    assert estimate_size(cfg).params == _real_params(cfg)


@pytest.mark.parametrize("overrides", VARIANTS, ids=[",".join(f"{k}={v}" for k, v in v.items()) for v in VARIANTS])
def test_parameter_estimate_exact_for_variants(overrides):
    for modes in ("SS", "ST", "TT"):
        cfg = tiny(**overrides).with_modes(modes)
        assert estimate_size(cfg).params == _real_params(cfg), modes


@pytest.mark.parametrize("overrides", [dict(), dict(tokenizer="events"), dict(tim=True)])
def test_activation_estimate_near_saved_tensors(overrides):
    ratio = activation_estimate_ratio(tiny(**overrides))
    assert 0.5 < ratio < 1.5, ratio


def activation_estimate_ratio(cfg: HSTConfig) -> float:
    """The size check's activation estimate over the bytes autograd really keeps (batch 2, training)."""
    model = build_model(cfg).train()
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(example_input(cfg, batch_size=2, rate=0.3))
    return estimate_size(cfg, batch_size=2).activation_bytes / sum(storages.values())


def test_every_float_field_has_a_range():
    for cls in (HSTConfig, LayerSpec):
        hints = typing.get_type_hints(cls)
        floats = {f.name for f in dataclasses.fields(cls)
                  if hints[f.name] is float or hints[f.name] == (float | None)}
        assert floats <= set(FLOAT_RANGES), floats - set(FLOAT_RANGES)


def test_type_table_handles_new_kinds_of_field():
    from hstlab.config import _coerce

    assert _coerce("firing_rule", "b", typing.Literal["a", "b"]) == "b"
    with pytest.raises(ValueError, match="firing_rule='c' is not allowed; allowed: a, b"):
        _coerce("firing_rule", "c", typing.Literal["a", "b"])
    assert _coerce("pairs", [[1, "x"]], tuple[tuple[int, str], ...]) == ((1, "x"),)
    with pytest.raises(ValueError, match=r"pairs\[0\]\[0\]"):
        _coerce("pairs", [[True, "x"]], tuple[tuple[int, str], ...])
    with pytest.raises(ValueError, match="tim"):
        LayerSpec(tim="no").validate()


def test_normalization_keeps_good_input():
    cfg = HSTConfig.from_dict({"n_layer": 1, "input_shape": [2, 16, 16], "sps_pools": [False, True, True, True],
                               "mlp_ratio": 2, "layers": [{"tim": True}], "mode_schedule": [[0, "S"]]})
    assert cfg.input_shape == (2, 16, 16) and cfg.mlp_ratio == 2.0 and isinstance(cfg.mlp_ratio, float)
    assert cfg.layers == (LayerSpec(tim=True),) and cfg.mode_schedule == ((0, "S"),)
    assert HSTConfig.from_json(cfg.to_json()) == cfg
    assert hash(cfg) == hash(HSTConfig.from_json(cfg.to_json()))
    assert tiny(n_embd=np.int64(32)).n_embd == 32  # numpy integers are integers, numpy bools bools
    assert tiny(tim=np.bool_(True)).tim is True
    with pytest.raises(ValueError, match="tim"):
        tiny(tim=np.int64(1))


def test_parse_overrides_typed():
    base = HSTConfig.from_preset("hst-small")
    overrides = HSTConfig.parse_overrides([
        "tim=false", "causal=True", "mlp_ratio=3", "weight_bits=8", "attention=sdsa", "tokenizer_mode=none",
        "sps_pools=[true, true, false, false]", 'layers=[{"tim": true}, {"attn_mode": "standard"}]',
        "name=my model"])
    cfg = HSTConfig.from_dict({**base.to_dict(), **overrides})
    assert (cfg.tim, cfg.causal, cfg.mlp_ratio, cfg.weight_bits, cfg.attention) == (False, True, 3.0, 8, "sdsa")
    assert cfg.tokenizer_mode is None and cfg.sps_pools == (True, True, False, False) and cfg.name == "my model"
    assert cfg.layer(0).tim and cfg.layer(1).attn_mode == "standard"


# 3 and 8. forward inputs
def _bad_inputs(cfg: HSTConfig):
    x = example_input(cfg)
    nan, inf = x.clone(), x.clone()
    nan[0, 0, 0, 0, 0], inf[1, 1, 1, 1, 1] = NAN, INF
    return [
        ("NaN", nan, ["non-finite", "(2, 2, 2, 16, 16)"]),
        ("inf", inf, ["non-finite"]),
        ("float64 overflowing float32", x.double() * 1e300, ["non-finite"]),
        ("int64 beyond 2**24", x.long() * 2**40, ["int64", "16777216"]),
        ("complex", x.to(torch.complex64), ["complex64", "[T, B, 2, 16, 16]"]),
        ("numpy", x.numpy(), ["torch.Tensor", "numpy", "[T, B, 2, 16, 16]"]),
        ("list", x.tolist(), ["torch.Tensor", "list"]),
        ("rank 4", x[0], ["rank 4", "[T, B, C, H, W]"]),
        ("wrong channels", torch.zeros(2, 2, 3, 16, 16), ["[T, B, 2, 16, 16]"]),
        ("meta device", torch.empty(x.shape, device="meta"), ["meta", "cpu"]),
    ]


@pytest.mark.parametrize("index", range(10))
def test_bad_forward_input_raises_value_error(index):
    cfg = tiny()
    label, x, words = _bad_inputs(cfg)[index]
    with pytest.raises(ValueError) as err:
        build_model(cfg).eval()(x)
    assert "input" in str(err.value), label
    for word in words:
        assert word in str(err.value), f"{label}: {word!r} not in {err.value}"


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int64, torch.float16, torch.bfloat16, torch.float64])
def test_exact_inputs_are_converted(dtype):
    cfg = tiny()
    model = build_model(cfg).eval()
    x = example_input(cfg, rate=0.3)  # binary spikes: exact in every dtype
    expected = model(x)
    model.reset_state()
    torch.testing.assert_close(model(x.to(dtype)), expected, rtol=0, atol=0)


def test_finite_check_opt_out():
    cfg = tiny()
    model = build_model(cfg).eval()
    x = example_input(cfg)
    x[0, 0, 0, 0, 0] = NAN
    model.check_finite_input = False
    assert model(x).shape == (2, 10)  # documented opt-out: the caller takes responsibility
    huge = example_input(cfg) * 3e38  # finite values whose sum overflows: not rejected
    model.check_finite_input = True
    model.reset_state()
    assert torch.isfinite(huge).all() and math.isinf(float(huge.sum()))
    model(huge)


def test_all_presets_still_validate_and_round_trip():
    for name in list_presets():
        cfg = HSTConfig.from_preset(name)
        assert HSTConfig.from_dict(json.loads(cfg.to_json())) == cfg
        check_size(cfg)
