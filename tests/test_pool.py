"""The stem's channels-last max-pool: the same outputs and gradients as nn.MaxPool2d."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hstlab.layers.pool import MaxPool2d


@pytest.mark.parametrize("shape", [(2, 3, 9, 9), (4, 5, 8, 7), (1, 2, 3, 3)])
@pytest.mark.parametrize("binary", [False, True])
def test_matches_torch_max_pool(shape, binary):
    torch.manual_seed(0)
    x = (torch.rand(shape) < 0.3).float() if binary else torch.randn(shape)  # binary: spikes, many ties
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, ref = MaxPool2d(3, 2, 1)(a), nn.MaxPool2d(3, 2, 1)(b)
    assert torch.equal(ours, ref) and ours.is_contiguous()
    grad = torch.randn_like(ref)
    ours.backward(grad)
    ref.backward(grad)
    assert torch.equal(a.grad, b.grad)  # binary input: ties broken the same way (first maximum)


def test_no_grad_and_other_settings_match():
    x = torch.randn(2, 4, 10, 10)
    with torch.no_grad():
        assert torch.equal(MaxPool2d(3, 2, 1)(x), nn.MaxPool2d(3, 2, 1)(x))
    assert torch.equal(MaxPool2d(2)(x), nn.MaxPool2d(2)(x))  # stride defaults to the kernel
    out, idx = MaxPool2d(3, 2, 1, return_indices=True)(x)  # falls back to torch
    ref_out, ref_idx = nn.MaxPool2d(3, 2, 1, return_indices=True)(x)
    assert torch.equal(out, ref_out) and torch.equal(idx, ref_idx)


def test_channels_last_input_stays_channels_last():
    x = torch.randn(2, 4, 9, 9).contiguous(memory_format=torch.channels_last)
    a, b = x.clone().requires_grad_(), x.contiguous().requires_grad_()
    ours, ref = MaxPool2d(3, 2, 1)(a), nn.MaxPool2d(3, 2, 1)(b)
    assert torch.equal(ours, ref) and ours.is_contiguous(memory_format=torch.channels_last)
    grad = torch.randn_like(ref)
    ours.backward(grad)
    ref.backward(grad)
    assert torch.equal(a.grad, b.grad)
