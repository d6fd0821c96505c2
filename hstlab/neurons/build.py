"""Build a neuron from the config: ``cfg.neuron`` picks the class from the ``NEURONS`` registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hstlab.config import NEURONS as NEURON_NAMES
from hstlab.neurons.base import SpikingNeuron
from hstlab.neurons.lif import ALIF, LIF, PLIF
from hstlab.neurons.quantized import ILIF, TernaryLIF
from hstlab.registry import Registry

NEURONS: Registry[Callable[[Any, dict[str, Any]], SpikingNeuron]] = Registry("neuron", declared=NEURON_NAMES)


@NEURONS.register("lif")
def _make_lif(cfg: Any, common: dict[str, Any]) -> SpikingNeuron:
    return LIF(**common)


@NEURONS.register("plif")
def _make_plif(cfg: Any, common: dict[str, Any]) -> SpikingNeuron:
    return PLIF(**common)


@NEURONS.register("alif")
def _make_alif(cfg: Any, common: dict[str, Any]) -> SpikingNeuron:
    return ALIF(**common, beta_a=cfg.alif_beta, tau_a=cfg.alif_tau)


@NEURONS.register("ilif")
def _make_ilif(cfg: Any, common: dict[str, Any]) -> SpikingNeuron:
    return ILIF(**common, max_spike=cfg.spike_max)


@NEURONS.register("ternary")
def _make_ternary(cfg: Any, common: dict[str, Any]) -> SpikingNeuron:
    return TernaryLIF(**common, alpha_init=cfg.ternary_alpha, learn_alpha=cfg.ternary_learn_alpha)


def build_neuron(cfg: Any, threshold: float | None = None) -> SpikingNeuron:
    """A neuron from ``cfg.neuron`` ("lif", "plif", "alif", "ilif", "ternary") and the config's neuron fields.

    ``threshold`` overrides ``cfg.threshold`` (e.g. the 0.5 attention neuron).

    Example:
        >>> from hstlab.config import HSTConfig
        >>> build_neuron(HSTConfig(neuron="plif"), threshold=0.5).threshold
        0.5
    """
    if cfg.neuron not in NEURONS:
        raise ValueError(f"neuron={cfg.neuron!r} is not allowed; allowed: {', '.join(NEURONS.names())}")
    common = {
        "tau": cfg.tau,
        "threshold": cfg.threshold if threshold is None else threshold,
        "reset": cfg.reset,
        "surrogate": cfg.surrogate,
        "alpha": cfg.surrogate_alpha,
        "detach_reset": cfg.detach_reset,
        "membrane_bits": None if cfg.membrane_bits >= 32 else cfg.membrane_bits,
        "firing_rule": cfg.firing_rule,
    }
    neuron = NEURONS.get(cfg.neuron)(cfg, common)
    balance = getattr(cfg, "threshold_balance", "off")
    if balance != "off":  # per-layer threshold scale, set by hstlab.neurons.balance before training
        neuron.enable_threshold_scale(learn=balance == "learn")
    return neuron
