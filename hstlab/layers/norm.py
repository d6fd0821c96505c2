"""Normalization over the last (feature) axis without transposes.

Spiking layers use BatchNorm over all leading axes (``[T, B, N, D] -> [T*B*N, D]``), which is
a contiguous 2-D batch norm: no transposed layout, so it costs little on CPU and folds into the
preceding linear layer at inference. Standard layers use LayerNorm.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class TokenBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over the last axis of a ``[..., D]`` tensor.

    Example:
        >>> TokenBatchNorm(8)(torch.randn(2, 3, 5, 8)).shape
        torch.Size([2, 3, 5, 8])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [..., D]
        flat = x.reshape(-1, x.shape[-1])  # [M, D]
        if self.training and flat.shape[0] == 1:
            return x  # a single value per channel carries no batch statistics
        if self.training:
            self.num_batches_tracked.add_(1)
        out = F.batch_norm(flat, self.running_mean, self.running_var, self.weight, self.bias,
                           self.training, self.momentum, self.eps)
        return out.view_as(x)


def TokenNorm(dim: int, spiking: bool) -> nn.Module:  # noqa: N802 - a factory named like the module it returns
    """BatchNorm for spiking layers (folds away at inference), LayerNorm for standard ones."""
    return TokenBatchNorm(dim) if spiking else nn.LayerNorm(dim)
