"""BatchNorm re-estimation before each evaluation.

With the default momentum, running statistics still hold mostly their initial values (mean 0,
var 1) after a short run, while sparse spiking inputs give variances near 1e-2, so an eval-mode
network would fall silent (val firing rate ~0, chance accuracy). Re-estimating them on fixed
training batches fixes that.

Example:
    >>> from hstlab.train.distributed import current_context
    >>> BatchNormCalibration(batches=2, batch_size=3, seed=0).indices(10, current_context())[0]
    [9, 0, 7]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from hstlab.layers.norm import calibrate_batchnorm
from hstlab.train.batching import Batches, chunks
from hstlab.train.distributed import DistContext
from hstlab.train.evaluation import EVAL_SEED_OFFSET


@dataclass(frozen=True)
class BatchNormCalibration:
    """Re-estimate running mean/var from ``batches`` fixed training batches (0: off)."""

    batches: int
    batch_size: int
    seed: int

    def indices(self, n_train: int, ctx: DistContext) -> list[list[int]]:
        """This rank's calibration batches: a fixed, seeded shuffle of the training split.

        Never the split in stored order: datasets are often sorted by class, and class-pure
        batches give per-batch variances without the between-class spread (and only the first
        classes), which silenced or saturated eval-mode spiking layers.
        """
        generator = torch.Generator().manual_seed(self.seed + EVAL_SEED_OFFSET)
        order = torch.randperm(n_train, generator=generator).tolist()
        mine = order[ctx.rank::ctx.world_size]
        return chunks(mine[:self.batches * self.batch_size], self.batch_size)

    @torch.no_grad()
    def run(self, model: nn.Module, train_data: Dataset, loading: Batches, loss_fn: nn.Module) -> int:
        """Reset and re-accumulate every BatchNorm's running stats of ``model``; returns batches used.

        Like ``torch.optim.swa_utils.update_bn``: an exact average (momentum ``1/i`` on the i-th
        batch) in training mode, under a forked, seeded RNG (training randomness and exact
        resume are untouched); momenta and the training flag are restored.
        """
        if self.batches == 0:
            return 0
        batches = self.indices(len(train_data), loading.ctx)

        def inputs() -> Iterable[Tensor]:  # lazy: runs inside calibrate_batchnorm's forked RNG
            for x, y in loading.loader(train_data, batches):
                yield loss_fn.prepare(loading.to_device(x), loading.to_device(y))[0]

        return calibrate_batchnorm(model, inputs(), seed=self.seed + EVAL_SEED_OFFSET,
                                   devices=loading.rng_devices)
