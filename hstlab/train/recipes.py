"""Training recipes: the settings of the best known run of a preset on a dataset.

``hstlab train --preset P --dataset D`` and :func:`hstlab.train.train_run` start from
``recipe_for(P, D)``; flags and keyword arguments override single fields; the run directory
records the recipe it used (``run.json``). A pair without a recipe trains with the generic
defaults of :class:`~hstlab.train.config.TrainConfig`, and says so.

Example:
    >>> recipe = recipe_for("hst-small", "digits-dvs")
    >>> recipe.train.epochs, recipe.train.lr, recipe.train.augment_shift
    (18, 0.005, 2)
    >>> recipe_for("tiny", "digits-dvs").notice
    "no recipe for preset 'tiny' on 'digits-dvs': generic defaults (epochs=5, lr=0.001, batch_size=32); recipes exist for hst-small on digits-dvs, hst-small on lorenz-spikes, hst-small on text-chars, spikegpt-small on text-chars"
"""

from __future__ import annotations

from dataclasses import dataclass

from hstlab.train.config import TrainConfig


@dataclass(frozen=True)
class Recipe:
    """A training config for one (preset, dataset) pair and what it is known to give."""

    preset: str
    dataset: str
    train: TrainConfig
    result: str  # what the recipe gave, and where that was measured
    notice: str | None = None  # set when this is the generic fallback

    @property
    def key(self) -> str:
        return f"{self.preset} on {self.dataset}"


GENERIC = TrainConfig()
_RECIPES: dict[tuple[str, str], Recipe] = {}


def register_recipe(preset: str, dataset: str, train: TrainConfig, result: str) -> Recipe:
    """Add the recipe of ``preset`` on ``dataset`` (each pair once)."""
    if (preset, dataset) in _RECIPES:
        raise KeyError(f"a recipe for preset {preset!r} on {dataset!r} is registered twice")
    recipe = Recipe(preset, dataset, train, result)
    _RECIPES[(preset, dataset)] = recipe
    return recipe


def list_recipes() -> list[Recipe]:
    """Every registered recipe, in registration order."""
    return list(_RECIPES.values())


def recipe_for(preset: str, dataset: str) -> Recipe:
    """The recipe of ``preset`` on ``dataset``, or the generic defaults with a ``notice``."""
    if (preset, dataset) in _RECIPES:
        return _RECIPES[(preset, dataset)]
    known = ", ".join(r.key for r in _RECIPES.values())
    notice = (f"no recipe for preset {preset!r} on {dataset!r}: generic defaults (epochs={GENERIC.epochs}, "
              f"lr={GENERIC.lr:g}, batch_size={GENERIC.batch_size}); recipes exist for {known}")
    return Recipe(preset, dataset, GENERIC, "generic defaults, not tuned for this pair", notice=notice)


register_recipe(
    "hst-small", "digits-dvs", TrainConfig(epochs=18, lr=5e-3, batch_size=32, augment_shift=2),
    "98.5 % mean test accuracy over seeds 0-2, about 100 s of training on 2 CPU cores (BENCHMARKS.md)",
)
register_recipe(
    "hst-small", "lorenz-spikes",
    TrainConfig(epochs=10, lr=2e-3, batch_size=16, time_bins=100, dataset_options={"neurons": 64, "trials": 300}),
    "next-bin Poisson prediction; the model zoo's hst-small-lorenz-spikes entry records its bits per spike",
)
register_recipe(
    "hst-small", "text-chars", TrainConfig(epochs=4, lr=2e-3, batch_size=32, time_bins=64, limit=3000),
    "character prediction; the model zoo's hst-small-text-chars entry records its accuracy",
)
register_recipe(
    "spikegpt-small", "text-chars", TrainConfig(epochs=4, lr=2e-3, batch_size=32, time_bins=64, limit=3000),
    "SpikeGPT-style character model: 2.33 bits/char, test accuracy 0.582 (mean of seeds 0-2 with a 300 s "
    "budget, 2.4-3.8 of these 4 epochs on 2 loaded cores; benchmarks/bench_text_chars.py)",
)
