"""Cheap measurements during training: spike rate of every spiking neuron, energy per sample."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor, nn

_FLOAT32_EXACT = 2**24  # float32 holds every integer up to this exactly


class SpikeRateMeter:
    """Mean firing rate over all ``SpikingNeuron`` outputs (modules with ``is_spiking_neuron``).

    The rate is events per neuron per step: an integer spike S (I-LIF) counts S, a ternary spike
    (a neuron with ``signed_spikes``) counts 1 whatever its sign.

    Forward hooks add ``spikes.sum()`` and ``spikes.numel()`` into running totals (float64; no
    copies, no host sync until :meth:`rate` is read). ``rate()`` is ``None`` when the model has no
    spiking neuron or nothing ran since the last :meth:`reset`.

    Example:
        >>> meter = SpikeRateMeter(nn.Linear(2, 2))
        >>> meter.rate() is None
        True
        >>> meter.close()
    """

    def __init__(self, model: nn.Module) -> None:
        self._handles: list[Any] = []
        self._spikes: Tensor | float = 0.0
        self._count = 0
        for module in model.modules():
            if getattr(module, "is_spiking_neuron", False):
                self._handles.append(module.register_forward_hook(self._hook))

    @property
    def has_neurons(self) -> bool:
        return bool(self._handles)

    def _hook(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(output, Tensor):
            if getattr(module, "signed_spikes", False):  # ternary {-α, 0, α}: an event per non-zero entry
                output = output.detach().ne(0).to(output.dtype)
            # 0/1 spikes: a float32 sum is exact below 2**24 entries and ~6x faster on CPU than
            # one accumulated in float64 (other floats are summed in float64); the total is float64
            exact = not output.is_floating_point() or (output.dtype == torch.float32
                                                        and output.numel() < _FLOAT32_EXACT)
            count = output.detach().sum(dtype=None if exact else torch.float64)
            self._spikes = self._spikes + count.to(torch.float64)
            self._count += output.numel()

    def reset(self) -> None:
        self._spikes, self._count = 0.0, 0

    def totals(self) -> tuple[float, int]:
        return float(self._spikes), self._count

    def rate(self) -> float | None:
        return float(self._spikes) / self._count if self._count else None

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def energy_per_sample(model: nn.Module, x: Tensor, preset: str = "45nm-fp32") -> float | None:
    """Total energy per sample (J) from ``hstlab.energy_report`` on one batch ``x [T, B, ...]``.

    Returns ``None`` (with a warning naming the error) when the energy package is missing or its
    report fails for this model: an optional measurement must not stop training.
    """
    try:
        from hstlab.energy import energy_report
    except ImportError:
        return None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if hasattr(model, "reset_state"):
                model.reset_state()
            report = energy_report(model, x, preset=preset)
        value = float(report.total_j)
    except Exception as exc:  # noqa: BLE001 -- optional measurement; reported as missing
        warnings.warn(f"energy per sample not measured: {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
        return None
    finally:
        model.train(was_training)
    return value if math.isfinite(value) else None
