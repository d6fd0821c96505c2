"""TensorBoard logging as a trainer callback: scalars, per-layer firing rates, histograms, hparams.

The trainer draws nothing and hands its callbacks events only; this callback turns them into
TensorBoard event files. Per-layer firing rates are not in the events, so the logger watches
the network itself: while it is open, process-wide forward hooks (``torch.nn.modules.module.
register_module_forward_hook``) find the outermost module of each forward call (the model,
also after a mode-schedule rebuild or inside DDP) and add up the output of every spiking
neuron in it, by layer name. Training steps (training mode, gradients on) and evaluation
passes (eval mode: validation, the energy batch, test) are counted apart; each epoch event
writes the training rates of that epoch. Needs the ``tensorboard`` package.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hstlab._optional import require

STEP_SCALARS = {"loss": "train/loss", "accuracy": "train/accuracy", "bits_per_spike": "train/bits_per_spike",
                "firing_rate": "train/firing_rate", "lr": "train/lr"}
EPOCH_SCALARS = {"loss": "epoch/train_loss", "accuracy": "epoch/train_accuracy", "val_loss": "val/loss",
                 "val_accuracy": "val/accuracy", "val_bits_per_spike": "val/bits_per_spike",
                 "val_firing_rate": "val/firing_rate"}
FIT_SCALARS = {"val_accuracy": "final/val_accuracy", "test_accuracy": "final/test_accuracy",
               "test_loss": "final/test_loss", "test_bits_per_spike": "final/test_bits_per_spike"}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def hparams_of(cfg: Any) -> dict[str, Any]:
    """The config flattened to TensorBoard hparam values (numbers, strings, bools).

    Tuples and per-layer settings become strings; ``modes`` (S/T/H per layer) is added.

    Example:
        >>> from hstlab import HSTConfig
        >>> hp = hparams_of(HSTConfig.from_preset("tiny").with_modes("ST"))
        >>> hp["modes"], hp["n_layer"], hp["input_shape"]
        ('ST', 2, '(2, 16, 16)')
    """
    data = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, (bool, int, float, str)):
            out[key] = value
        elif value is None:
            out[key] = "None"
        elif key == "layers":
            out[key] = "; ".join(",".join(f"{k}={v}" for k, v in spec.items() if v is not None) or "-"
                                 for spec in value)
        else:
            out[key] = str(tuple(value) if isinstance(value, list) else value)
    if hasattr(cfg, "modes"):
        out["modes"] = cfg.modes
    return out


class _LayerRates:
    """Per-layer spike sums (and per-neuron sums over time and batch) since the last :meth:`take`."""

    def __init__(self) -> None:
        self.spikes: dict[str, float] = {}
        self.count: dict[str, int] = {}
        self.per_neuron: dict[str, Tensor] = {}
        self.samples: dict[str, int] = {}

    def add(self, name: str, out: Tensor) -> None:
        out = out.detach()
        self.spikes[name] = self.spikes.get(name, 0.0) + float(out.sum(dtype=torch.float64))
        self.count[name] = self.count.get(name, 0) + out.numel()
        if out.dim() >= 3:  # [T, B, ...]: per-neuron sums over time and batch
            sums = out.sum(dim=(0, 1), dtype=torch.float64).cpu()
            prev = self.per_neuron.get(name)
            if prev is None or prev.shape != sums.shape:
                self.per_neuron[name], self.samples[name] = sums, out.shape[0] * out.shape[1]
            else:
                self.per_neuron[name] = prev + sums
                self.samples[name] += out.shape[0] * out.shape[1]

    def take(self) -> tuple[dict[str, float], dict[str, Tensor]]:
        rates = {k: self.spikes[k] / self.count[k] for k in self.spikes if self.count[k]}
        neurons = {k: v / self.samples[k] for k, v in self.per_neuron.items() if self.samples.get(k)}
        self.__init__()
        return rates, neurons


class TensorBoardLogger:
    """Trainer callback writing TensorBoard event files to ``log_dir``.

    - every step: ``train/loss``, ``train/accuracy``, ``train/lr``, ``train/firing_rate``;
    - every epoch: ``val/*``, ``epoch/*``, ``energy/per_sample_uj``, per-layer training firing
      rates ``firing_rate/<layer>`` (scalars) and ``firing_rate_per_neuron/<layer>``
      (histogram of each neuron's rate over the epoch's steps);
    - at the end: ``final/*`` (the best model's val and test scores) and the config as
      hparams, with val/test accuracy and energy as hparam metrics.

    ``cfg`` overrides the config read from the model (``model.cfg``). Call :meth:`close`
    (done at ``fit_end``) to remove the hooks and flush. The x axis is the optimizer step.

    Example:
        >>> tb = TensorBoardLogger("runs/tb")  # doctest: +SKIP
        >>> Trainer(model, cfg, train_ds, val_ds, callbacks=[tb]).fit()  # doctest: +SKIP
        >>> # tensorboard --logdir runs/tb
    """

    def __init__(self, log_dir: str | os.PathLike, cfg: Any = None, histograms: bool = True) -> None:
        require("tensorboard", "TensorBoardLogger (hstlab train --tensorboard)")
        from torch.utils.tensorboard import SummaryWriter

        if isinstance(log_dir, bool) or not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
            raise ValueError(f"log_dir={log_dir!r} must be a folder path")
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        self.cfg = cfg
        self.histograms = bool(histograms)
        self.train_rates = _LayerRates()
        self.eval_rates = _LayerRates()
        self._names: dict[int, tuple[nn.Module, dict[int, str]]] = {}  # id(root) -> (root, {id(neuron): name})
        self._local = threading.local()
        self._lock = threading.Lock()
        self.model: nn.Module | None = None
        self._handles = [
            torch.nn.modules.module.register_module_forward_pre_hook(self._enter),
            torch.nn.modules.module.register_module_forward_hook(self._leave, always_call=True),
        ]

    # ------------------------------------------------------------------ network hooks
    def _stack(self) -> list[nn.Module]:
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def _enter(self, module: nn.Module, args: Any) -> None:
        stack = self._stack()
        if not stack:
            self._root(module)
        stack.append(module)

    def _root(self, module: nn.Module) -> None:
        known = self._names.get(id(module))
        if known is not None and known[0] is module:
            return
        names = {id(m): name.removeprefix("module.") for name, m in module.named_modules()
                 if getattr(m, "is_spiking_neuron", False)}
        self._names[id(module)] = (module, names)  # also roots without neurons (the loss): looked at once
        if names:
            self.model = getattr(module, "module", module)  # DDP keeps the model in .module

    def _leave(self, module: nn.Module, args: Any, output: Any) -> None:
        stack = self._stack()
        if stack and stack[-1] is module:
            stack.pop()
        if not getattr(module, "is_spiking_neuron", False) or not isinstance(output, Tensor) or not stack:
            return
        entry = self._names.get(id(stack[0]))
        name = entry[1].get(id(module)) if entry and entry[0] is stack[0] else None
        if name is None:
            return
        root = stack[0]
        with self._lock:
            if root.training and torch.is_grad_enabled():
                self.train_rates.add(name, output)
            elif not root.training:
                self.eval_rates.add(name, output)

    # ------------------------------------------------------------------ trainer events
    def _scalars(self, event: Any, table: Mapping[str, str]) -> None:
        for attr, tag in table.items():
            value = _number(getattr(event, attr, None))
            if value is not None:
                self.writer.add_scalar(tag, value, event.step)

    def on_step_end(self, event: Any) -> None:
        self._scalars(event, STEP_SCALARS)

    def on_epoch_end(self, event: Any) -> None:
        self._scalars(event, EPOCH_SCALARS)
        energy = _number(getattr(event, "energy_per_sample_j", None))
        if energy is not None:
            self.writer.add_scalar("energy/per_sample_uj", energy * 1e6, event.step)
        with self._lock:
            rates, neurons = self.train_rates.take()
            self.eval_rates.take()  # validation and energy passes of this epoch: not logged per layer
        for name, rate in rates.items():
            self.writer.add_scalar(f"firing_rate/{name}", rate, event.step)
        if self.histograms:
            for name, values in neurons.items():
                self.writer.add_histogram(f"firing_rate_per_neuron/{name}", values.flatten().float(), event.step)
        self.writer.flush()

    def on_fit_end(self, event: Any) -> None:
        self._scalars(event, FIT_SCALARS)
        cfg = self.cfg if self.cfg is not None else getattr(self.model, "cfg", None)
        if cfg is not None:
            metrics = {f"hparam/{k}": v for k, v in (
                ("val_accuracy", _number(event.val_accuracy)), ("test_accuracy", _number(event.test_accuracy)),
                ("energy_per_sample_uj", None if _number(event.energy_per_sample_j) is None
                 else event.energy_per_sample_j * 1e6)) if v is not None}
            self.writer.add_hparams(hparams_of(cfg), metrics, run_name=".", global_step=event.step)
        self.close()

    def close(self) -> None:
        """Remove the hooks and flush the event files (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.writer.flush()
        self.writer.close()

    def __del__(self) -> None:  # a logger dropped without fit_end must not leave process-wide hooks
        for handle in getattr(self, "_handles", []):
            handle.remove()
