"""What moves during training, kept for an exact resume: the position in the run and the
running sums of the current epoch.

Example:
    >>> totals = EpochTotals(); totals.add(0.5, 4, {}, 2.0, 10)
    >>> totals.state()["loss_sum"], totals.state()["samples"]
    (2.0, 4)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from hstlab.train import distributed as dist_utils


@dataclass
class Progress:
    """The position of a run (saved in the last checkpoint for exact resume)."""

    epoch: int = 0
    pos: int = 0  # batches done in the current epoch
    step: int = 0  # optimizer steps done
    seconds: float = 0.0
    best_score: float = -math.inf
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)


class EpochTotals:
    """Running sums of the train metrics of one epoch (this rank only)."""

    def __init__(self) -> None:
        self.loss_sum, self.samples, self.spikes, self.neurons = 0.0, 0, 0.0, 0
        self.stats: dict[str, Tensor] = {}

    def add(self, loss: float, n: int, stats: dict[str, Tensor], spikes: float, neurons: int) -> None:
        self.loss_sum += loss * n
        self.samples += n
        self.spikes += spikes
        self.neurons += neurons
        for k, v in stats.items():
            v = v.detach().to("cpu", torch.float64)
            self.stats[k] = self.stats[k] + v if k in self.stats else v.clone()

    def state(self) -> dict[str, Any]:
        return {"loss_sum": self.loss_sum, "samples": self.samples, "spikes": self.spikes,
                "neurons": self.neurons, "stats": dict(self.stats)}

    def load(self, state: dict[str, Any]) -> None:
        self.loss_sum, self.samples = float(state["loss_sum"]), int(state["samples"])
        self.spikes, self.neurons = float(state["spikes"]), int(state["neurons"])
        self.stats = dict(state["stats"])


def reduce_sums(loss_sum: float, count: float, spikes: float, neurons: float, stats: dict[str, Tensor],
                ctx: dist_utils.DistContext, device: torch.device) -> tuple[float, float | None, dict[str, Tensor]]:
    """All-reduce one rank's sums in one message: ``(mean loss, firing rate or None, summed stats)``."""
    keys = sorted(stats)
    packed = torch.cat([torch.tensor([loss_sum, count, spikes, neurons], dtype=torch.float64)]
                       + [stats[k].to(torch.float64).reshape(-1) for k in keys])
    packed = dist_utils.all_reduce_sum(packed.to(device), ctx).cpu()
    out, offset = {}, 4
    for k in keys:
        size = stats[k].numel()
        out[k] = packed[offset:offset + size].reshape(stats[k].shape)
        offset += size
    loss = float(packed[0] / packed[1].clamp_min(1))
    rate = float(packed[2] / packed[3]) if packed[3] > 0 else None
    return loss, rate, out
