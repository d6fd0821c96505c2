"""Spiking neurons: multi-step LIF / PLIF / ALIF / integer (I-LIF) / ternary with surrogate gradients, fused over time.

Example:
    >>> import torch
    >>> from hstlab.neurons import LIF, reset_state
    >>> lif = LIF(tau=2.0)
    >>> lif(torch.ones(4, 2, 3)).shape
    torch.Size([4, 2, 3])
    >>> reset_state(lif)
"""

from hstlab.neurons.base import SpikingNeuron, reset_state
from hstlab.neurons.build import NEURONS, build_neuron
from hstlab.neurons.lif import ALIF, LIF, PLIF
from hstlab.neurons.quantized import ILIF, TernaryLIF, expand_spikes, integer_spike
from hstlab.neurons.surrogate import SURROGATES, Surrogate, spike

__all__ = [
    "ALIF",
    "ILIF",
    "LIF",
    "NEURONS",
    "PLIF",
    "SURROGATES",
    "SpikingNeuron",
    "Surrogate",
    "TernaryLIF",
    "build_neuron",
    "expand_spikes",
    "integer_spike",
    "reset_state",
    "spike",
]
