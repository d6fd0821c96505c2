"""How the trainer turns datasets into batches: a seeded order per epoch, loaders, device moves.

Example:
    >>> chunks([0, 1, 2, 3, 4], 2)
    [[0, 1], [2, 3], [4]]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler

from hstlab.train.distributed import DistContext


def default_collate(batch: list[tuple[Any, Any]]) -> tuple[Tensor, Tensor]:
    """:func:`hstlab.data.time_first_collate`: inputs ``[T, B, ...]``, labels ``[B]`` or targets ``[L, B, ...]``."""
    from hstlab.data import time_first_collate

    return time_first_collate(batch)


def chunks(indices: list[int], size: int) -> list[list[int]]:
    """Consecutive batches of ``size`` indices (the last may be shorter)."""
    return [indices[i:i + size] for i in range(0, len(indices), size)]


@dataclass
class Batches:
    """Batch order and loading for one trainer (this rank's share under DDP)."""

    seed: int
    batch_size: int
    ctx: DistContext
    device: torch.device
    collate_fn: Callable[[list], tuple[Tensor, Any]] = default_collate
    num_workers: int = 0

    def epoch(self, data: Dataset, epoch: int) -> list[list[int]]:
        """This rank's batches of ``epoch``: a ``DistributedSampler`` seeded by (seed, epoch)."""
        sampler = DistributedSampler(data, num_replicas=self.ctx.world_size, rank=self.ctx.rank,
                                     shuffle=True, seed=self.seed, drop_last=False)
        sampler.set_epoch(epoch)
        return chunks(list(sampler), self.batch_size)

    def strided(self, data: Dataset, batch_size: int) -> list[list[int]]:
        """This rank's evaluation batches: a strided shard of ``data`` in stored order."""
        indices = list(range(self.ctx.rank, len(data), self.ctx.world_size))
        return chunks(indices, batch_size)

    def loader(self, data: Dataset, batches: list[list[int]], epoch: int = 0) -> Iterable[tuple[Tensor, Any]]:
        """A ``DataLoader`` over ``batches`` with its own generator.

        A DataLoader otherwise draws its base seed (workers' seeds) from the global RNG when
        iterated, which would shift every later draw (augmentation, masking) after a mid-epoch resume.
        """
        if not batches:
            return []
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.utils.data.DataLoader(data, batch_sampler=batches, collate_fn=self.collate_fn,
                                           num_workers=self.num_workers, generator=generator)

    def to_device(self, value: Any) -> Any:
        """``value`` (a tensor, or tuples/lists of them) on the trainer's device."""
        if isinstance(value, Tensor):
            return value.to(self.device, non_blocking=True)
        if isinstance(value, (tuple, list)):
            return type(value)(self.to_device(v) for v in value)
        return value

    @property
    def rng_devices(self) -> list[torch.device]:
        """The devices whose RNG a ``fork_rng`` must save (the CUDA device, if used)."""
        return [self.device] if self.device.type == "cuda" else []
