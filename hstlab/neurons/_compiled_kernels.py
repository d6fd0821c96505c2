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
    """sg[:n] = g(et[:n] - z0), the branch on the surrogate hoisted out of the loops.

    ``code`` and the maths of each branch: ``hstlab.neurons.surrogate.SURROGATES`` (checked by
    tests/test_surrogate_backends.py against each surrogate's ``reference``)."""
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
def plif_bwd(gs, gv, eta, x, u0, kc, cc, theta, thr, hard, ge, detach, code, alpha, decay_input, qstep,
             qlevels, gx, gv0, gr, lo, hi):  # pragma: no cover - compiled
    """LIF backward with per-channel ``k``/``c``; also ``gr`` [M] = Σ_t ∂L/∂H_t ∂H_t/∂r per neuron
    (``∂H_t/∂r = X_t - u_{t-1}`` with ``decay_input``, else ``-u_{t-1}``; ``u_{t-1}`` rebuilt
    from η of the step before exactly as the forward's fire and reset computed it)."""
    T = eta.shape[0]
    C = kc.shape[0]
    one = np.float32(1.0)
    sg = np.empty(_BLOCK, dtype=np.float32)
    kb = np.empty(_BLOCK, dtype=np.float32)
    cb = np.empty(_BLOCK, dtype=np.float32)
    up = np.empty(_BLOCK, dtype=np.float32)
    gh = np.empty(_BLOCK, dtype=np.float32)
    for b0 in range(lo, hi, _BLOCK):
        b1 = min(hi, b0 + _BLOCK)
        n = b1 - b0
        _channel_block(kc, C, b0, n, kb)
        _channel_block(cc, C, b0, n, cb)
        g = gv[b0:b1].copy()  # ∂L/∂V_t, from the last step backwards
        acc = np.zeros(n, dtype=np.float32)  # Σ_t ∂L/∂H_t ∂H_t/∂r
        for t in range(T - 1, -1, -1):
            et, gst = eta[t, b0:b1], gs[t, b0:b1]
            _surrogate_block(code, alpha, theta, et, sg, n)
            if hard and detach:  # ∂L/∂H_t, branches hoisted out of the loops as in lif_bwd
                for j in range(n):
                    gh[j] = gst[j] * sg[j] + g[j] * (one - _fired(et[j], theta, ge))
            elif hard:
                for j in range(n):
                    gh[j] = gst[j] * sg[j] + g[j] * (one - _fired(et[j], theta, ge) - et[j] * sg[j])
            elif detach:
                for j in range(n):
                    gh[j] = gst[j] * sg[j] + g[j]
            else:
                for j in range(n):
                    gh[j] = gst[j] * sg[j] + g[j] * (one - thr * sg[j])
            gxt = gx[t, b0:b1]
            if t > 0 and qstep == 0 and hard and not decay_input:  # the common case in one loop
                ep = eta[t - 1, b0:b1]
                for j in range(n):
                    ghj = gh[j]
                    gxt[j] = cb[j] * ghj
                    g[j] = kb[j] * ghj
                    acc[j] -= ghj * (ep[j] - _fired(ep[j], theta, ge) * ep[j])
                continue
            for j in range(n):
                gxt[j] = cb[j] * gh[j]
                g[j] = kb[j] * gh[j]
            if t > 0:  # u_{t-1}: the reset of step t-1
                ep = eta[t - 1, b0:b1]
                if hard:
                    for j in range(n):
                        up[j] = ep[j] - _fired(ep[j], theta, ge) * ep[j]
                else:
                    for j in range(n):
                        up[j] = ep[j] - thr * _fired(ep[j], theta, ge)
                if qstep > 0:
                    for j in range(n):
                        up[j] = min(max(np.rint(up[j] / qstep), -qlevels), qlevels - 1) * qstep
            else:
                up[:n] = u0[b0:b1]
            if decay_input:
                xt = x[t, b0:b1]
                for j in range(n):
                    acc[j] += gh[j] * (xt[j] - up[j])
            else:
                for j in range(n):
                    acc[j] -= gh[j] * up[j]
        gv0[b0:b1] = g
        gr[b0:b1] = acc


@njit(cache=True, nogil=True, error_model="numpy")
def alif_fwd(x, v0, a0, k, c, vr, thr, beta, rho, hard, ge, qstep, qlevels, keep_theta, s, h, theta, v_out,
             a_out, lo, hi):  # pragma: no cover - compiled
    """Adaptive-threshold LIF forward: θ_t = thr + a_{t-1}, S_t = Θ(H_t - θ_t), a_t = ρ a_{t-1} + β S_t.
    ``theta`` [T, M] is written only with ``keep_theta`` (the backward rebuilds it from H)."""
    T = x.shape[0]
    th = np.empty(_BLOCK, dtype=np.float32)
    for b0 in range(lo, hi, _BLOCK):
        b1 = min(hi, b0 + _BLOCK)
        n = b1 - b0
        v = v0[b0:b1].copy()
        a = a0[b0:b1].copy()
        for t in range(T):
            xt, ht, st = x[t, b0:b1], h[t, b0:b1], s[t, b0:b1]
            for j in range(n):
                th[j] = a[j] + thr
            if hard:  # branches hoisted out of the loops
                for j in range(n):
                    hj = (k * (v[j] - vr) + c * xt[j]) + vr
                    f = _fired(hj, th[j], ge)
                    ht[j] = hj
                    st[j] = f
                    v[j] = hj - f * (hj - vr)
                    a[j] = a[j] * rho + beta * f
            else:
                for j in range(n):
                    hj = (k * (v[j] - vr) + c * xt[j]) + vr
                    f = _fired(hj, th[j], ge)
                    ht[j] = hj
                    st[j] = f
                    v[j] = hj - f * th[j]
                    a[j] = a[j] * rho + beta * f
            if qstep > 0:
                for j in range(n):
                    v[j] = min(max(np.rint((v[j] - vr) / qstep), -qlevels), qlevels - 1) * qstep + vr
            if keep_theta:
                theta[t, b0:b1] = th[:n]
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
            ht, tht = h[t, b0:b1], th[t]
            for j in range(n):
                tj = a[j] + thr
                tht[j] = tj
                a[j] = a[j] * rho + beta * _fired(ht[j], tj, ge)
        g_v = gv[b0:b1].copy()  # ∂L/∂V_t
        g_a = ga[b0:b1].copy()  # ∂L/∂a_t
        for t in range(T - 1, -1, -1):
            ht, gst, gxt, tht = h[t, b0:b1], gs[t, b0:b1], gx[t, b0:b1], th[t]
            for j in range(n):
                z[j] = ht[j] - tht[j]
            _surrogate_block(code, alpha, np.float32(0.0), z, sg, n)
            # g_z = ∂L/∂(H_t - θ_t); ∂L/∂H_t = g_z + g_v ∂V_t/∂H_t; ∂L/∂θ_t = -g_z [- g_v S_t (soft)]
            if detach and hard:  # branches hoisted out of the loops
                for j in range(n):
                    g_z = gst[j] * sg[j]
                    g_h = g_z + g_v[j] * (one - _fired(ht[j], tht[j], ge))
                    g_a[j] = -g_z + rho * g_a[j]  # ∂L/∂a_{t-1}
                    gxt[j] = g_h * c
                    g_v[j] = g_h * k  # ∂L/∂V_{t-1}
            elif detach:
                for j in range(n):
                    g_z = gst[j] * sg[j]
                    g_h = g_z + g_v[j]
                    g_a[j] = (-g_z - g_v[j] * _fired(ht[j], tht[j], ge)) + rho * g_a[j]
                    gxt[j] = g_h * c
                    g_v[j] = g_h * k
            elif hard:  # the spike also reaches the reset (lever H - V_r) and the adaptation
                for j in range(n):
                    f = _fired(ht[j], tht[j], ge)
                    g_z = ((gst[j] + beta * g_a[j]) - g_v[j] * (ht[j] - vr)) * sg[j]
                    g_h = g_z + g_v[j] * (one - f)
                    g_a[j] = -g_z + rho * g_a[j]
                    gxt[j] = g_h * c
                    g_v[j] = g_h * k
            else:  # soft, not detached: lever θ_t
                for j in range(n):
                    f = _fired(ht[j], tht[j], ge)
                    g_z = ((gst[j] + beta * g_a[j]) - g_v[j] * tht[j]) * sg[j]
                    g_h = g_z + g_v[j]
                    g_a[j] = (-g_z - g_v[j] * f) + rho * g_a[j]
                    gxt[j] = g_h * c
                    g_v[j] = g_h * k
        gv0[b0:b1] = g_v
        ga0[b0:b1] = g_a
