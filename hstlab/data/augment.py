"""Training-time augmentation of time-first event frames (applied per batch by the trainer)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class RandomShift:
    """Move each sample of a frame batch ``[T, B, C, H, W]`` by up to ``max_shift`` pixels.

    One integer offset (dy, dx) per sample, the same for all of its time steps (a saccade does
    not tear the scene apart); pixels moved in from outside are empty (no events), none wrap
    around. Drawn from torch's global RNG, so seeded runs and resumed runs repeat exactly.

    Example:
        >>> x = torch.zeros(2, 3, 1, 5, 5); x[:, :, :, 2, 2] = 1
        >>> y = RandomShift(1)(x)
        >>> y.shape == x.shape and bool((y.sum(dim=(-1, -2)) == 1).all())
        True
    """

    def __init__(self, max_shift: int) -> None:
        if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
            raise ValueError(f"max_shift={max_shift!r} must be an integer >= 0 (pixels)")
        self.max_shift = max_shift

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # x: [T, B, C, H, W]
        if x.dim() != 5:
            raise ValueError(f"RandomShift needs frames [T, B, C, H, W], got shape {tuple(x.shape)}")
        s = self.max_shift
        if s == 0:
            return x
        h, w = x.shape[-2:]
        offsets = torch.randint(0, 2 * s + 1, (x.shape[1], 2)).tolist()  # [B, 2] crop corners in the padded frame
        padded = F.pad(x, (s, s, s, s))  # [T, B, C, H + 2s, W + 2s]
        return torch.stack([padded[:, b, :, dy:dy + h, dx:dx + w] for b, (dy, dx) in enumerate(offsets)], dim=1)

    def __repr__(self) -> str:
        return f"RandomShift(max_shift={self.max_shift})"
