"""Optional fused LIF loops for CUDA tensors (Triton), the GPU counterpart of :mod:`._compiled`.

On a GPU the torch loops launch a few kernels per time step (about 80 for T = 16, forward and
backward), which costs more than the arithmetic. Here one kernel runs the whole forward and one
the whole backward: each program owns a block of neurons and keeps their membrane in registers
through the time loop, reading X (and ∂L/∂S, η) once and writing S, η (and ∂L/∂X) once.
Same maths, same arguments and same float32 arithmetic as the numba loops (divisions are
correctly rounded, ``div_rn``: Triton's default float32 ``/`` is approximate), so both compiled
paths give the torch loops' spikes. Without Triton (e.g. CPU-only or Windows builds of
PyTorch) :data:`AVAILABLE` is False and the torch loops run.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import warnings
from typing import Any

import torch
from torch import Tensor

AVAILABLE = importlib.util.find_spec("triton") is not None  # imported on first use
_BLOCK = 512  # neurons per program (surrogate codes: ._compiled.CODES, from the SURROGATES table)


def usable(x: Tensor) -> bool:
    """Whether the Triton loops can take ``x``: float32 on a CUDA device with a time axis, and the
    kernels compiled and ran there (checked once per device, see :func:`_works_on`)."""
    return AVAILABLE and x.is_cuda and x.dtype == torch.float32 and x.dim() >= 2 and _works_on(x.device)


@functools.cache
def _works_on(device: torch.device) -> bool:
    """Compile and run both kernels once on a tiny input; any failure (an old Triton, an unsupported
    GPU) warns once and leaves that device to the torch loops instead of breaking training."""
    try:
        x = torch.tensor([[0.5, 3.0], [2.0, -1.0]], device=device)  # [T=2, 2 neurons]
        s, eta, _ = lif_forward(x, torch.zeros(2, device=device), 0.5, 1.0, 1.0, 1.0, True)  # k=1/2, θ=1, hard
        g_x, _ = lif_backward(torch.ones_like(x), None, eta, s, 0.5, 1.0, 1.0, 1.0, True, True, 0, 2.0)
        _, _, u_q = lif_forward(x, torch.zeros(2, device=device), 0.5, 1.0, 1.0, 1.0, False, 0.25, 8)
        tie = torch.tensor([[1.0], [0.5]], device=device)  # η = 1 = θ: fires under ">="; then η = 0.5
        s_tie, eta_tie, _ = lif_forward(tie, torch.zeros(1, device=device), 0.5, 1.0, 1.0, 1.0, True, ge=True)
        g_tie, _ = lif_backward(torch.ones_like(tie), None, eta_tie, s_tie, 0.5, 1.0, 1.0, 1.0, True, True, 0, 2.0,
                                ge=True)
        # by hand: η = [0.5, 3], then [2.25, -1]; atan surrogate with α=2 is g(z) = 1 / (1 + (π z)²)
        g = [1.0 / (1.0 + (math.pi * z) ** 2) for z in (-0.5, 2.0, 1.25, -2.0)]
        expected_g = torch.tensor([[g[0] + 0.5 * g[2], g[1]], [g[2], g[3]]], device=device)
        # soft reset on a grid of step 0.25, levels -8..7: u = [0.5, 2.0 -> 1.75 (saturates)], then
        # η = [2.25, -0.125]: u = [1.25, -0.125 = -0.5 steps -> 0 (a tie, rounded to even)]
        # the tie fired, so the hard reset cuts step 1's gradient from step 0: ∂L/∂X = [g(0), g(-0.5)]
        expected_tie = torch.tensor([[1.0], [1.0 / (1.0 + (math.pi * 0.5) ** 2)]], device=device)
        ok = (torch.equal(s, torch.tensor([[0.0, 1.0], [1.0, 0.0]], device=device))
              and torch.allclose(g_x, expected_g, rtol=1e-5, atol=1e-7)
              and torch.equal(u_q, torch.tensor([1.25, 0.0], device=device))
              and torch.equal(s_tie, torch.tensor([[1.0], [0.0]], device=device))
              and torch.allclose(g_tie, expected_tie, rtol=1e-5, atol=1e-7))
        reason = "" if ok else (f"wrong results: spikes {s.tolist()}, grads {g_x.tolist()}, fixed point {u_q.tolist()}, "
                                f"tie {s_tie.tolist()} / {g_tie.tolist()}")
    except Exception as err:  # noqa: BLE001 - any compiler or driver error means: do not use these loops
        ok, reason = False, f"{type(err).__name__}: {err}"
    if not ok:
        warnings.warn(f"hstlab: the Triton LIF loops do not work on {device} ({reason}); "
                      "using the torch loops there", RuntimeWarning, stacklevel=3)
    return ok


@functools.cache
def _kernels() -> tuple[Any, Any]:
    """Compile-on-first-call kernels (Triton is imported here, not at hstlab import)."""
    import triton
    import triton.language as tl

    @triton.jit
    def _round_half_even(v):
        r = tl.floor(v)
        d = v - r  # exact for |v| < 2**23
        odd = (r - 2.0 * tl.floor(r * 0.5)) != 0.0
        return tl.where((d > 0.5) | ((d == 0.5) & odd), r + 1.0, r)  # ties to even, as torch.round / np.rint

    @triton.jit
    def _fired(e, theta, GE: tl.constexpr):
        """1.0 where η fires under the rule (GE: η >= θ, SpikingJelly; else η > θ, snnTorch)."""
        if GE:
            return (e >= theta).to(tl.float32)
        return (e > theta).to(tl.float32)

    @triton.jit
    def lif_fwd(x_ptr, u0_ptr, s_ptr, eta_ptr, u_out_ptr, M, T, k, c, theta, thr, qstep, qlevels,
                HARD: tl.constexpr, QUANT: tl.constexpr, GE: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < M
        u = tl.load(u0_ptr + offs, mask=mask, other=0.0)
        x_row, s_row, e_row = x_ptr + offs, s_ptr + offs, eta_ptr + offs  # step 0 of the [T, M] rows
        for _ in range(T):
            e = k * u + c * tl.load(x_row, mask=mask, other=0.0)  # charge: η_t = k u_{t-1} + c X_t
            f = _fired(e, theta, GE)  # fire
            tl.store(e_row, e, mask=mask)
            tl.store(s_row, f, mask=mask)
            if HARD:  # reset
                u = e - f * e
            else:
                u = e - thr * f
            if QUANT:  # round to the saturating grid qstep * [-qlevels, qlevels - 1]
                level = _round_half_even(tl.math.div_rn(u, qstep))
                u = tl.minimum(tl.maximum(level, -qlevels), qlevels - 1.0) * qstep
            x_row += M
            s_row += M
            e_row += M
        tl.store(u_out_ptr + offs, u, mask=mask)

    @triton.jit
    def lif_bwd(gs_ptr, gv_ptr, eta_ptr, gx_ptr, gv0_ptr, M, T, last, k, c, theta, thr, alpha,
                HARD: tl.constexpr, DETACH: tl.constexpr, CODE: tl.constexpr, GE: tl.constexpr,
                BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < M
        g = tl.load(gv_ptr + offs, mask=mask, other=0.0)  # ∂L/∂V_t, from the last step backwards
        gs_row, e_row, gx_row = gs_ptr + last + offs, eta_ptr + last + offs, gx_ptr + last + offs
        for _ in range(T):
            et = tl.load(e_row, mask=mask, other=0.0)
            z = et - theta
            if CODE == 0:  # atan: α/2 / (1 + (π/2 α z)²)
                w = (1.5707963267948966 * alpha) * z
                sg = (alpha * 0.5) / (1.0 + w * w)
            elif CODE == 1:  # sigmoid: α e^{-α|z|} / (1 + e^{-α|z|})²
                ez = tl.exp(-alpha * tl.abs(z))
                sg = alpha * ez / ((1.0 + ez) * (1.0 + ez))
            elif CODE == 2:  # fast sigmoid: 1 / (1 + α|z|)²
                d = 1.0 + alpha * tl.abs(z)
                sg = 1.0 / (d * d)
            else:  # triangle: α max(0, 1 - α|z|)
                sg = tl.maximum(0.0, alpha * (1.0 - alpha * tl.abs(z)))
            gst = tl.load(gs_row, mask=mask, other=0.0)
            fired = _fired(et, theta, GE)
            if HARD and DETACH:  # dV/dH = 1 - S
                gh = gst * sg + g * (1.0 - fired)
            elif HARD:  # dV/dH = 1 - S + (V_r - H) g
                gh = gst * sg + g * (1.0 - fired - et * sg)
            elif DETACH:  # soft: dV/dH = 1
                gh = gst * sg + g
            else:  # soft: dV/dH = 1 - θ g
                gh = gst * sg + g * (1.0 - thr * sg)
            tl.store(gx_row, c * gh, mask=mask)
            g = k * gh
            gs_row -= M
            e_row -= M
            gx_row -= M
        tl.store(gv0_ptr + offs, g, mask=mask)

    return lif_fwd, lif_bwd


def _grid(m: int) -> tuple[int]:
    return (max(1, -(-m // _BLOCK)),)


def lif_forward(x: Tensor, u0: Tensor, k: float, c: float, theta: float, thr: float, hard: bool,
                qstep: float = 0.0, qlevels: int = 0, ge: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Spikes [T, ...], η [T, ...] and the last u [...] (potentials relative to V_r); see ._compiled."""
    T = x.shape[0]
    s, eta, u_last = torch.empty_like(x), torch.empty_like(x), torch.empty_like(u0)
    m = u_last.numel()
    if m:
        with torch.cuda.device(x.device):  # Triton launches on the current device
            _kernels()[0][_grid(m)](x, u0, s, eta, u_last, m, T, float(k), float(c), float(theta), float(thr),
                                    float(qstep) if qstep > 0 else 1.0, float(qlevels), HARD=bool(hard),
                                    QUANT=qstep > 0, GE=bool(ge), BLOCK=_BLOCK)
    return s, eta, u_last


def lif_backward(g_spikes: Tensor, g_vlast: Tensor | None, eta: Tensor, spikes: Tensor, k: float, c: float,
                 theta: float, thr: float, hard: bool, detach: bool, code: int, alpha: float,
                 ge: bool = False) -> tuple[Tensor, Tensor]:
    """∂L/∂X [T, ...] and ∂L/∂V_{-1} [...] in one kernel (``spikes`` is recomputed from η)."""
    T = eta.shape[0]
    g_x = torch.empty_like(eta)
    g_v0 = torch.empty(eta.shape[1:], dtype=eta.dtype, device=eta.device)
    m = g_v0.numel()
    gv = torch.zeros_like(g_v0) if g_vlast is None else g_vlast.contiguous()
    if m:
        with torch.cuda.device(eta.device):
            _kernels()[1][_grid(m)](g_spikes.contiguous(), gv, eta, g_x, g_v0, m, T, (T - 1) * m, float(k), float(c),
                                    float(theta), float(thr), float(alpha), HARD=bool(hard), DETACH=bool(detach),
                                    CODE=int(code), GE=bool(ge), BLOCK=_BLOCK)
    return g_x, g_v0
