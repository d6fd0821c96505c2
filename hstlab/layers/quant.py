"""Weight fake-quantization to b bits with a straight-through estimator (b = 32: off)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def fake_quantize(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric per-output-channel quantization to ``bits`` bits; gradients pass straight through.

    Example:
        >>> w = torch.tensor([[0.6, -1.0, 0.2]])
        >>> fake_quantize(w, 2).tolist()  # levels {-1, 0, 1} * max|w|
        [[1.0, -1.0, 0.0]]
    """
    if bits >= 32:
        return weight
    levels = 2 ** (bits - 1) - 1  # symmetric: -levels .. levels
    flat = weight.detach().reshape(weight.shape[0], -1)  # [out, rest]
    scale = flat.abs().amax(dim=1).clamp_min(1e-12) / levels  # [out]
    scale = scale.view(-1, *([1] * (weight.dim() - 1)))
    quantized = torch.clamp(torch.round(weight / scale), -levels, levels) * scale
    return weight + (quantized - weight).detach()


class QuantLinear(nn.Linear):
    """``nn.Linear`` whose weight is fake-quantized to ``weight_bits`` in the forward pass.

    Example:
        >>> QuantLinear(4, 2, weight_bits=8)(torch.ones(3, 4)).shape
        torch.Size([3, 2])
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, weight_bits: int = 32) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.weight_bits = weight_bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, fake_quantize(self.weight, self.weight_bits), self.bias)


class QuantConv2d(nn.Conv2d):
    """``nn.Conv2d`` with fake-quantized weights (see :class:`QuantLinear`)."""

    def __init__(self, *args, weight_bits: int = 32, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.weight_bits = weight_bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, fake_quantize(self.weight, self.weight_bits), self.bias)


class QuantConv1d(nn.Conv1d):
    """``nn.Conv1d`` with fake-quantized weights (see :class:`QuantLinear`)."""

    def __init__(self, *args, weight_bits: int = 32, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.weight_bits = weight_bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, fake_quantize(self.weight, self.weight_bits), self.bias)
