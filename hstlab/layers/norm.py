"""Normalization over the last (feature) axis without transposes.

Spiking layers use BatchNorm over all leading axes (``[T, B, N, D] -> [T*B*N, D]``); it folds
into the preceding linear layer at inference. PyTorch's CPU batch norm on a ``[M, D]`` tensor
walks each channel with stride D (a transposed layout) and costs 10-100x a LayerNorm of the
same size, so :class:`TokenBatchNorm` computes its statistics with contiguous column sums in
one fused autograd node; large float32 CPU inputs run it as compiled loops instead
(:mod:`hstlab.layers._norm_compiled`: four passes over memory per forward + backward, same
results to float32 rounding). Standard layers use LayerNorm.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from hstlab.layers import _norm_compiled


class _TokenBatchNormFn(torch.autograd.Function):
    """Training-mode batch norm of ``[M, D]`` with column-sum statistics."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float):
        ctx.compiled = _norm_compiled.usable(x) and x.is_contiguous()
        if ctx.compiled:  # numba: two passes forward, two backward (see _norm_compiled)
            out, mean, var, rstd = _norm_compiled.forward(x, weight, bias, eps)
            ctx.save_for_backward(x, weight, rstd, mean)
            return out, mean, var
        m = x.shape[0]
        mean = x.sum(dim=0) / m  # [D]
        centered = x - mean  # [M, D]
        var = centered.square().sum(dim=0) / m  # biased, as batch norm normalizes with it
        rstd = torch.rsqrt(var + eps)  # [D]
        x_hat = centered.mul_(rstd)  # reuse the buffer: [M, D]
        ctx.save_for_backward(x_hat, weight, rstd)
        return torch.addcmul(bias, x_hat, weight), mean, var

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor, _grad_mean, _grad_var):
        if ctx.compiled:
            x, weight, rstd, mean = ctx.saved_tensors
            grad_x, grad_weight, grad_bias = _norm_compiled.backward(grad_out, x, mean, rstd, weight,
                                                                     ctx.needs_input_grad[0])
            return grad_x, grad_weight, grad_bias, None
        x_hat, weight, rstd = ctx.saved_tensors
        m = x_hat.shape[0]
        grad_bias = grad_out.sum(dim=0)  # [D]
        grad_weight = (grad_out * x_hat).sum(dim=0)  # [D]
        grad_x = None
        if ctx.needs_input_grad[0]:
            # dx = w * rstd / M * (M * dy - sum(dy) - x_hat * sum(dy * x_hat))
            grad_x = x_hat * (-grad_weight / m)
            grad_x += grad_out
            grad_x -= grad_bias / m
            grad_x *= weight * rstd
        return grad_x, grad_weight, grad_bias, None


class TokenBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over the last axis of a ``[..., D]`` tensor (same parameters and buffers).

    Example:
        >>> TokenBatchNorm(8)(torch.randn(2, 3, 5, 8)).shape
        torch.Size([2, 3, 5, 8])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [..., D]
        flat = x.reshape(-1, x.shape[-1])  # [M, D]
        if not self.training:
            scale = self.weight * torch.rsqrt(self.running_var + self.eps)  # [D]
            shift = self.bias - self.running_mean * scale
            return torch.addcmul(shift, flat, scale).view_as(x)
        if flat.shape[0] == 1:
            return x  # a single value per channel carries no batch statistics
        return _train_rows(self, flat).view_as(x)


def _train_rows(norm: nn.modules.batchnorm._BatchNorm, flat: torch.Tensor) -> torch.Tensor:
    """Training-mode batch norm of rows ``flat`` [M, D] (M > 1) with ``norm``'s parameters; updates
    its running statistics as ``nn.BatchNorm*`` does (unbiased variance, momentum or cumulative)."""
    out, mean, var = _TokenBatchNormFn.apply(flat, norm.weight, norm.bias, norm.eps)
    with torch.no_grad():
        norm.num_batches_tracked.add_(1)
        # momentum None: cumulative average over the batches seen, as nn.BatchNorm1d does
        factor = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
        unbiased = var * (flat.shape[0] / (flat.shape[0] - 1))
        norm.running_mean.lerp_(mean, factor)
        norm.running_var.lerp_(unbiased, factor)
    return out


class ChannelsLastBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training pass on channels-last float32 CPU features runs the
    compiled rows of :class:`TokenBatchNorm` (such a tensor's memory is ``[N·H·W, C]`` rows);
    every other case, and eval mode, is ``nn.BatchNorm2d`` itself (same parameters and buffers).

    Example:
        >>> bn = ChannelsLastBatchNorm2d(4)
        >>> bn(torch.randn(2, 4, 3, 3).contiguous(memory_format=torch.channels_last)).shape
        torch.Size([2, 4, 3, 3])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [N, C, H, W]
        if not (self.training and self.affine and self.track_running_stats and x.dim() == 4):
            return super().forward(x)
        rows = x.permute(0, 2, 3, 1)  # [N, H, W, C]: a view; contiguous for channels-last memory
        if not rows.is_contiguous() or rows.numel() <= x.shape[1] or not _norm_compiled.usable(rows):
            return super().forward(x)
        out = _train_rows(self, rows.view(-1, x.shape[1]))  # [N·H·W, C]
        return out.view(rows.shape).permute(0, 3, 1, 2)  # [N, C, H, W], channels-last memory


def TokenNorm(dim: int, spiking: bool) -> nn.Module:  # noqa: N802 - a factory named like the module it returns
    """BatchNorm for spiking layers (folds away at inference), LayerNorm for standard ones."""
    return TokenBatchNorm(dim) if spiking else nn.LayerNorm(dim)


def _reset_state(model: nn.Module) -> None:
    from hstlab.neurons import reset_state

    own = getattr(model, "reset_state", None)
    own() if callable(own) else reset_state(model)


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, inputs: torch.Tensor | Iterable[torch.Tensor], *,
                        seed: int | None = None, devices: Sequence[torch.device] = ()) -> int:
    """Set every BatchNorm's running statistics to the exact average over ``inputs`` (one batch or
    an iterable of batches, as the model takes them); returns the number of batches used.

    An untrained network in eval mode normalizes with the initial statistics (mean 0, var 1),
    which silences a spiking network beyond its first layer, and a short training run leaves
    them far from the current weights' (like ``torch.optim.swa_utils.update_bn``). Runs
    training-mode forwards without gradients under a forked RNG (seeded with ``seed`` if given;
    ``devices``: CUDA devices whose RNG to fork), resets neuron state around each batch, and
    restores the mode and momenta.

    Example:
        >>> from hstlab import HSTConfig, build_model, example_input
        >>> cfg = HSTConfig.from_preset("tiny")
        >>> calibrate_batchnorm(build_model(cfg).eval(), example_input(cfg))
        1
    """
    norms = [m for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return 0
    batches = [inputs] if isinstance(inputs, torch.Tensor) else inputs
    was_training, momenta = model.training, [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches seen
    used = 0
    try:
        model.train()
        with torch.random.fork_rng(devices=list(devices)):
            if seed is not None:
                torch.manual_seed(seed)
            for x in batches:
                _reset_state(model)
                model(x)
                used += 1
    finally:
        _reset_state(model)
        model.train(was_training)
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
    return used
