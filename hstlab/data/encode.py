"""Static inputs -> spike trains with snnTorch's ``spikegen`` (rate, latency, delta)."""

from __future__ import annotations

import torch
from snntorch import spikegen

from hstlab.registry import Registry

ENCODERS: Registry = Registry("spike encoding")


@ENCODERS.register("rate")
def _rate(x: torch.Tensor, num_steps: int, **kw) -> torch.Tensor:
    if x.min() < 0 or x.max() > 1:
        raise ValueError("x must lie in [0, 1] for method='rate' (it is a firing probability)")
    return spikegen.rate(x, num_steps=num_steps, **kw)


@ENCODERS.register("latency")
def _latency(x: torch.Tensor, num_steps: int, **kw) -> torch.Tensor:
    kw.setdefault("normalize", True)
    kw.setdefault("linear", True)
    return spikegen.latency(x, num_steps=num_steps, **kw)


@ENCODERS.register("delta")
def _delta(x: torch.Tensor, num_steps: int, **kw) -> torch.Tensor:
    if x.shape[0] != num_steps:
        raise ValueError(
            f"method='delta' needs a time-first series x [T, ...] with T == num_steps; "
            f"got x.shape[0]={x.shape[0]}, num_steps={num_steps}"
        )
    return spikegen.delta(x, **kw)


def spike_encode(x: torch.Tensor, method: str = "rate", num_steps: int = 16, **kw) -> torch.Tensor:
    """Spike train ``[num_steps, *x.shape]`` (time first) from a static input, via snnTorch.

    ``rate``: Bernoulli spikes with probability x (x in [0, 1]); ``latency``: one spike per
    element, earlier for larger x; ``delta``: spikes where a time-first series x [T, ...] changes
    by more than ``threshold`` (x must already have T = num_steps). Extra keywords go to spikegen.

    Example:
        >>> s = spike_encode(torch.full((3, 4), 0.5), "rate", num_steps=8)
        >>> tuple(s.shape)
        (8, 3, 4)
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps={num_steps!r} must be an integer >= 1")
    x = torch.as_tensor(x, dtype=torch.float32)
    return ENCODERS.get(method)(x, num_steps, **kw)
