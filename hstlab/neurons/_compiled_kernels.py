"""numba kernels behind :mod:`hstlab.neurons._compiled` (imported only when first needed).

``cache=True`` keeps the compiled code in ``__pycache__`` (or numba's user cache) so later
processes skip compilation. All arithmetic stays in float32 (scalars arrive as ``np.float32``).
"""

import math

import numpy as np
from numba import njit

_BLOCK = 1024  # neurons per inner block: the block's rows stay in L1 while the time loop runs


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _fired(e, theta, ge):  # pragma: no cover - compiled
    """S = 1.0 where η fires under the rule (``ge``: η >= θ, else η > θ), as the forward decided."""
    return np.float32(e >= theta) if ge else np.float32(e > theta)


@njit(cache=True, nogil=True, error_model="numpy")
def lif_fwd(x, u0, k, c, theta, thr, hard, ge, qstep, qlevels, s, eta, u_out, lo, hi):  # pragma: no cover
    """qstep > 0: the state is rounded to the fixed-point grid ``qstep * [-qlevels, qlevels - 1]``;
    ``ge``: fire on ``η >= θ`` (else ``η > θ``)."""
    T = x.shape[0]
    for b0 in range(lo, hi, _BLOCK):
        b1 = min(hi, b0 + _BLOCK)
        u = u0[b0:b1].copy()
        n = b1 - b0
        for t in range(T):
            xt, et, st = x[t, b0:b1], eta[t, b0:b1], s[t, b0:b1]
            if hard:  # charge, fire, reset in one pass (branch hoisted out of the loop)
                for j in range(n):
                    e = k * u[j] + c * xt[j]
                    f = _fired(e, theta, ge)
                    et[j] = e
                    st[j] = f
                    u[j] = e - f * e
            else:
                for j in range(n):
                    e = k * u[j] + c * xt[j]
                    f = _fired(e, theta, ge)
                    et[j] = e
                    st[j] = f
                    u[j] = e - thr * f
            if qstep > 0:
                for j in range(n):
                    u[j] = min(max(np.rint(u[j] / qstep), -qlevels), qlevels - 1) * qstep
        u_out[b0:b1] = u

@njit(cache=True, nogil=True, error_model="numpy")
def _surrogate_block(code, alpha, z0, et, sg, n):  # pragma: no cover - compiled
    """sg[:n] = g(et[:n] - z0), the branch on the surrogate hoisted out of the loops."""
    one = np.float32(1.0)
    if code == 0:  # atan: α/2 / (1 + (π/2 α z)²)
        a = np.float32(math.pi / 2) * alpha
        half = alpha * np.float32(0.5)
        for j in range(n):
            w = a * (et[j] - z0)
            sg[j] = half / (one + w * w)
    elif code == 1:  # sigmoid: α σ(αz) σ(-αz) = α e^{-α|z|} / (1 + e^{-α|z|})²
        for j in range(n):
            ez = np.exp(-alpha * abs(et[j] - z0))
            sg[j] = alpha * ez / ((one + ez) * (one + ez))
    elif code == 2:  # fast sigmoid: 1 / (1 + α|z|)²
        for j in range(n):
            d = one + alpha * abs(et[j] - z0)
            sg[j] = one / (d * d)
    else:  # triangle: α max(0, 1 - α|z|)
        for j in range(n):
            sg[j] = max(np.float32(0.0), alpha * (one - alpha * abs(et[j] - z0)))

@njit(cache=True, nogil=True, error_model="numpy")
def lif_bwd(gs, gv, eta, s, k, c, theta, thr, hard, ge, detach, code, alpha, gx, gv0, lo, hi):  # pragma: no cover
    T = eta.shape[0]
    one = np.float32(1.0)
    sg = np.empty(_BLOCK, dtype=np.float32)
    for b0 in range(lo, hi, _BLOCK):
        b1 = min(hi, b0 + _BLOCK)
        n = b1 - b0
        g = gv[b0:b1].copy()  # ∂L/∂V_t, from the last step backwards
        for t in range(T - 1, -1, -1):
            et, gst, gxt = eta[t, b0:b1], gs[t, b0:b1], gx[t, b0:b1]
            _surrogate_block(code, alpha, theta, et, sg, n)
            if hard and detach:  # dV/dH = 1 - S
                for j in range(n):
                    gh = gst[j] * sg[j] + g[j] * (one - _fired(et[j], theta, ge))  # S from η: one stream less
                    gxt[j] = c * gh
                    g[j] = k * gh
            elif hard:  # dV/dH = 1 - S + (V_r - H) g
                for j in range(n):
                    gh = gst[j] * sg[j] + g[j] * (one - _fired(et[j], theta, ge) - et[j] * sg[j])
                    gxt[j] = c * gh
                    g[j] = k * gh
            elif detach:  # soft: dV/dH = 1
                for j in range(n):
                    gh = gst[j] * sg[j] + g[j]
                    gxt[j] = c * gh
                    g[j] = k * gh
            else:  # soft: dV/dH = 1 - θ g
                for j in range(n):
                    gh = gst[j] * sg[j] + g[j] * (one - thr * sg[j])
                    gxt[j] = c * gh
                    g[j] = k * gh
        gv0[b0:b1] = g
