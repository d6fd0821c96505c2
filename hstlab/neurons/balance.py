"""Adaptive threshold balancing: per-layer thresholds set from the data's membrane statistics.

Switched on by ``HSTConfig(threshold_balance="hold" | "learn")``: every neuron of the model then
carries a threshold scale ``s_l`` (:meth:`~hstlab.neurons.base.SpikingNeuron.enable_threshold_scale`)
and charges with ``X / s_l``, which for a reset potential of 0 is the same run as the threshold
``θ_l = s_l θ``. Before training, :func:`balance_thresholds` runs a warm-up on a few training
batches and sets, layer by layer in forward order (each layer sees the already balanced layers
before it),

    s_l ← s_l · q_l / θ,     q_l = the (1 - ρ) quantile of the layer's membrane potentials H_l

(``|H_l|`` for ternary neurons, which fire on either side), so that a fraction ``ρ``
(``threshold_balance_rate``) of its neuron-steps would cross the threshold on the warm-up
data. A layer whose quantile is not positive (it never charges) keeps its scale. Afterwards
``"hold"`` keeps the thresholds fixed (a buffer) and ``"learn"`` trains ``s_l`` with the
model (an ``nn.Parameter``, gradient through ``X / s_l`` and the surrogate). The scales are part
of the model's state, so checkpoints restore them. BatchNorm runs on batch statistics during
the warm-up and its running statistics are restored afterwards.

Example:
    >>> from torch import nn
    >>> from hstlab.neurons import LIF
    >>> lif = LIF(tau=2.0); lif.enable_threshold_scale(learn=False)
    >>> x = torch.linspace(0, 8, 101).view(1, 101, 1)  # one step: H = x / 2 in [0, 4]
    >>> balance_thresholds(nn.Sequential(lif), [x], rate=0.25)  # the 75th percentile of H
    {'0': 3.0}
    >>> int(lif(x).sum())  # 25 of 101 values above H = 3 (H > θ fires)
    25
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from hstlab.config import THRESHOLD_BALANCE  # noqa: F401 (the modes, re-exported)

MAX_SAMPLES = 1 << 20  # membrane values per layer kept for the quantile (strided subsample above this)


def check_rate(rate: float, name: str = "threshold_balance_rate") -> float:
    """``rate`` if it is a finite number in (0, 1), else ``ValueError`` naming ``name``."""
    ok = isinstance(rate, (int, float)) and not isinstance(rate, bool) and math.isfinite(rate)
    if not ok or not 0.0 < rate < 1.0:
        raise ValueError(f"{name}={rate!r} must be a finite number in (0, 1) (fraction of neuron-steps "
                         "that cross the threshold on the warm-up data)")
    return float(rate)


def balanced_neurons(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, neuron)`` of every neuron with a threshold scale, in ``named_modules`` (forward) order."""
    return [(name, m) for name, m in model.named_modules()
            if getattr(m, "is_spiking_neuron", False) and isinstance(getattr(m, "threshold_scale", None), Tensor)]


def _membranes(model: nn.Module, neuron: nn.Module, inputs: list[Tensor]) -> Tensor:
    """The membrane potentials H (relative to the reset potential) ``neuron`` records on ``inputs``."""
    values = []
    neuron.record = True
    try:
        for x in inputs:
            if hasattr(model, "reset_state"):
                model.reset_state()
            else:
                from hstlab.neurons.base import reset_state

                reset_state(model)
            model(x)
            if neuron.last_v is not None:
                h = neuron.last_v.flatten() - float(getattr(neuron, "v_reset", 0.0))
                values.append(h.abs() if getattr(neuron, "signed_spikes", False) else h)
    finally:
        neuron.record = False
    if not values:
        return torch.empty(0)
    h = torch.cat(values).float()
    if h.numel() > MAX_SAMPLES:
        h = h[:: math.ceil(h.numel() / MAX_SAMPLES)]
    return h


@torch.no_grad()
def balance_thresholds(model: nn.Module, inputs: Iterable[Tensor], rate: float = 0.1) -> dict[str, float]:
    """Set every balancing neuron's threshold from the membranes on ``inputs``; returns ``{name: θ_l}``.

    ``inputs`` are model inputs (e.g. ``[T, B, ...]`` batches); the model runs in training mode
    (BatchNorm on batch statistics, whose running statistics are restored afterwards) under
    ``no_grad``. Raises ``ValueError`` when the model has no neuron with a threshold scale.
    """
    rate = check_rate(rate)
    neurons = balanced_neurons(model)
    if not neurons:
        raise ValueError("the model has no neuron with a threshold scale: build it with "
                         "threshold_balance='hold' or 'learn' (HSTConfig)")
    batches = list(inputs)
    if not batches:
        raise ValueError("threshold balancing needs at least one warm-up batch")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{k: v.clone() for k, v in m.state_dict().items()} for m in norms]
    was_training = model.training
    model.train()
    out: dict[str, float] = {}
    try:
        for name, neuron in neurons:
            h = _membranes(model, neuron, batches)
            if h.numel() == 0:
                continue
            q = float(torch.quantile(h, 1.0 - rate))
            if q > 0 and math.isfinite(q):
                neuron.threshold_scale.mul_(q / neuron.threshold)
            out[name] = neuron.effective_threshold
    finally:
        for m, state in zip(norms, saved):
            m.load_state_dict(state)
        model.train(was_training)
        if hasattr(model, "reset_state"):
            model.reset_state()
    return out
