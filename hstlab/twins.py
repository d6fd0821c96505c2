"""The baselines a spiking model is compared with, built in one place.

A *twin* is the same network with every spiking part made standard. The energy comparison in
model cards, the explorer's Energy tab, notebooks and benchmarks all take their twins from
:func:`twins`, so they price the same models:

- ``standard twin``: every layer standard and the stem standard too (``tokenizer_mode=None``
  follows layer 0), fp32 weights and activations, the same T;
- ``standard twin, int8``: the same with 8-bit weights, priced with the int8 preset;
- ``bit-matched twin``: 8-bit weights (the spiking model's width when it is quantized) and
  activations of ``ceil(log2(T + 1))`` bits, the information a spiking neuron's T binary outputs
  carry (Yan et al. 2024). This is the fairest ANN baseline: a spiking model wins against it only
  where its firing is sparse enough.

Example:
    >>> from hstlab import HSTConfig
    >>> [(t.name, t.cfg.modes, t.activation_bits) for t in twins(HSTConfig.from_preset("tiny"))]
    [('standard twin', 'TT', None), ('standard twin, int8', 'TT', None), ('bit-matched twin', 'TT', 2)]
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hstlab.config import HSTConfig

if TYPE_CHECKING:
    from torch import Tensor, nn

FP32_PRESET = "45nm-fp32"
INT8_PRESET = "45nm-int8"


@dataclass(frozen=True)
class Twin:
    """A baseline config and how its energy is priced."""

    name: str
    cfg: HSTConfig
    energy_preset: str
    activation_bits: int | None  # None: the preset's width
    description: str

    def energy_report(self, model: nn.Module, x: Tensor, **kwargs: Any) -> Any:
        """``energy_report`` of ``model`` (built from :attr:`cfg`) priced as this twin."""
        from hstlab.energy import energy_report

        return energy_report(model, x, preset=self.energy_preset, activation_bits=self.activation_bits, **kwargs)


def standard_twin_config(cfg: HSTConfig) -> HSTConfig:
    """``cfg`` with every layer standard and the stem following them (``tokenizer_mode=None``).

    Example:
        >>> from hstlab import HSTConfig
        >>> cfg = HSTConfig.from_preset("tiny", tokenizer_mode="spiking")
        >>> twin = standard_twin_config(cfg)
        >>> twin.modes, twin.stem_mode
        ('TT', 'standard')
    """
    return dataclasses.replace(cfg.with_modes("T" * cfg.n_layer), tokenizer_mode=None)


def twins(cfg: HSTConfig) -> list[Twin]:
    """The standard, int8 and bit-matched twins of ``cfg`` (see the module docstring)."""
    from hstlab.energy.constants import twin_activation_bits

    standard = standard_twin_config(cfg)
    weight_bits = cfg.weight_bits if cfg.weight_bits < 32 else 8
    act_bits = twin_activation_bits(cfg.num_steps)
    return [
        Twin("standard twin", standard, FP32_PRESET, None,
             "every layer and the stem standard, fp32, same T"),
        Twin("standard twin, int8", dataclasses.replace(standard, weight_bits=8), INT8_PRESET, None,
             "the standard twin with 8-bit weights (and 8-bit activations in the int8 preset)"),
        Twin("bit-matched twin", dataclasses.replace(standard, weight_bits=weight_bits), INT8_PRESET, act_bits,
             f"{weight_bits}-bit weights and {act_bits}-bit activations: the information of "
             f"{cfg.num_steps} binary spikes per neuron"),
    ]
