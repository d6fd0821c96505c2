"""Look inside a forward pass from outside: spikes, membranes and attention maps by module name."""

from __future__ import annotations

import fnmatch
from typing import Any

import torch
from torch import nn


class Recorder:
    """Record spikes, membrane potentials, attention maps and expert gates with forward hooks.

    ``layers`` is a glob over module names (``"*"``, ``"blocks.0.*"``). Attention kinds that
    compute in linear order form ``Q Kᵀ`` only here, from the probed Q and K. A module called
    several times in one pass (e.g. TIM's per-step neurons) has its records joined along time.
    Modules with a ``gate_probe`` (the expert kinds ``emsa`` and ``emsp``) have its output, the
    router's spikes ``[T, B, N, experts]``, recorded in ``gates``.

    Example:
        >>> from hstlab import HSTConfig, build_model, example_input
        >>> cfg = HSTConfig.from_preset("tiny")
        >>> model = build_model(cfg)
        >>> with Recorder(model) as rec:
        ...     _ = model(example_input(cfg))
        >>> rec.attention["blocks.0.attn.branch"].shape  # [T, B, H, N, N]
        torch.Size([2, 2, 2, 16, 16])
    """

    def __init__(self, model: nn.Module, layers: str = "*") -> None:
        self.model, self.pattern = model, layers
        self.spikes: dict[str, torch.Tensor] = {}
        self.membranes: dict[str, torch.Tensor] = {}
        self.thresholds: dict[str, Any] = {}
        self.attention: dict[str, torch.Tensor] = {}
        self.gates: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []
        self._flags: list[tuple[nn.Module, bool]] = []
        self._probed: dict[str, dict[str, torch.Tensor]] = {}

    def __enter__(self) -> Recorder:
        for name, module in self.model.named_modules():
            if not fnmatch.fnmatch(name, self.pattern):
                continue
            if getattr(module, "is_spiking_neuron", False):
                self._flags.append((module, module.record))
                module.record = True
                self._handles.append(module.register_forward_hook(self._neuron_hook(name)))
            elif hasattr(module, "attention_map") and hasattr(module, "q_probe"):
                self._probed[name] = {}
                for role in ("q", "k"):
                    probe = getattr(module, f"{role}_probe")
                    self._handles.append(probe.register_forward_hook(self._probe_hook(name, role)))
                self._handles.append(module.register_forward_hook(self._attention_hook(name)))
            if isinstance(getattr(module, "gate_probe", None), nn.Module):
                self._handles.append(module.gate_probe.register_forward_hook(self._gate_hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        for module, flag in self._flags:
            module.record = flag
        self._handles, self._flags = [], []

    def clear(self) -> None:
        """Forget what was recorded (keep the hooks)."""
        for store in (self.spikes, self.membranes, self.thresholds, self.attention, self.gates):
            store.clear()

    @staticmethod
    def _append(store: dict[str, torch.Tensor], name: str, value: torch.Tensor) -> None:
        value = value.detach()
        store[name] = torch.cat([store[name], value]) if name in store else value

    def _neuron_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            self._append(self.spikes, name, output)
            if getattr(module, "last_v", None) is not None:
                self._append(self.membranes, name, module.last_v)
            last_threshold = getattr(module, "last_threshold", None)
            if isinstance(last_threshold, torch.Tensor):
                self._append(self.thresholds, name, last_threshold)
            else:
                self.thresholds[name] = float(module.threshold)
        return hook

    def _probe_hook(self, name: str, role: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            self._probed[name][role] = output.detach()
        return hook

    def _gate_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            self._append(self.gates, name, output)
        return hook

    def _attention_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            probed = self._probed[name]
            with torch.no_grad():
                self._append(self.attention, name, module.attention_map(probed["q"], probed["k"]))
        return hook
