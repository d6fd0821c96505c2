"""Batching time-first samples."""

from __future__ import annotations

import numpy as np
import torch


def time_first_collate(batch: list[tuple]) -> tuple[torch.Tensor, torch.Tensor]:
    """DataLoader ``collate_fn``: samples (x [T, ...], y) -> (x [T, B, ...], y).

    y stays [B] for class labels and becomes [L, B, ...] for per-step targets (sequence tasks),
    matching the time-first contract (frames [T, B, C, H, W], sequences [L, B, C]).

    Example:
        >>> xs = [(torch.zeros(4, 2, 3, 3), 1), (torch.ones(4, 2, 3, 3), 0)]
        >>> x, y = time_first_collate(xs); tuple(x.shape), y.tolist()
        ((4, 2, 2, 3, 3), [1, 0])
    """
    xs, ys = zip(*batch)
    x = _stack_time_first(xs)  # [T, B, ...]
    if isinstance(ys[0], torch.Tensor) and ys[0].dim() > 0:
        y = _stack_time_first(ys)  # [L, B, ...]
    else:
        y = torch.as_tensor(ys)  # [B]
    return x, y


def spread_indices(length: int, n: int) -> list[int]:
    """``min(n, length)`` indices spread evenly over ``range(length)``, first and last included.

    Splits are often stored sorted by class: the first ``n`` samples would be one or two
    classes, which biases any per-sample estimate (energy, firing rate) made on them.

    Example:
        >>> spread_indices(10, 4), spread_indices(3, 8)
        ([0, 3, 6, 9], [0, 1, 2])
    """
    if length < 1 or n < 1:
        return []
    if n >= length:
        return list(range(length))
    return np.linspace(0, length - 1, n).round().astype(int).tolist()


def _stack_time_first(items) -> torch.Tensor:
    """[B x [T, ...]] -> [T, B, ...], contiguous. CPU tensors are stacked with numpy: torch's
    multi-threaded stack can be 50x slower on a busy machine (measured: 1 s vs 17 ms)."""
    tensors = [torch.as_tensor(v) for v in items]
    if all(t.device.type == "cpu" and not t.requires_grad for t in tensors):
        arr = np.stack([t.numpy() for t in tensors], axis=1)  # [T, B, ...]
        return torch.from_numpy(arr)
    return torch.stack(tensors, dim=1).contiguous()
