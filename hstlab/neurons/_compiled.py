"""Optional compiled LIF loops (numba, ``cache=True``) for contiguous float32 CPU tensors.

One pass over memory per direction: the forward reads X and writes S and η = H - V_r; the
backward reads ∂L/∂S, η and S and writes ∂L/∂X with the surrogate computed on the fly. Each
kernel is serial over one range of neurons (time loop outside, a vectorizable neuron loop
inside); large inputs are split in ranges run on a small thread pool (``nogil``) sized by
``torch.get_num_threads()``. No per-step dispatch at all, which also keeps the kernel fast on
a busy machine. Without numba, :data:`AVAILABLE` is False and
:mod:`hstlab.neurons.kernels` uses its pure-torch loops.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

from hstlab.neurons.surrogate import SURROGATES

AVAILABLE = importlib.util.find_spec("numba") is not None  # numba itself is imported on first use
MIN_NUMEL = 1 << 16  # backend "auto": smaller inputs take the torch loops (no numba import/compile)

# Neurons per extra thread. Below 2 * this, the calling thread does it all: at that size one
# core runs the fwd+bwd kernels in ~1.3 ns per neuron-step, and a second thread would compete
# with torch's OpenMP workers, which spin after every parallel torch op (measured: 2-8x slower on a busy box).
_MIN_PER_THREAD = 1 << 18
_pool: ThreadPoolExecutor | None = None
_pool_key = (0, 0)  # (pid, workers): a forked child must not reuse the parent's (dead) threads
_pool_lock = threading.Lock()


@functools.cache
def _kernels():
    """The compiled kernels (numba is imported, and the code compiled or loaded, on first use)."""
    from hstlab.neurons import _compiled_kernels as k

    return k.lif_fwd, k.lif_bwd


# The surrogate branch each compiled backward takes (numba here, Triton in ._gpu), from the one table.
CODES = {name: SURROGATES.get(name).code for name in SURROGATES.names()}


def usable(x: Tensor) -> bool:
    """Whether the compiled loops can take ``x``: float32 on the CPU with a time axis."""
    return AVAILABLE and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() >= 2


def _ranges(m: int) -> list[tuple[int, int]]:
    n = max(1, min(torch.get_num_threads(), m // _MIN_PER_THREAD))
    step = -(-m // n)
    step += -step % 16  # keep ranges 64-byte aligned
    return [(lo, min(m, lo + step)) for lo in range(0, m, step)]


def _get_pool(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_key
    with _pool_lock:
        key = (os.getpid(), workers)
        if _pool is None or _pool_key != key:
            if _pool is not None and _pool_key[0] == key[0]:
                _pool.shutdown(wait=True)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hstlab-lif")
            _pool_key = key
        return _pool


def _run(kernel, args: tuple, m: int) -> None:
    """Run ``kernel(*args, lo, hi)`` over [0, m) split across threads (the caller takes one range)."""
    ranges = _ranges(m)
    if len(ranges) == 1:
        kernel(*args, 0, m)
        return
    pool = _get_pool(len(ranges) - 1)
    futures = [pool.submit(kernel, *args, lo, hi) for lo, hi in ranges[1:]]
    kernel(*args, *ranges[0])
    for f in futures:
        f.result()


@atexit.register
def _shutdown() -> None:  # pragma: no cover - interpreter exit
    if _pool is not None and _pool_key[0] == os.getpid():
        _pool.shutdown(wait=False)


def lif_forward(x: Tensor, u0: Tensor, k: float, c: float, theta: float, thr: float, hard: bool,
                qstep: float = 0.0, qlevels: int = 0, ge: bool = False):
    """Spikes [T, ...], η [T, ...] and the last u [...] (potentials relative to V_r); ``qstep > 0``
    rounds the state to fixed point ``qstep * [-qlevels, qlevels - 1]`` after every step; ``ge``
    fires on ``η >= θ`` instead of ``η > θ``."""
    T = x.shape[0]
    s, eta, u_last = torch.empty_like(x), torch.empty_like(x), torch.empty_like(u0)
    f = np.float32
    x2 = x.detach().reshape(T, -1).numpy()
    args = (x2, u0.detach().reshape(-1).numpy(), f(k), f(c), f(theta), f(thr), hard, bool(ge), f(qstep), f(qlevels),
            s.view(T, -1).numpy(), eta.view(T, -1).numpy(), u_last.view(-1).numpy())
    _run(_kernels()[0], args, x2.shape[1])
    return s, eta, u_last


def lif_backward(g_spikes: Tensor, g_vlast: Tensor | None, eta: Tensor, spikes: Tensor, k: float, c: float,
                 theta: float, thr: float, hard: bool, detach: bool, code: int, alpha: float, ge: bool = False):
    """∂L/∂X [T, ...] and ∂L/∂V_{-1} [...] in one pass (``ge``: the forward's firing rule)."""
    T = eta.shape[0]
    g_x = torch.empty_like(eta)
    g_v0 = torch.empty(eta.shape[1:], dtype=eta.dtype)
    m = g_v0.numel()
    gv = np.zeros(m, dtype=np.float32) if g_vlast is None else g_vlast.detach().reshape(-1).numpy()
    f = np.float32
    args = (g_spikes.detach().reshape(T, -1).numpy(), gv, eta.view(T, -1).numpy(), spikes.view(T, -1).numpy(),
            f(k), f(c), f(theta), f(thr), hard, bool(ge), detach, code, f(alpha), g_x.view(T, -1).numpy(),
            g_v0.view(-1).numpy())
    _run(_kernels()[1], args, m)
    return g_x, g_v0


@functools.cache
def _kernel(name: str):
    """One compiled kernel of :mod:`hstlab.neurons._compiled_kernels` by name (numba imported on first use)."""
    from hstlab.neurons import _compiled_kernels as k

    return getattr(k, name)


def _flat(t: Tensor) -> np.ndarray:
    """``t`` [T, ...] as a [T, M] numpy view (no copy; ``t`` must be contiguous)."""
    return t.detach().view(t.shape[0], -1).numpy()


def _vec(t: Tensor) -> np.ndarray:
    return t.detach().reshape(-1).numpy()


def plif_forward(x: Tensor, u0: Tensor, k: Tensor, c: Tensor, theta: float, thr: float, hard: bool,
                 qstep: float = 0.0, qlevels: int = 0, ge: bool = False):
    """:func:`lif_forward` with per-channel ``k``, ``c`` (float32 [C], broadcast on ``x``'s last dim);
    one channel runs :func:`lif_forward`'s kernel itself (the same arithmetic on scalars)."""
    if k.numel() == 1:
        return lif_forward(x, u0, float(k), float(c), theta, thr, hard, qstep, qlevels, ge)
    s, eta, u_last = torch.empty_like(x), torch.empty_like(x), torch.empty_like(u0)
    f = np.float32
    args = (_flat(x), _vec(u0), _vec(k.contiguous()), _vec(c.contiguous()), f(theta), f(thr), hard, bool(ge),
            f(qstep), f(qlevels), _flat(s), _flat(eta), _vec(u_last))
    _run(_kernel("plif_fwd"), args, u0.numel())
    return s, eta, u_last


def plif_backward(g_spikes: Tensor, g_vlast: Tensor | None, eta: Tensor, x: Tensor | None,
                  u0: Tensor, k: Tensor, c: Tensor, theta: float, thr: float, hard: bool, detach: bool, code: int,
                  alpha: float, decay_input: bool, qstep: float = 0.0, qlevels: int = 0, ge: bool = False):
    """∂L/∂X [T, ...], ∂L/∂V_{-1} [...] and ∂L/∂r per neuron [...] (sum it over all but the channel)."""
    g_x = torch.empty_like(eta)
    g_v0 = torch.empty(eta.shape[1:], dtype=eta.dtype)
    g_r = torch.empty_like(g_v0)
    m = g_v0.numel()
    gv = np.zeros(m, dtype=np.float32) if g_vlast is None else _vec(g_vlast)
    xs = _flat(x) if x is not None else _flat(eta)  # read only with decay_input
    f = np.float32
    args = (_flat(g_spikes), gv, _flat(eta), xs, _vec(u0.contiguous()), _vec(k.contiguous()),
            _vec(c.contiguous()), f(theta), f(thr), hard, bool(ge), detach, code, f(alpha), bool(decay_input),
            f(qstep), f(qlevels), _flat(g_x), _vec(g_v0), _vec(g_r))
    _run(_kernel("plif_bwd"), args, m)
    return g_x, g_v0, g_r


def alif_forward(x: Tensor, v0: Tensor, a0: Tensor, k: float, c: float, v_reset: float, thr: float, beta: float,
                 rho: float, hard: bool, qstep: float, qlevels: int, ge: bool, keep_theta: bool):
    """Spikes, H, θ (empty unless ``keep_theta``) [T, ...] and the last V, a [...] of an ALIF run."""
    s, h, v_last, a_last = torch.empty_like(x), torch.empty_like(x), torch.empty_like(v0), torch.empty_like(a0)
    theta = torch.empty_like(x) if keep_theta else x.new_empty((x.shape[0], 0))
    f = np.float32
    th = _flat(theta) if keep_theta else np.empty((1, 1), dtype=np.float32)
    args = (_flat(x), _vec(v0.contiguous()), _vec(a0.contiguous()), f(k), f(c), f(v_reset), f(thr), f(beta),
            f(rho), hard, bool(ge), f(qstep), f(qlevels), keep_theta, _flat(s), _flat(h), th, _vec(v_last),
            _vec(a_last))
    _run(_kernel("alif_fwd"), args, v0.numel())
    return s, h, theta, v_last, a_last


def alif_backward(g_spikes: Tensor | None, g_vlast: Tensor | None, g_alast: Tensor | None, h: Tensor, a0: Tensor,
                  k: float, c: float, v_reset: float, thr: float, beta: float, rho: float, hard: bool, ge: bool,
                  detach: bool, code: int, alpha: float):
    """∂L/∂X [T, ...], ∂L/∂V_{-1} and ∂L/∂a_{-1} [...] of an ALIF run (θ rebuilt from H and a_0)."""
    g_x = torch.empty_like(h)
    g_v0 = torch.empty(h.shape[1:], dtype=h.dtype)
    g_a0 = torch.empty_like(g_v0)
    m = g_v0.numel()
    zeros = np.zeros(m, dtype=np.float32)
    gs = torch.zeros_like(h) if g_spikes is None else g_spikes
    f = np.float32
    args = (_flat(gs), zeros if g_vlast is None else _vec(g_vlast), zeros if g_alast is None else _vec(g_alast),
            _flat(h), _vec(a0.contiguous()), f(k), f(c), f(v_reset), f(thr), f(beta), f(rho), hard, bool(ge),
            detach, code, f(alpha), _flat(g_x), _vec(g_v0), _vec(g_a0))
    _run(_kernel("alif_bwd"), args, m)
    return g_x, g_v0, g_a0
