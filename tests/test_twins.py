"""One place builds the baselines: standard, int8 and bit-matched twins."""

from __future__ import annotations

import dataclasses

from hstlab import HSTConfig, build_model, example_input
from hstlab.layers.norm import calibrate_batchnorm
from hstlab.twins import standard_twin_config, twins


def test_standard_twin_makes_the_stem_standard_even_when_it_was_pinned():
    cfg = HSTConfig.from_preset("tiny", tokenizer_mode="spiking")
    twin = standard_twin_config(cfg)
    assert (twin.modes, twin.stem_mode, twin.tokenizer_mode) == ("TT", "standard", None)


def test_bit_matched_twin_carries_the_information_of_t_spikes():
    for steps, bits in ((1, 1), (4, 3), (7, 3), (8, 4), (16, 5)):
        cfg = HSTConfig.from_preset("tiny", num_steps=steps)
        matched = {t.name: t for t in twins(cfg)}["bit-matched twin"]
        assert matched.activation_bits == bits
        assert matched.cfg.weight_bits == 8
    quantized = HSTConfig.from_preset("tiny", weight_bits=4)
    assert {t.name: t for t in twins(quantized)}["bit-matched twin"].cfg.weight_bits == 4


def test_twins_are_priced_in_order_of_their_bits():
    cfg = HSTConfig.from_preset("tiny")
    x = example_input(cfg, batch_size=2)
    totals = {}
    for twin in twins(cfg):
        model = build_model(twin.cfg).eval()
        calibrate_batchnorm(model, x)
        totals[twin.name] = twin.energy_report(model, x).total_j
    assert totals["bit-matched twin"] < totals["standard twin, int8"] < totals["standard twin"]


def test_the_card_compares_against_exactly_these_twins():
    from hstlab.train.card import comparison

    cfg = HSTConfig.from_preset("tiny")
    x = example_input(cfg, batch_size=2)
    model = build_model(cfg).eval()
    rows = comparison(cfg, model, x, None)["rows"]
    names = [r["variant"] for r in rows[1:4]]
    assert names == [t.name for t in twins(cfg)]
    matched = rows[3]
    expected = twins(cfg)[2]
    built = build_model(dataclasses.replace(expected.cfg)).eval()
    assert matched["bits"] == "8/2" and matched["preset"] == expected.energy_preset
    assert matched["macs"] == expected.energy_report(built, x).macs
