"""Spiking neurons of hstlab and of other libraries, priced through one adapter registry.

An adapter recognizes a neuron module, says how many time steps one call runs, how many state
variables each neuron updates (a membrane, a synaptic current, ...) and how to reset it between
measurements. Foreign libraries are recognized by the names of the classes in the module's MRO
(``snntorch.SpikingNeuron``, SpikingJelly's ``BaseNode``, Norse's ``SNNCell``/``SNN`` and their
recurrent variants), so none of them is imported, and none is needed, to price hstlab models:
a module of a library can only exist once that library has been imported by its user.

Example:
    >>> from torch import nn
    >>> class Fire(nn.Module):
    ...     is_spiking_neuron = True
    ...     def forward(self, x): return (x > 1).float()
    >>> adapter_for(Fire()).__name__, adapter_for(nn.ReLU())
    ('HstlabNeuron', None)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from hstlab.registry import Registry


def _in_mro(module: nn.Module, library: str, class_names: Iterable[str]) -> bool:
    """True when a class called one of ``class_names`` from package ``library`` is in the MRO."""
    names = set(class_names)
    return any(cls.__name__ in names and cls.__module__.split(".")[0] == library for cls in type(module).__mro__)


def _state_tensors(state: Any) -> int:
    """Number of tensors in a (named) tuple of neuron state, e.g. Norse's ``LIFFeedForwardState(v, i)``."""
    if isinstance(state, torch.Tensor):
        return 1
    if isinstance(state, (tuple, list)):
        return sum(_state_tensors(s) for s in state)
    return 0


class NeuronAdapter:
    """How the energy engine reads one kind of spiking neuron (class methods only)."""

    library = "hstlab"

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        raise NotImplementedError

    @classmethod
    def steps(cls, module: nn.Module, x: torch.Tensor, batch_size: int) -> float:
        """Time steps per sample one call with input current ``x`` runs (default: one, single-step
        neurons called once per step on ``[B, ...]``; time folded into the batch counts too)."""
        return x.shape[0] / batch_size if x.dim() >= 1 else 1.0 / batch_size

    @classmethod
    def states(cls, module: nn.Module, output: Any) -> int:
        """State variables each neuron reads, updates and writes every step (1: the membrane)."""
        return 1

    @classmethod
    def virtual_steps(cls, module: nn.Module) -> int:
        """Binary steps one step of the neuron runs at inference (1; an integer-spike neuron: D)."""
        return 1

    @classmethod
    def unpriced(cls, module: nn.Module) -> str | None:
        """Why part of this neuron's work is not priced (None: all of it is)."""
        return None

    reset_method: str | None = None  # the module's own method that clears its state, if any

    @classmethod
    def reset(cls, module: nn.Module) -> None:
        """Clear the state the neuron keeps between calls: call its :attr:`reset_method` (no-op
        when it has none)."""
        reset = getattr(module, cls.reset_method, None) if cls.reset_method else None
        if callable(reset):
            reset()


NEURON_ADAPTERS: Registry[type[NeuronAdapter]] = Registry("neuron adapter")


def adapter_for(module: nn.Module) -> type[NeuronAdapter] | None:
    """The first registered adapter that recognizes ``module`` (None: not a spiking neuron)."""
    return NEURON_ADAPTERS.first(lambda adapter: adapter.matches(module))


@NEURON_ADAPTERS.register("hstlab")
class HstlabNeuron(NeuronAdapter):
    """Any module declaring ``is_spiking_neuron = True`` (hstlab's LIF/PLIF/ALIF): multi-step on
    ``[T, B, ...]`` or time folded into the batch; reset by the model's ``reset_state``."""

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return getattr(module, "is_spiking_neuron", False) is True

    @classmethod
    def steps(cls, module: nn.Module, x: torch.Tensor, batch_size: int) -> float:
        from hstlab.energy.counting import time_steps

        return time_steps(x, batch_size)

    @classmethod
    def virtual_steps(cls, module: nn.Module) -> int:
        """D for an integer-spike neuron (its ``virtual_steps`` attribute, I-LIF), else 1."""
        return int(getattr(module, "virtual_steps", 1))


@NEURON_ADAPTERS.register("snntorch")
class SnntorchNeuron(NeuronAdapter):
    """``snntorch.SpikingNeuron`` subclasses (Leaky, Synaptic, Alpha, Lapicque, RLeaky, ...): single-step,
    one call per time step on ``[B, ...]``; states are the ``mem``/``syn``/``syn_exc``/``syn_inh``
    buffers it holds (Leaky 1, Synaptic 2, Alpha 3)."""

    library = "snntorch"
    reset_method = "reset_mem"
    _state_names = ("mem", "syn", "syn_exc", "syn_inh")

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return _in_mro(module, "snntorch", ("SpikingNeuron",))

    @classmethod
    def states(cls, module: nn.Module, output: Any) -> int:
        buffers = dict(module.named_buffers(recurse=False))
        attrs = [n for n in cls._state_names if n in buffers or isinstance(getattr(module, n, None), torch.Tensor)]
        return max(1, len(attrs))



@NEURON_ADAPTERS.register("spikingjelly")
class SpikingJellyNeuron(NeuronAdapter):
    """SpikingJelly ``BaseNode`` subclasses (IFNode, LIFNode, ParametricLIFNode, ...): ``step_mode``
    ``"s"`` runs one step on ``[B, ...]``, ``"m"`` all T steps of ``[T, B, ...]``; states are its
    registered memories (``v``, and e.g. ``w`` for Izhikevich); reset with ``reset()``."""

    library = "spikingjelly"
    reset_method = "reset"

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return _in_mro(module, "spikingjelly", ("BaseNode",))

    @classmethod
    def steps(cls, module: nn.Module, x: torch.Tensor, batch_size: int) -> float:
        if getattr(module, "step_mode", "s") == "m" and x.dim() >= 2:
            return x.shape[0] * x.shape[1] / batch_size
        return super().steps(module, x, batch_size)

    @classmethod
    def states(cls, module: nn.Module, output: Any) -> int:
        memories = getattr(module, "_memories", None)
        return max(1, len(memories)) if isinstance(memories, dict) else 1



@NEURON_ADAPTERS.register("norse")
class NorseNeuron(NeuronAdapter):
    """Norse neurons: ``SNNCell``/``SNNRecurrentCell`` (LIFCell, LIFBoxCell, LIFAdExCell, ...) run one
    step on ``[B, ...]``; ``SNN``/``SNNRecurrent`` (LIF, LIFBox, ...) all T steps of ``[T, B, ...]``.
    They return ``(spikes, state)``; the states are the tensors of that state (LIF: ``v`` and ``i``).
    Norse keeps no state between calls (the caller passes it), so there is nothing to reset."""

    library = "norse"
    _cells = ("SNNCell", "SNNRecurrentCell")
    _sequences = ("SNN", "SNNRecurrent")

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        return _in_mro(module, "norse", (*cls._cells, *cls._sequences))

    @classmethod
    def steps(cls, module: nn.Module, x: torch.Tensor, batch_size: int) -> float:
        if _in_mro(module, "norse", cls._sequences) and x.dim() >= 2:
            return x.shape[0] * x.shape[1] / batch_size
        return super().steps(module, x, batch_size)

    @classmethod
    def states(cls, module: nn.Module, output: Any) -> int:
        if isinstance(output, (tuple, list)) and len(output) > 1:
            return max(1, _state_tensors(output[1]))
        return 1

    @classmethod
    def unpriced(cls, module: nn.Module) -> str | None:
        if _in_mro(module, "norse", ("SNNRecurrentCell", "SNNRecurrent")):
            return ("Norse recurrent neuron: its input and recurrent weight products run inside the cell "
                    "and are not priced (only its neuron updates are)")
        return None
