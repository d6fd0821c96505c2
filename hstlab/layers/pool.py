"""Max-pooling for the convolutional stem, fast on CPU.

PyTorch's CPU ``max_pool2d`` on contiguous NCHW tensors is 4-20x slower than on channels-last
ones (measured, torch 2.13, 2 threads, [128, 32, 34, 34]: 21 ms vs 2.8 ms forward), and the
stem's pools took ~20 % of an hst-small training step. :class:`MaxPool2d` pools NCHW inputs in
channels-last and hands back NCHW outputs; its backward scatters through the same indices in
NCHW (PyTorch's own kernel). A channels-last input (the SPS stem's) is pooled as it is. Outputs
and gradients are identical to ``nn.MaxPool2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _ChannelsLastMaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple,
                ceil_mode: bool) -> torch.Tensor:  # x: [N, C, H, W]
        cl = x.contiguous(memory_format=torch.channels_last)
        out, indices = F.max_pool2d(cl, kernel, stride, padding, dilation, ceil_mode, return_indices=True)
        indices = indices.contiguous()  # [N, C, H_out, W_out], flat positions in each H x W plane
        ctx.save_for_backward(x, indices)
        ctx.args = (kernel, stride, padding, dilation, ceil_mode)
        return out.contiguous()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, indices = ctx.saved_tensors
        kernel, stride, padding, dilation, ceil_mode = ctx.args
        grad_x = torch.ops.aten.max_pool2d_with_indices_backward(
            grad_out.contiguous(), x, kernel, stride, padding, dilation, ceil_mode, indices)
        return grad_x, None, None, None, None, None


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` that runs in channels-last on CPU (same outputs and gradients).

    Example:
        >>> x = torch.randn(2, 3, 9, 9)
        >>> torch.equal(MaxPool2d(3, 2, 1)(x), nn.MaxPool2d(3, 2, 1)(x))
        True
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [N, C, H, W]
        channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
        if x.device.type != "cpu" or x.dim() != 4 or self.return_indices or channels_last:
            return super().forward(x)  # channels-last input: PyTorch's fast path, output stays channels-last
        args = (_pair(self.kernel_size), _pair(self.stride or self.kernel_size), _pair(self.padding),
                _pair(self.dilation), self.ceil_mode)
        if not (torch.is_grad_enabled() and x.requires_grad):
            cl = x.contiguous(memory_format=torch.channels_last)
            return F.max_pool2d(cl, *args).contiguous()
        return _ChannelsLastMaxPool.apply(x, *args)
