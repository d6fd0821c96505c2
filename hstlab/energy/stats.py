"""Value statistics of one tensor (non-zeros, sum, binary, spike counts), each computed once per tensor
while a measuring pass runs.

Every counter asks the same questions of the tensors it meets (is the input binary? how many
non-zeros? how many spikes?), and a tensor is read by its producer's counter, its reader's counter and
the provenance tracker. While :func:`cached` is open, the answers are kept per tensor object (a weak
reference: nothing here keeps a tensor alive) and per version (an in-place write makes them stale),
and the cache is dropped when the context closes. Outside it every call scans the tensor.

The scans are cheap first: ``aminmax`` rejects a tensor with a negative value or one above 1 before any
exact test, and a binary float tensor's non-zeros are its sum (exact while the sum is below 2**24 in float32).

Example:
    >>> x = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    >>> with cached():
    ...     is_binary(x), nnz(x), total(x), is_spike_count(x)
    (True, 3, 3.0, True)
    >>> is_binary(torch.tensor([0.5, 1.0])), is_spike_count(torch.tensor([2.0, float("inf")]))
    (False, True)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

import torch
from torch.utils.weak import WeakIdKeyDictionary

_CACHE: ContextVar[WeakIdKeyDictionary | None] = ContextVar("hstlab_energy_stats", default=None)
_EXACT_FLOAT_SUM = {torch.float32: 2**24, torch.float64: 2**53}  # integers a float sum keeps exact


@contextlib.contextmanager
def cached() -> Iterator[None]:
    """Keep each tensor's statistics until the context closes (one measuring pass)."""
    token = _CACHE.set(WeakIdKeyDictionary())
    try:
        yield
    finally:
        _CACHE.reset(token)


def _stat(x: torch.Tensor, name: str, compute: Callable[[torch.Tensor], object]) -> object:
    cache = _CACHE.get()
    if cache is None or x.is_inference():  # inference tensors have no version counter
        return compute(x)
    version = x._version
    entry = cache.get(x)
    if entry is None or entry[0] != version:
        entry = (version, {})
        cache[x] = entry
    values = entry[1]
    if name not in values:
        values[name] = compute(x)
    return values[name]


def _dense(x: torch.Tensor) -> torch.Tensor:
    """``x``'s entries as a contiguous 1-D view, in memory order, when its memory is one dense block (a
    permuted or transposed tensor: elementwise scans of it are several times slower); else ``x``. For
    statistics that do not depend on the order of the entries."""
    x = x.detach()
    if x.is_contiguous():
        return x.view(-1)
    order = sorted(range(x.dim()), key=lambda i: (x.stride(i), x.shape[i]), reverse=True)
    y = x.permute(order)
    return y.view(-1) if y.is_contiguous() else x


def _range(x: torch.Tensor) -> tuple[float, float] | None:
    """(min, max) of a non-empty real tensor (NaN when it holds one), None for types aminmax lacks."""
    if x.is_complex() or x.dtype == torch.bool:
        return None
    flat = _dense(x)
    lo, hi = torch.aminmax(flat) if flat.is_contiguous() else (flat.amin(), flat.amax())
    return float(lo), float(hi)


def _is_binary(x: torch.Tensor) -> bool:
    if x.dtype == torch.bool or x.numel() == 0:
        return True
    bounds = _stat(x, "range", _range)
    if bounds is None:
        return bool(((x == 0) | (x == 1)).all())
    lo, hi = bounds
    if not (lo >= 0 and hi <= 1):  # a negative value, one above 1, or NaN
        return False
    if hi == 0 or not x.is_floating_point():  # all zero, or integers in [0, 1]
        return True
    return float(_dense(x).frac().amax()) == 0.0  # in [0, 1]: x - trunc(x) > 0 exactly for 0 < x < 1


def _is_spike_count(x: torch.Tensor) -> bool:
    if x.dtype == torch.bool or x.numel() == 0:
        return True
    if x.is_complex():
        return False
    bounds = _stat(x, "range", _range)
    lo, hi = bounds  # type: ignore[misc]
    if not lo >= 0:  # a negative value or NaN
        return False
    if not x.is_floating_point():
        return True
    if hi == float("inf"):  # frac(inf) is NaN; round(inf) == inf counts it as an integer
        return bool(((x >= 0) & (x == torch.round(x))).all())
    return float(_dense(x).frac().amax()) == 0.0


def _total(x: torch.Tensor) -> float:
    return float(x.sum())


def _nnz(x: torch.Tensor) -> int:
    if x.dtype != torch.bool and not x.is_complex() and x.numel() and is_binary(x):
        # 0/1 values: the sum is the count. Integer sums are exact; a float sum of non-negative
        # integers is exact when it comes out below 2**24 (float32): every partial sum was smaller
        limit = _EXACT_FLOAT_SUM.get(x.dtype, 0) if x.is_floating_point() else None
        s = total(x)
        if limit is None or s < limit:
            return int(s)
    return int(torch.count_nonzero(_dense(x)))


def is_binary(x: torch.Tensor) -> bool:
    """True when every entry is 0 or 1 (an all-zero tensor counts as binary: spikes, none fired)."""
    return bool(_stat(x, "binary", _is_binary))


def is_spike_count(x: torch.Tensor) -> bool:
    """True when every entry is a non-negative integer (spikes, or sums/counts of spikes)."""
    return bool(_stat(x, "count", _is_spike_count))


def total(x: torch.Tensor) -> float:
    """``float(x.sum())``."""
    return float(_stat(x, "sum", _total))  # type: ignore[arg-type]


def nnz(x: torch.Tensor) -> int:
    """Number of non-zero entries."""
    return int(_stat(x, "nnz", _nnz))  # type: ignore[call-overload]
