"""Learning-rate schedule: linear warm-up over a fraction of the steps, then cosine decay."""

from __future__ import annotations

import math
from typing import Any

import torch

from hstlab.train.config import WARMUP_RANGE, TrainConfig


def warmup_cosine_factor(step: int, total_steps: int, warmup_steps: int, min_factor: float = 0.0) -> float:
    """LR multiplier for optimizer step ``step`` (0-based).

    Rises linearly from ``1/warmup_steps`` to 1 over the first ``warmup_steps`` steps, then follows
    a half cosine from 1 down to ``min_factor`` at ``total_steps``.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine:
    """Sets the LR of every param group of an optimizer before each step.

    Unlike ``torch.optim.lr_scheduler.LambdaLR`` it can be re-attached to a new optimizer (the
    trainer rebuilds the optimizer when a mode schedule changes the model), and its state is
    just the step counter.

    Example:
        >>> opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> sched = WarmupCosine(opt, base_lr=1.0, total_steps=100, warmup_frac=0.05)
        >>> lr = sched.apply()  # also written into every param group
        >>> round(opt.param_groups[0]["lr"], 3)
        0.2
    """

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, total_steps: int,
                 warmup_frac: float = TrainConfig.warmup_frac, min_factor: float = 0.0) -> None:
        if not WARMUP_RANGE[0] <= warmup_frac <= WARMUP_RANGE[1]:
            raise ValueError(f"warmup_frac={warmup_frac!r} must be in [{WARMUP_RANGE[0]}, {WARMUP_RANGE[1]}] "
                             "(1-5 % of the steps is typical)")
        if total_steps < 1:
            raise ValueError(f"total_steps={total_steps!r} must be >= 1")
        if not base_lr > 0:
            raise ValueError(f"lr={base_lr!r} must be > 0")
        self.optimizer = optimizer
        self.base_lr = base_lr
        self.total_steps = total_steps
        self.warmup_steps = math.ceil(warmup_frac * total_steps) if warmup_frac > 0 else 0
        self.min_factor = min_factor
        self.step_count = 0

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def current_lr(self) -> float:
        return self.base_lr * warmup_cosine_factor(self.step_count, self.total_steps, self.warmup_steps,
                                                   self.min_factor)

    def apply(self) -> float:
        """Write the LR for the coming step into every param group; returns it."""
        lr = self.current_lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def step(self) -> None:
        self.step_count += 1

    def state_dict(self) -> dict[str, Any]:
        return {"step_count": self.step_count, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "base_lr": self.base_lr, "min_factor": self.min_factor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        self.total_steps = int(state["total_steps"])
        self.warmup_steps = int(state["warmup_steps"])
        self.base_lr = float(state["base_lr"])
        self.min_factor = float(state["min_factor"])
