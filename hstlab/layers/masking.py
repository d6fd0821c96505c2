"""Random spike masking (RSM): drop spikes with a keep-mask drawn afresh on every forward pass.

``random`` draws ``M ~ Bernoulli(1 - r)`` per element; ``significance`` keeps, per step and
sample, the ``(1 - r)·N`` tokens with the most spikes (spatial significance) and masks the rest.
Active only in training unless ``in_eval`` is set.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SpikeMasking(nn.Module):
    """Mask a fraction ``ratio`` of spikes in ``[T, B, H, N, d]`` or ``[T, B, N, D]`` tensors.

    Example:
        >>> mask = SpikeMasking(0.5, "random").train()
        >>> out = mask(torch.ones(4, 2, 8, 16))
        >>> 0.3 < out.mean().item() < 0.7
        True
    """

    def __init__(self, ratio: float, policy: str = "random", in_eval: bool = False) -> None:
        super().__init__()
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"ratio={ratio!r} must be in [0, 1)")
        if policy not in ("random", "significance"):
            raise ValueError(f"policy={policy!r} is not allowed; allowed: random, significance")
        self.ratio, self.policy, self.in_eval = ratio, policy, in_eval

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ratio == 0.0 or not (self.training or self.in_eval):
            return x
        if self.policy == "random":
            keep = torch.rand_like(x) >= self.ratio
            return x * keep
        return x * self._significant_tokens(x)

    def _significant_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Keep-mask of the most active tokens, shared over heads and channels."""
        per_token = x if x.dim() == 4 else x.transpose(2, 3).flatten(-2)  # [T, B, N, H*d]
        counts = per_token.detach().abs().sum(dim=-1)  # [T, B, N]
        n = counts.shape[-1]
        keep_n = max(1, math.ceil((1.0 - self.ratio) * n))
        top = counts.topk(keep_n, dim=-1).indices
        keep = torch.zeros_like(counts).scatter_(-1, top, 1.0)  # [T, B, N]
        return keep[..., None] if x.dim() == 4 else keep[:, :, None, :, None]
