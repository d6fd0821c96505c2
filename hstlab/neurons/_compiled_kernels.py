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


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _channel_block(vals, C, b0, n, out):  # pragma: no cover - compiled
    """out[:n] = vals[(b0 + j) % C]: the per-channel constant of each neuron of a block."""
    for j in range(n):
        out[j] = vals[(b0 + j) % C]


@njit(cache=True, nogil=True, error_model="numpy")
def plif_fwd(x, u0, kc, cc, theta, thr, hard, ge, qstep, qlevels, s, eta, u_out, lo, hi):  # pragma: no cover
    """LIF forward with per-channel ``k``/``c`` (arrays of length C, channel = neuron index % C)."""
    T = x.shape[0]
    C = kc.shape[0]
    kb = np.empty(_BLOCK, dtype=np.float32)
    cb = np.empty(_BLOCK, dtype=np.float32)
    for b0 in range(lo, hi, _BLOCK):
        b1 = min(hi, b0 + _BLOCK)
        n = b1 - b0
        _channel_block(kc, C, b0, n, kb)
        _channel_block(cc, C, b0, n, cb)
        u = u0[b0:b1].copy()
        for t in range(T):
            xt, et, st = x[t, b0:b1], eta[t, b0:b1], s[t, b0:b1]
            if hard:
                for j in range(n):
                    e = kb[j] * u[j] + cb[j] * xt[j]
                    f = _fired(e, theta, ge)
                    et[j] = e
                    st[j] = f
                    u[j] = e - f * e
            else:
                for j in range(n):
                    e = kb[j] * u[j] + cb[j] * xt[j]
                    f = _fired(e, theta, ge)
                    et[j] = e
                    st[j] = f
                    u[j] = e - thr * f
            if qstep > 0:
                for j in range(n):
                    u[j] = min(max(np.rint(u[j] / qstep), -qlevels), qlevels - 1) * qstep
        u_out[b0:b1] = u


@njit(cache=True, nogil=True, error_model="numpy")
def plif_bwd(gs, gv, eta, s, x, u0, kc, cc, theta, thr, hard, ge, detach, code, alpha, decay_input, qstep,
             qlevels, gx, gv0, gr, lo, hi):  # pragma: no cover - compiled
    """LIF backward with per-channel ``k``/``c``; also ``gr`` [M] = Σ_t ∂L/∂H_t ∂H_t/∂r per neuron
    (``∂H_t/∂r = X_t - u_{t-1}`` with ``decay_input``, else ``-u_{t-1}``; ``u_{t-1}`` rebuilt
    from η and S of the step before, as the forward's reset left it)."""
    T = eta.shape[0]
    C = kc.shape[0]
    one = np.float32(1.0)
    sg = np.empty(_BLOCK, dtype=np.float32)
    kb = np.empty(_BLOCK, dtype=np.float32)
    cb = np.empty(_BLOCK, dtype=np.float32)
    up = np.empty(_BLOCK, dtype=np.float32)
    for b0 in range(lo, hi, _BLOCK):
        b1 = min(hi, b0 + _BLOCK)
        n = b1 - b0
        _channel_block(kc, C, b0, n, kb)
        _channel_block(cc, C, b0, n, cb)
        g = gv[b0:b1].copy()  # ∂L/∂V_t, from the last step backwards
        acc = np.zeros(n, dtype=np.float32)  # Σ_t ∂L/∂H_t ∂H_t/∂r
        for t in range(T - 1, -1, -1):
            et, gst, gxt = eta[t, b0:b1], gs[t, b0:b1], gx[t, b0:b1]
            _surrogate_block(code, alpha, theta, et, sg, n)
            if t > 0:  # u_{t-1}: the reset of step t-1
                ep, sp = eta[t - 1, b0:b1], s[t - 1, b0:b1]
                if hard:
                    for j in range(n):
                        up[j] = ep[j] - sp[j] * ep[j]
                else:
                    for j in range(n):
                        up[j] = ep[j] - thr * sp[j]
                if qstep > 0:
                    for j in range(n):
                        up[j] = min(max(np.rint(up[j] / qstep), -qlevels), qlevels - 1) * qstep
            else:
                up[:n] = u0[b0:b1]
            for j in range(n):
                f = _fired(et[j], theta, ge)
                if hard and detach:
                    dvdh = one - f
                elif hard:
                    dvdh = one - f - et[j] * sg[j]
                elif detach:
                    dvdh = one
                else:
                    dvdh = one - thr * sg[j]
                gh = gst[j] * sg[j] + g[j] * dvdh
                gxt[j] = cb[j] * gh
                g[j] = kb[j] * gh
                if decay_input:
                    acc[j] += gh * (x[t, b0 + j] - up[j])
                else:
                    acc[j] -= gh * up[j]
        gv0[b0:b1] = g
        gr[b0:b1] = acc


@njit(cache=True, nogil=True, error_model="numpy")
def alif_fwd(x, v0, a0, k, c, vr, thr, beta, rho, hard, ge, qstep, qlevels, keep_theta, s, h, theta, v_out,
             a_out, lo, hi):  # pragma: no cover - compiled
    """Adaptive-threshold LIF forward: θ_t = thr + a_{t-1}, S_t = Θ(H_t - θ_t), a_t = ρ a_{t-1} + β S_t.
    ``theta`` [T, M] is written only with ``keep_theta`` (the backward rebuilds it from H)."""
    T = x.shape[0]
    for b0 in range(lo, hi, _BLOCK):
        b1 = min(hi, b0 + _BLOCK)
        n = b1 - b0
        v = v0[b0:b1].copy()
        a = a0[b0:b1].copy()
        for t in range(T):
            xt, ht, st = x[t, b0:b1], h[t, b0:b1], s[t, b0:b1]
            for j in range(n):
                hj = (k * (v[j] - vr) + c * xt[j]) + vr
                th = a[j] + thr
                f = _fired(hj, th, ge)
                ht[j] = hj
                st[j] = f
                if hard:
                    vj = hj - f * (hj - vr)
                else:
                    vj = hj - f * th
                if qstep > 0:
                    vj = min(max(np.rint((vj - vr) / qstep), -qlevels), qlevels - 1) * qstep + vr
                v[j] = vj
                a[j] = a[j] * rho + beta * f
                if keep_theta:
                    theta[t, b0 + j] = th
        v_out[b0:b1] = v
        a_out[b0:b1] = a


@njit(cache=True, nogil=True, error_model="numpy")
def alif_bwd(gs, gv, ga, h, a0, k, c, vr, thr, beta, rho, hard, ge, detach, code, alpha, gx, gv0, ga0, lo,
             hi):  # pragma: no cover - compiled
    """Adaptive-threshold LIF backward. Per block, θ_t is first rebuilt from H and a_0 by the
    forward's own recursion (same arithmetic, so the same bits), then the reverse pass runs."""
    T = h.shape[0]
    one = np.float32(1.0)
    sg = np.empty(_BLOCK, dtype=np.float32)
    z = np.empty(_BLOCK, dtype=np.float32)
    th = np.empty((max(T, 1), _BLOCK), dtype=np.float32)  # θ_t of the block (stays in cache)
    for b0 in range(lo, hi, _BLOCK):
        b1 = min(hi, b0 + _BLOCK)
        n = b1 - b0
        a = a0[b0:b1].copy()
        for t in range(T):
            ht = h[t, b0:b1]
            for j in range(n):
                tj = a[j] + thr
                th[t, j] = tj
                a[j] = a[j] * rho + beta * _fired(ht[j], tj, ge)
        g_v = gv[b0:b1].copy()  # ∂L/∂V_t
        g_a = ga[b0:b1].copy()  # ∂L/∂a_t
        for t in range(T - 1, -1, -1):
            ht, gst, gxt, tht = h[t, b0:b1], gs[t, b0:b1], gx[t, b0:b1], th[t]
            for j in range(n):
                z[j] = ht[j] - tht[j]
            _surrogate_block(code, alpha, np.float32(0.0), z, sg, n)
            for j in range(n):
                f = _fired(ht[j], tht[j], ge)
                g_spike = gst[j]
                if not detach:
                    lever = (ht[j] - vr) if hard else tht[j]  # ∂V_t/∂S_t = -lever
                    g_spike = g_spike + beta * g_a[j] - g_v[j] * lever
                g_z = g_spike * sg[j]  # ∂L/∂(H_t - θ_t)
                keep = (one - f) if hard else one  # ∂V_t/∂H_t (direct)
                g_h = g_z + g_v[j] * keep
                g_theta = -g_z
                if not hard:
                    g_theta = g_theta - g_v[j] * f
                g_a[j] = g_theta + rho * g_a[j]  # ∂L/∂a_{t-1}
                gxt[j] = g_h * c
                g_v[j] = g_h * k  # ∂L/∂V_{t-1}
        gv0[b0:b1] = g_v
        ga0[b0:b1] = g_a
