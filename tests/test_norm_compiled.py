"""TokenBatchNorm's compiled (numba) training pass against its torch ops."""

from __future__ import annotations

import pytest
import torch

from hstlab.layers import _norm_compiled
from hstlab.layers.norm import TokenBatchNorm
from hstlab.neurons import _compiled, kernels

pytestmark = pytest.mark.skipif(not _compiled.AVAILABLE, reason="numba not installed")


def _run(backend: str, x0: torch.Tensor, g: torch.Tensor, x_grad: bool = True):
    """Output, input/weight/bias gradients and running stats of one training-mode call."""
    previous = kernels.set_backend(backend)
    try:
        torch.manual_seed(1)
        bn = TokenBatchNorm(x0.shape[-1]).train()
        torch.nn.init.normal_(bn.weight)
        torch.nn.init.normal_(bn.bias)
        x = x0.clone().requires_grad_(x_grad)
        y = bn(x)
        y.backward(g)
        return [y.detach(), x.grad, bn.weight.grad, bn.bias.grad, bn.running_mean, bn.running_var]
    finally:
        kernels.set_backend(previous)


@pytest.mark.parametrize("shape", [(3, 5, 37, 70), (300, 16), (2, 64)])
def test_compiled_matches_torch_ops(shape, monkeypatch) -> None:
    calls: list[str] = []
    for name in ("forward", "backward"):
        original = getattr(_norm_compiled, name)
        monkeypatch.setattr(_norm_compiled, name, lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen) * 3 + 1.5
    g = torch.randn(shape, generator=gen)
    ref = _run("torch", x, g)
    assert calls == []
    ours = _run("compiled", x, g)
    assert calls == ["forward", "backward"]  # the compiled run really ran compiled
    for a, b in zip(ref, ours):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=2e-5)


def test_column_split_across_threads_gives_identical_bits(monkeypatch) -> None:
    x = torch.randn(64, 96, generator=torch.Generator().manual_seed(2))
    g = torch.randn(64, 96, generator=torch.Generator().manual_seed(3))
    one = _run("compiled", x, g)
    monkeypatch.setattr(_norm_compiled, "_MIN_PER_THREAD", 16)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        split = _run("compiled", x, g)
    finally:
        torch.set_num_threads(previous)
    assert all(torch.equal(a, b) for a, b in zip(one, split))  # columns are independent


def test_without_input_gradient_only_parameters_get_one() -> None:
    x = torch.randn(40, 24)
    out = _run("compiled", x, torch.randn(40, 24), x_grad=False)
    assert out[1] is None and out[2] is not None and out[3] is not None


def test_auto_takes_the_torch_ops_for_small_or_non_float32_inputs() -> None:
    previous = kernels.set_backend("auto")
    try:
        assert not _norm_compiled.usable(torch.zeros(8, 8))
        assert not _norm_compiled.usable(torch.zeros(512, 512, dtype=torch.float64))
        assert _norm_compiled.usable(torch.zeros(512, 512))
        kernels.set_backend("torch")
        assert not _norm_compiled.usable(torch.zeros(512, 512))
    finally:
        kernels.set_backend(previous)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_channels_last_batchnorm2d_matches_nn_batchnorm2d(momentum, monkeypatch) -> None:
    """Training output, gradients and running statistics as nn.BatchNorm2d's; eval is nn.BatchNorm2d's own."""
    from hstlab.layers.norm import ChannelsLastBatchNorm2d

    calls: list[str] = []
    original = _norm_compiled.forward
    monkeypatch.setattr(_norm_compiled, "forward", lambda *a: calls.append("forward") or original(*a))
    gen = torch.Generator().manual_seed(4)
    x0 = (torch.randn(6, 12, 9, 7, generator=gen) * 2 + 1).contiguous(memory_format=torch.channels_last)
    g = torch.randn(6, 12, 9, 7, generator=gen)
    results = []
    for cls in (torch.nn.BatchNorm2d, ChannelsLastBatchNorm2d):
        torch.manual_seed(5)
        bn = cls(12, momentum=momentum)
        torch.nn.init.normal_(bn.weight)
        torch.nn.init.normal_(bn.bias)
        previous = kernels.set_backend("compiled")
        try:
            x = x0.clone().requires_grad_(True)
            for _ in range(2):  # two batches: the running statistics' update rule matters
                y = bn(x)
            y.backward(g)
        finally:
            kernels.set_backend(previous)
        bn.eval()
        results.append([y.detach(), x.grad, bn.weight.grad, bn.bias.grad, bn.running_mean, bn.running_var,
                        bn.num_batches_tracked, bn(x0).detach()])
    assert calls == ["forward", "forward"]  # the subclass really ran the compiled rows
    assert y.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=2e-5)
