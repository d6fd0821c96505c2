"""Base class of every spiking neuron: explicitly registered memory, reset and recording.

State is declared with :meth:`SpikingNeuron.register_memory` (as spikingjelly's
``MemoryModule``): each memory has a default that :meth:`reset_state` restores. No global
instance lists: :func:`reset_state` walks a module tree.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn


class SpikingNeuron(nn.Module):
    """Multi-step spiking neuron: ``forward(x [T, ...]) -> spikes [T, ...]`` (0/1, same dtype).

    Memories (e.g. the membrane ``v``) persist across calls until :meth:`reset_state`; their
    defaults are floats (broadcast to the input's per-step shape on first use). A stored state
    whose shape differs from the new input's per-step shape (e.g. another batch size) is
    replaced by its default; dtype/device follow the input. With ``record = True`` the forward
    stores ``last_v`` (membrane after charge, before reset, detached, [T, ...]).

    Example:
        >>> class Counter(SpikingNeuron):
        ...     def __init__(self):
        ...         super().__init__(threshold=1.0)
        ...         self.register_memory("v", 0.0)
        >>> n = Counter(); n.v = torch.ones(2); n.reset_state(); n.v
        0.0
    """

    is_spiking_neuron = True

    def __init__(self, threshold: float = 1.0) -> None:
        super().__init__()
        self.threshold = float(threshold)
        self.record = False
        self.last_v: Tensor | None = None
        self._memories: dict[str, Any] = {}

    # ------------------------------------------------------------------ memories
    def register_memory(self, name: str, default: Any) -> None:
        """Declare state ``name`` whose value :meth:`reset_state` sets back to ``default``."""
        if name in self._memories or hasattr(self, name):
            raise ValueError(f"memory name={name!r} is already an attribute of {type(self).__name__}")
        self._memories[name] = default
        object.__setattr__(self, name, copy.deepcopy(default))

    def memories(self) -> dict[str, Any]:
        """Current value of every registered memory, by name."""
        return {name: getattr(self, name) for name in self._memories}

    def reset_state(self) -> None:
        """Restore every memory to its default and forget the recordings."""
        for name, default in self._memories.items():
            object.__setattr__(self, name, copy.deepcopy(default))
        self.last_v = None

    def detach_state(self) -> None:
        """Cut the graph through stored state (truncated BPTT), keeping its values."""
        for name in self._memories:
            value = getattr(self, name)
            if isinstance(value, Tensor):
                object.__setattr__(self, name, value.detach())

    def __getstate__(self) -> dict[str, Any]:
        """Copy/pickle with memories detached (a state still in a graph cannot be deep-copied)."""
        state = dict(self.__dict__)
        for name in self._memories:
            if isinstance(state.get(name), Tensor):
                state[name] = state[name].detach()
        return state

    def _state_like(self, name: str, x: Tensor) -> Tensor:
        """Memory ``name`` as a tensor of the per-step shape ``x.shape[1:]``, ``x``'s dtype and device.

        The default is used when the memory is unset (a float) or its shape differs from
        ``x.shape[1:]`` (e.g. the batch size changed between calls).
        """
        value = getattr(self, name)
        shape = x.shape[1:]
        if isinstance(value, Tensor) and value.shape == shape:
            return value.to(dtype=x.dtype, device=x.device)
        if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
            # numpy's fill runs on this thread: torch.full of a large state is a 2-thread OpenMP op,
            # which waits for a sleeping worker to wake (1.8 ms per LIF call under load, against
            # ~2.5 ms for the LIF kernels themselves)
            state = torch.empty(shape, dtype=x.dtype)
            state.numpy().fill(float(self._memories[name]))
            return state
        return torch.full(shape, float(self._memories[name]), dtype=x.dtype, device=x.device)

    # ------------------------------------------------------------------ threshold balancing
    def enable_threshold_scale(self, learn: bool) -> None:
        """Give the neuron a per-layer threshold scale ``s`` (1.0 until set; see :mod:`hstlab.neurons.balance`).

        The neuron then charges with ``X / s``: for a neuron whose reset potential is 0 this is the
        same run as threshold ``s θ`` (membrane and soft reset scale with it). ``learn`` makes ``s``
        an ``nn.Parameter`` (trained with the model), else a buffer (held); both are saved with
        the model's state.
        """
        value = torch.ones(())
        if learn:
            self.threshold_scale = nn.Parameter(value)
        else:
            self.register_buffer("threshold_scale", value)

    @property
    def effective_threshold(self) -> float:
        """``θ`` times the threshold scale (the threshold the membrane of the unscaled input meets)."""
        scale = getattr(self, "threshold_scale", None)
        return self.threshold * (float(scale) if isinstance(scale, Tensor) else 1.0)

    def _scale_input(self, x: Tensor) -> Tensor:
        """``x / s`` when threshold balancing is on, else ``x``."""
        scale = getattr(self, "threshold_scale", None)
        return x if scale is None else x / scale.to(x.dtype)

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.dim() < 1:
            raise ValueError(f"x must be a tensor [T, ...] with a leading time axis, got {type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"x.dtype={x.dtype} must be floating point (float32 or float64)")

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}"


def reset_state(module: nn.Module) -> None:
    """Call ``reset_state()`` on every submodule of ``module`` (itself included) that has one.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2))
        >>> reset_state(net)  # no neurons: nothing to do
    """
    for sub in module.modules():
        if sub is module and not isinstance(sub, SpikingNeuron):
            continue  # the root's own reset_state may call this function: avoid recursion
        fn = getattr(sub, "reset_state", None)
        if callable(fn):
            fn()
