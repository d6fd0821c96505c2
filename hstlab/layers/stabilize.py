"""Gradient stabilization for spiking attention heads: equalize per-head gradient norms.

Identity in the forward pass; in the backward pass each head's gradient is rescaled to the
mean norm over heads, so no single head's surrogate gradients dominate (or vanish) early in
training. The total gradient scale is kept.
"""

from __future__ import annotations

import torch


class _HeadGradNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # x: [T, B, H, N, d]
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        norms = grad.transpose(0, 2).reshape(grad.shape[2], -1).norm(dim=1)  # [H]
        scale = norms.mean() / norms.clamp_min(1e-12)
        scale = torch.where(norms > 0, scale, torch.ones_like(scale))
        return grad * scale.view(1, 1, -1, 1, 1)


def head_grad_norm(x: torch.Tensor) -> torch.Tensor:
    """Apply per-head gradient norm equalization to ``[T, B, H, N, d]``.

    Example:
        >>> x = torch.ones(1, 1, 2, 1, 1, requires_grad=True)
        >>> (head_grad_norm(x) * torch.tensor([1.0, 3.0]).view(1, 1, 2, 1, 1)).sum().backward()
        >>> x.grad.flatten().tolist()
        [2.0, 2.0]
    """
    return _HeadGradNorm.apply(x)
