"""Spike regularisers added to the training loss, chosen by name from ``REGULARISERS``.

A regulariser hooks every spiking neuron of the model (modules with ``is_spiking_neuron``),
keeps what they emit during a training forward (train mode, gradients on) and returns
``weight · penalty`` once per step; evaluation and calibration forwards are ignored. Layer ``l``
emits ``S_l`` (``n_l`` neuron-steps); its firing rate is events per neuron per step,

    r_l = Σ |S_l| / (a_l n_l)        (a_l = α for ternary spikes, else 1: an integer spike S counts S)

the quantity :class:`hstlab.train.meters.SpikeRateMeter` reports (pooled over layers) and the
live charts show as ``firing_rate``.

- ``"firing_rate"``: ``P = (1/L) Σ_l (r_l - r*)²`` with ``r* = target``; pulls every layer's rate
  to the target (``target=0`` penalises spiking itself). Gradients reach the weights through the
  neurons' surrogate (or straight-through) gradients.
- ``"hoyer"`` (the Hoyer-square measure of DeepHoyer, Yang et al. 2020; on SNN membranes as in
  Datta et al. 2022): on each layer's input current ``X_l`` scaled to the firing
  threshold and clipped, ``z_l = clip(X_l / θ_l, 0, 1)``,
  ``P = (1/L) Σ_l ‖z_l‖₁² / (n_l ‖z_l‖₂²)``: the Hoyer measure ``‖z‖₁²/‖z‖₂²`` (between 1 and
  ``n_l``) divided by ``n_l``, in (0, 1]; small when few neurons carry the drive (sparse activity).

Example:
    >>> from torch import nn
    >>> from hstlab.neurons import LIF
    >>> net = nn.Sequential(nn.Linear(2, 2), LIF(tau=2.0))
    >>> reg = build_regulariser("firing_rate", weight=1.0, target=0.0)
    >>> reg.attach(net)
    >>> _ = net(torch.full((2, 1, 2), 5.0))  # [T, B, C]
    >>> round(float(reg.penalty()), 4) == round(reg.last_rate ** 2, 4)  # one layer: (r - 0)²
    True
    >>> reg.close()
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from hstlab.registry import Registry
from hstlab.train.config import REGULARISER_NAMES  # "none" (the default) has no implementation

REGULARISERS: Registry[type[SpikeRegulariser]] = Registry(
    "regulariser", declared=tuple(n for n in REGULARISER_NAMES if n != "none"))  # "none": no regulariser


def _check_number(name: str, value: Any, low: float, high: float | None = None) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (high is not None and value > high):
        bound = f"in [{low:g}, {high:g}]" if high is not None else f">= {low:g}"
        raise ValueError(f"{name}={value!r} must be a finite number {bound}")
    return float(value)


def spike_events(module: nn.Module, out: Tensor) -> Tensor:
    """``|S|`` in events: ternary spikes divided by their amplitude α, others as they are."""
    if getattr(module, "signed_spikes", False):
        alpha = getattr(module, "alpha_value", None)
        scale = alpha.detach().abs().clamp_min(1e-12) if isinstance(alpha, Tensor) else 1.0
        return out.abs() / scale
    return out.abs() if out.is_floating_point() else out.float()


class SpikeRegulariser:
    """Base: hooks the neurons, collects one item per neuron call, ``penalty()`` turns them into a loss."""

    def __init__(self, weight: float = 0.1, target: float = 0.0) -> None:
        self.weight = _check_number("regulariser_weight", weight, 0.0)
        self.target = _check_number("regulariser_target", target, 0.0)
        self._handles: list[Any] = []
        self._items: list[Tensor] = []
        self.last_rate: float | None = None  # pooled rate of the last penalised forward (events / neuron / step)
        self._spikes: Tensor | float = 0.0
        self._count = 0

    def attach(self, model: nn.Module) -> None:
        """Hook every spiking neuron of ``model`` (hooks of an earlier model are removed)."""
        self.close()
        for module in model.modules():
            if getattr(module, "is_spiking_neuron", False):
                self._handles.append(module.register_forward_hook(self._hook))

    def _active(self, module: nn.Module) -> bool:
        return module.training and torch.is_grad_enabled()

    def _hook(self, module: nn.Module, inputs: tuple, output: Any) -> None:
        if not isinstance(output, Tensor) or not self._active(module):
            return
        events = spike_events(module, output)
        self._spikes = self._spikes + events.detach().sum().double()  # no host sync per call
        self._count += events.numel()
        self._items.append(self.item(module, inputs, events))

    def item(self, module: nn.Module, inputs: tuple, events: Tensor) -> Tensor:
        """What one neuron call contributes (a scalar tensor with gradient)."""
        raise NotImplementedError

    def penalty(self) -> Tensor:
        """``weight · (1/L) Σ_l item_l`` of the forwards since the last call (0 when none ran)."""
        items, self._items = self._items, []
        self.last_rate = float(self._spikes) / self._count if self._count else None
        self._spikes, self._count = 0.0, 0
        if not items:
            return torch.zeros(())
        return self.weight * torch.stack(items).mean()

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._items.clear()


@REGULARISERS.register("firing_rate")
class FiringRateRegulariser(SpikeRegulariser):
    """``(r_l - r*)²`` per layer (see the module docstring).

    Example:
        >>> from hstlab.neurons import LIF
        >>> reg = FiringRateRegulariser(weight=2.0, target=0.25)
        >>> lif = LIF(tau=2.0); reg.attach(lif)
        >>> _ = lif(torch.tensor([[3.0, 0.0]]))  # one step: spikes (1, 0), r = 0.5
        >>> float(reg.penalty())  # 2 * (0.5 - 0.25)²
        0.125
    """

    def item(self, module: nn.Module, inputs: tuple, events: Tensor) -> Tensor:
        return (events.mean() - self.target) ** 2


@REGULARISERS.register("hoyer")
class HoyerRegulariser(SpikeRegulariser):
    """``‖z‖₁² / (n ‖z‖₂²)`` of ``z = clip(X / θ, 0, 1)`` per layer (see the module docstring).

    Example:
        >>> from hstlab.neurons import LIF
        >>> reg = HoyerRegulariser(weight=1.0)
        >>> lif = LIF(tau=2.0, threshold=2.0); reg.attach(lif)
        >>> _ = lif(torch.tensor([[1.0, 0.0, 0.0, 4.0]]))  # z = (0.5, 0, 0, 1)
        >>> round(float(reg.penalty()), 4)  # 1.5² / (4 · 1.25)
        0.45
    """

    def item(self, module: nn.Module, inputs: tuple, events: Tensor) -> Tensor:
        x = inputs[0] if inputs and isinstance(inputs[0], Tensor) else events
        theta = float(getattr(module, "threshold", 1.0)) or 1.0
        scale = getattr(module, "threshold_scale", None)  # threshold balancing divides the input by it
        if isinstance(scale, Tensor):
            x = x / scale
        z = (x / theta).clamp(0.0, 1.0)
        l1, l2 = z.sum(), z.pow(2).sum()
        if float(l2.detach()) == 0.0:
            return l1 * 0.0  # no drive at all: nothing to sparsify (keeps the graph, no NaN)
        return l1.pow(2) / (z.numel() * l2)


def build_regulariser(name: str | SpikeRegulariser | None = None, **options: Any) -> SpikeRegulariser | None:
    """A regulariser by name (``options``: ``weight``, ``target``), None for ``None``/``"none"``, or pass one through.

    Example:
        >>> build_regulariser("none") is None, type(build_regulariser("hoyer", weight=0.01)).__name__
        (True, 'HoyerRegulariser')
    """
    if name is None or isinstance(name, SpikeRegulariser):
        return name
    if name == "none":
        return None
    if name not in REGULARISERS:
        raise ValueError(f"regulariser={name!r} is not allowed; allowed: {', '.join(REGULARISER_NAMES)}")
    return REGULARISERS.get(name)(**options)
