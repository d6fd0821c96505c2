"""TrainConfig validation and the recipe registry."""

from __future__ import annotations

import math

import pytest

from hstlab.train.config import TrainConfig
from hstlab.train.recipes import GENERIC, list_recipes, recipe_for, register_recipe


@pytest.mark.parametrize("field, value", [
    ("epochs", 0), ("epochs", 2.5), ("epochs", True), ("epochs", "5"),
    ("batch_size", 0), ("lr", 0.0), ("lr", -1e-3), ("lr", math.nan), ("lr", math.inf), ("lr", "1e-3"),
    ("augment_shift", -1), ("warmup_frac", 1.0), ("warmup_frac", -0.1), ("weight_decay", -0.01),
    ("weight_decay", math.nan), ("grad_clip", 0.0), ("grad_clip", math.inf), ("time_bins", 0), ("limit", -5),
])
def test_invalid_fields_are_named(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"^{field}="):
        TrainConfig().replace(**{field: value})


def test_unknown_fields_list_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown training field\(s\) \['epoch'\]; allowed: .*'epochs'"):
        TrainConfig.from_dict({"epoch": 3})


def test_json_round_trip() -> None:
    tc = TrainConfig(epochs=3, lr=2e-3, time_bins=64, dataset_options={"neurons": 16}, grad_clip=None)
    assert TrainConfig.from_dict(tc.to_dict()) == tc


def test_every_recipe_is_valid_and_unique() -> None:
    keys = [(r.preset, r.dataset) for r in list_recipes()]
    assert len(keys) == len(set(keys))
    for recipe in list_recipes():
        assert TrainConfig.from_dict(recipe.train.to_dict()) == recipe.train
        assert recipe.notice is None and recipe.result


def test_registering_a_pair_twice_is_refused() -> None:
    with pytest.raises(KeyError, match="registered twice"):
        register_recipe("hst-small", "digits-dvs", GENERIC, "again")


def test_missing_recipe_falls_back_with_a_notice() -> None:
    recipe = recipe_for("tiny", "digits-dvs")
    assert recipe.train == GENERIC
    assert "no recipe for preset 'tiny' on 'digits-dvs'" in recipe.notice
    assert "hst-small on digits-dvs" in recipe.notice


def test_defaults_are_the_defaults_of_an_instance():
    assert TrainConfig.defaults() == TrainConfig().to_dict()
