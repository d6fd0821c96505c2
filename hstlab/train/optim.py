"""The optimizer: AdamW with decay on weights only, and carrying its moments across a model rebuild."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def make_adamw(named: list[tuple[str, nn.Parameter]], lr: float, betas: tuple[float, float],
               weight_decay: float) -> torch.optim.AdamW:
    """AdamW with ``weight_decay`` on parameters with >= 2 dims and none on biases/norm scales.

    Example:
        >>> opt = make_adamw(list(nn.Linear(2, 3).named_parameters()), 1e-3, (0.9, 0.999), 0.01)
        >>> [len(g["params"]) for g in opt.param_groups], [g["weight_decay"] for g in opt.param_groups]
        ([1, 1], [0.01, 0.0])
    """
    decay = [p for n, p in named if p.dim() >= 2]
    no_decay = [p for n, p in named if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:  # the fused kernel: one pass per step instead of ~10 ops per parameter (CPU: torch >= 2.4)
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=lr, betas=betas)


def carry_moments(old: torch.optim.Optimizer, old_named: dict[str, nn.Parameter], new: torch.optim.Optimizer,
                  new_named: list[tuple[str, nn.Parameter]]) -> int:
    """Copy the state of every parameter whose name and shape survive into ``new``; returns how many."""
    carried = 0
    for name, p in new_named:
        before = old_named.get(name)
        if before is not None and before.shape == p.shape and before in old.state:
            new.state[p] = {k: (v.clone() if isinstance(v, Tensor) else v) for k, v in old.state[before].items()}
            carried += 1
    return carried
