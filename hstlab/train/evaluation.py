"""Evaluation of a model during and after training: loss, score, firing rate and energy.

Deterministic: every evaluation runs under a forked RNG seeded from the run's seed, so masking
is the same each time and training randomness is untouched.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from hstlab.data.collate import spread_indices
from hstlab.train.batching import Batches
from hstlab.train.fit_state import reduce_sums
from hstlab.train.meters import SpikeRateMeter, energy_per_sample

EVAL_SEED_OFFSET = 7919  # evaluation and calibration RNG: seed + this (apart from training's draws)


class Evaluator:
    """Scores models on datasets with one loss (``accuracy`` or ``bits_per_spike``, from the loss).

    Under DDP each rank scores a strided shard and the sums are all-reduced.
    """

    def __init__(self, batches: Batches, loss_fn: nn.Module, batch_size: int, *,
                 measure_energy: bool = True, energy_preset: str = "45nm-fp32") -> None:
        self.batches, self.loss_fn, self.batch_size = batches, loss_fn, batch_size
        self.measure_energy, self.energy_preset = measure_energy, energy_preset

    @property
    def seed(self) -> int:
        return self.batches.seed + EVAL_SEED_OFFSET

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: Dataset, meter: SpikeRateMeter | None = None,
                 max_batches: int | None = None) -> dict[str, Any]:
        """``{"loss", "firing_rate", <score>}`` of ``model`` on ``data`` (``meter``: one already hooked
        into ``model``; else a temporary one)."""
        was_training = model.training
        model.eval()
        own_meter = meter is None
        meter = SpikeRateMeter(model) if own_meter else meter
        meter.reset()
        batches = self.batches.strided(data, self.batch_size)
        batches = batches[:max_batches] if max_batches else batches
        loss_sum, count = 0.0, 0
        stats: dict[str, Tensor] = {}
        try:
            with torch.random.fork_rng(devices=self.batches.rng_devices):
                torch.manual_seed(self.seed)
                for x, y in self.batches.loader(data, batches):
                    x, y = self.batches.to_device(x), self.batches.to_device(y)
                    if hasattr(model, "reset_state"):
                        model.reset_state()
                    inputs, targets = self.loss_fn.prepare(x, y)
                    out = model(inputs)
                    n = x.shape[1]
                    loss_sum += float(self.loss_fn(out, targets)) * n
                    count += n
                    for k, v in self.loss_fn.stats(out, targets).items():
                        v = v.detach().to("cpu", torch.float64)
                        stats[k] = stats[k] + v if k in stats else v
        finally:
            model.train(was_training)
        spikes, neurons = meter.totals()
        if own_meter:
            meter.close()
        loss, rate, stats = reduce_sums(loss_sum, count, spikes, float(neurons), stats,
                                        self.batches.ctx, self.batches.device)
        out = {"loss": loss, "firing_rate": rate}
        out.update(self.loss_fn.score(stats))
        return out

    def energy(self, model: nn.Module, data: Dataset) -> float | None:
        """Energy per sample of ``model`` on one spread batch of ``data`` (None when switched off)."""
        if not self.measure_energy:
            return None
        x, y = self.batches.collate_fn([data[i] for i in spread_indices(len(data), self.batch_size)])
        with torch.random.fork_rng(devices=self.batches.rng_devices):  # masking must not disturb training
            torch.manual_seed(self.seed)
            inputs, _ = self.loss_fn.prepare(self.batches.to_device(x), self.batches.to_device(y))
            return energy_per_sample(model, inputs, self.energy_preset)
