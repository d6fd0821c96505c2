"""Compiled (numba) training-mode batch norm of a contiguous float32 ``[M, D]`` tensor.

Four passes over memory per forward + backward instead of about fourteen torch ops: the forward
reads x once for float64 sums of x and x² and once to write the output; the backward reads the
output gradient and x once for the two column sums and once to write the input gradient. The
backward recomputes x̂ from the saved x (the preceding layer's output, kept alive anyway) instead of
saving x̂. Used by :class:`hstlab.layers.norm.TokenBatchNorm` under the neuron backend's switch
(:func:`hstlab.neurons.kernels.set_backend`): "torch" keeps the torch ops.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from hstlab.neurons import _compiled, kernels

MIN_NUMEL = 1 << 15  # smaller inputs keep the torch ops (no numba import for tiny models)
# Elements per extra thread: a pass over 2M floats takes ~1 ms on one core, and handing half of
# it to a pool thread cost more than that on a busy 2-core machine (measured: 12 ms vs 3 ms).
_MIN_PER_THREAD = 1 << 23


@functools.cache
def _kernel(name: str):
    from hstlab.layers import _norm_kernels as k

    return getattr(k, name)


def usable(x: Tensor) -> bool:
    """Whether ``x`` [M, D] takes the compiled path under the current backend setting."""
    backend = kernels._backend
    if backend == "torch" or not _compiled.AVAILABLE or x.device.type != "cpu" or x.dtype != torch.float32:
        return False
    return backend == "compiled" or x.numel() >= MIN_NUMEL


def _run_cols(kernel, args: tuple, d: int, work: int) -> None:
    """``kernel(*args, c0, c1)`` over columns [0, d), split across threads for large ``work``."""
    n = max(1, min(torch.get_num_threads(), work // _MIN_PER_THREAD, d // 16))
    if n == 1:
        kernel(*args, 0, d)
        return
    step = -(-d // n)
    step += -step % 16
    ranges = [(lo, min(d, lo + step)) for lo in range(0, d, step)]
    pool = _compiled._get_pool(len(ranges) - 1)
    futures = [pool.submit(kernel, *args, lo, hi) for lo, hi in ranges[1:]]
    kernel(*args, *ranges[0])
    for f in futures:
        f.result()


def _np(t: Tensor) -> np.ndarray:
    return t.detach().numpy()


def forward(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """out [M, D], mean [D], biased var [D] and rstd [D] of batch norm over x's rows."""
    m, d = x.shape
    mean, var = torch.empty(d, dtype=torch.float64), torch.empty(d, dtype=torch.float64)
    _run_cols(_kernel("bn_stats"), (_np(x), _np(mean), _np(var)), d, x.numel())
    rstd = torch.rsqrt(var + eps).to(x.dtype)  # [D]
    mean32 = mean.to(x.dtype)
    scale = weight.detach() * rstd
    out = torch.empty_like(x)
    # a copy of the bias: .numpy() pins a tensor's storage (not resizable), which FSDP2 must free
    _run_cols(_kernel("bn_apply"), (_np(x), _np(mean32), _np(scale.contiguous()), _np(bias.detach().clone()),
                                   _np(out)), d, x.numel())
    return out, mean32, var.to(x.dtype), rstd


def backward(g: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, weight: Tensor,
             need_x: bool) -> tuple[Tensor | None, Tensor, Tensor]:
    """grad_x [M, D] (None unless ``need_x``), grad_weight [D], grad_bias [D]."""
    m, d = x.shape
    g = g.contiguous()
    gsum, gxhat = torch.empty(d, dtype=torch.float64), torch.empty(d, dtype=torch.float64)
    _run_cols(_kernel("bn_grad_sums"), (_np(g), _np(x), _np(mean), _np(rstd), _np(gsum), _np(gxhat)), d, x.numel())
    grad_bias, grad_weight = gsum.to(x.dtype), gxhat.to(x.dtype)
    grad_x = None
    if need_x:
        coef = (weight.detach() * rstd).contiguous()
        a, b = (gsum / m).to(x.dtype), (gxhat / m).to(x.dtype)
        grad_x = torch.empty_like(x)
        _run_cols(_kernel("bn_grad_x"), (_np(g), _np(x), _np(mean), _np(rstd), _np(coef), _np(a), _np(b),
                                        _np(grad_x)), d, x.numel())
    return grad_x, grad_weight, grad_bias
