"""numba kernels behind :mod:`hstlab.neurons._compiled` (imported only when first needed).

``cache=True`` keeps the compiled code in ``__pycache__`` (or numba's user cache) so later
processes skip compilation. All arithmetic stays in float32 (scalars arrive as ``np.float32``).
"""

import math

import numpy as np
from numba import njit

# Each kernel walks time outside and neurons inside. A span of _SPAN neurons keeps its state
# (u, ∂L/∂V, ...) in L2 while the time loop runs, and each step streams one _SPAN-long row of
# every [T, M] array: long enough for the hardware prefetchers, which stop at every 4 KiB page
# (1,024-neuron rows, one page each, ran the LIF kernels 1.6-1.7x slower). Per-step scratch
# (surrogate values, per-channel constants) is one _CHUNK of neurons at a time, in L1.
_SPAN = 1 << 17
_CHUNK = 1024
_ALIF_SCRATCH = 1 << 16  # floats of rebuilt θ per ALIF backward span (T × span, 256 KiB, in L2)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _fired(e, theta, ge):  # pragma: no cover - compiled
    """S = 1.0 where η fires under the rule (``ge``: η >= θ, else η > θ), as the forward decided."""
    return np.float32(e >= theta) if ge else np.float32(e > theta)


@njit(cache=True, nogil=True, error_model="numpy")
def lif_fwd(x, u0, k, c, theta, thr, hard, ge, qstep, qlevels, s, eta, u_out, lo, hi):  # pragma: no cover
    """qstep > 0: the state is rounded to the fixed-point grid ``qstep * [-qlevels, qlevels - 1]``;
    ``ge``: fire on ``η >= θ`` (else ``η > θ``)."""
    T = x.shape[0]
    for b0 in range(lo, hi, _SPAN):
        b1 = min(hi, b0 + _SPAN)
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

@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _lif_bwd_chunk(gst, sg, et, g, gxt, k, c, theta, thr, hard, ge, detach, n):  # pragma: no cover - compiled
    """One step of one chunk: ∂L/∂H from ∂L/∂S (× surrogate ``sg``) and ∂L/∂V (``g``, updated
    in place to ∂L/∂V_{t-1}); ``gxt`` = c ∂L/∂H."""
    one = np.float32(1.0)
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


@njit(cache=True, nogil=True, error_model="numpy")
def lif_bwd(gs, gv, eta, s, k, c, theta, thr, hard, ge, detach, code, alpha, gx, gv0, lo, hi):  # pragma: no cover
    T = eta.shape[0]
    sg = np.empty(_CHUNK, dtype=np.float32)
    for b0 in range(lo, hi, _SPAN):
        b1 = min(hi, b0 + _SPAN)
        g = gv[b0:b1].copy()  # ∂L/∂V_t, from the last step backwards
        for t in range(T - 1, -1, -1):
            for c0 in range(b0, b1, _CHUNK):
                c1 = min(b1, c0 + _CHUNK)
                n = c1 - c0
                et = eta[t, c0:c1]
                _surrogate_block(code, alpha, theta, et, sg, n)
                _lif_bwd_chunk(gs[t, c0:c1], sg, et, g[c0 - b0:c1 - b0], gx[t, c0:c1], k, c, theta, thr, hard,
                               ge, detach, n)
        gv0[b0:b1] = g


@njit(cache=True, nogil=True, error_model="numpy")
def _channel_table(vals, n):  # pragma: no cover - compiled
    """vals tiled to length ``n + C``: neurons ``i0 .. i0 + n`` have constants ``table[i0 % C:][:n]``."""
    C = vals.shape[0]
    out = np.empty(n + C, dtype=np.float32)
    for j in range(n + C):
        out[j] = vals[j % C]
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def plif_fwd(x, u0, kc, cc, theta, thr, hard, ge, qstep, qlevels, s, eta, u_out, lo, hi):  # pragma: no cover
    """LIF forward with per-channel ``k``/``c`` (arrays of length C, channel = neuron index % C)."""
    T = x.shape[0]
    C = kc.shape[0]
    kt = _channel_table(kc, _CHUNK)
    ct = _channel_table(cc, _CHUNK)
    for b0 in range(lo, hi, _SPAN):
        b1 = min(hi, b0 + _SPAN)
        u = u0[b0:b1].copy()
        for t in range(T):
            for c0 in range(b0, b1, _CHUNK):
                c1 = min(b1, c0 + _CHUNK)
                n = c1 - c0
                p = c0 % C
                kb, cb, uc = kt[p:p + n], ct[p:p + n], u[c0 - b0:c1 - b0]
                xt, et, st = x[t, c0:c1], eta[t, c0:c1], s[t, c0:c1]
                if hard:
                    for j in range(n):
                        e = kb[j] * uc[j] + cb[j] * xt[j]
                        f = _fired(e, theta, ge)
                        et[j] = e
                        st[j] = f
                        uc[j] = e - f * e
                else:
                    for j in range(n):
                        e = kb[j] * uc[j] + cb[j] * xt[j]
                        f = _fired(e, theta, ge)
                        et[j] = e
                        st[j] = f
                        uc[j] = e - thr * f
                if qstep > 0:
                    for j in range(n):
                        uc[j] = min(max(np.rint(uc[j] / qstep), -qlevels), qlevels - 1) * qstep
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
    kt = _channel_table(kc, _CHUNK)
    ct = _channel_table(cc, _CHUNK)
    sg = np.empty(_CHUNK, dtype=np.float32)
    up = np.empty(_CHUNK, dtype=np.float32)
    gh = np.empty(_CHUNK, dtype=np.float32)
    for b0 in range(lo, hi, _SPAN):
        b1 = min(hi, b0 + _SPAN)
        g = gv[b0:b1].copy()  # ∂L/∂V_t, from the last step backwards
        acc = np.zeros(b1 - b0, dtype=np.float32)  # Σ_t ∂L/∂H_t ∂H_t/∂r
        for t in range(T - 1, -1, -1):
            for c0 in range(b0, b1, _CHUNK):
                c1 = min(b1, c0 + _CHUNK)
                n = c1 - c0
                p = c0 % C
                kb, cb = kt[p:p + n], ct[p:p + n]
                gc, ac = g[c0 - b0:c1 - b0], acc[c0 - b0:c1 - b0]
                et, gst, gxt = eta[t, c0:c1], gs[t, c0:c1], gx[t, c0:c1]
                _surrogate_block(code, alpha, theta, et, sg, n)
                if t > 0 and qstep == 0 and hard and detach and not decay_input:  # the common case: one loop
                    ep = eta[t - 1, c0:c1]
                    for j in range(n):
                        ghj = gst[j] * sg[j] + gc[j] * (one - _fired(et[j], theta, ge))
                        gxt[j] = cb[j] * ghj
                        gc[j] = kb[j] * ghj
                        ac[j] -= ghj * (ep[j] - _fired(ep[j], theta, ge) * ep[j])
                    continue
                if hard and detach:  # ∂L/∂H_t, branches hoisted out of the loops as in lif_bwd
                    for j in range(n):
                        gh[j] = gst[j] * sg[j] + gc[j] * (one - _fired(et[j], theta, ge))
                elif hard:
                    for j in range(n):
                        gh[j] = gst[j] * sg[j] + gc[j] * (one - _fired(et[j], theta, ge) - et[j] * sg[j])
                elif detach:
                    for j in range(n):
                        gh[j] = gst[j] * sg[j] + gc[j]
                else:
                    for j in range(n):
                        gh[j] = gst[j] * sg[j] + gc[j] * (one - thr * sg[j])
                if t > 0 and qstep == 0 and hard and not decay_input:  # hard, not detached: two loops
                    ep = eta[t - 1, c0:c1]
                    for j in range(n):
                        ghj = gh[j]
                        gxt[j] = cb[j] * ghj
                        gc[j] = kb[j] * ghj
                        ac[j] -= ghj * (ep[j] - _fired(ep[j], theta, ge) * ep[j])
                    continue
                for j in range(n):
                    gxt[j] = cb[j] * gh[j]
                    gc[j] = kb[j] * gh[j]
                if t > 0:  # u_{t-1}: the reset of step t-1
                    ep = eta[t - 1, c0:c1]
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
                    up[:n] = u0[c0:c1]
                if decay_input:
                    xt = x[t, c0:c1]
                    for j in range(n):
                        ac[j] += gh[j] * (xt[j] - up[j])
                else:
                    for j in range(n):
                        ac[j] -= gh[j] * up[j]
        gv0[b0:b1] = g
        gr[b0:b1] = acc


@njit(cache=True, nogil=True, error_model="numpy")
def alif_fwd(x, v0, a0, k, c, vr, thr, beta, rho, hard, ge, qstep, qlevels, keep_theta, s, h, theta, v_out,
             a_out, lo, hi):  # pragma: no cover - compiled
    """Adaptive-threshold LIF forward: θ_t = thr + a_{t-1}, S_t = Θ(H_t - θ_t), a_t = ρ a_{t-1} + β S_t.
    ``theta`` [T, M] is written only with ``keep_theta`` (the backward rebuilds it from H)."""
    T = x.shape[0]
    th = np.empty(_CHUNK, dtype=np.float32)
    for b0 in range(lo, hi, _SPAN):
        b1 = min(hi, b0 + _SPAN)
        v = v0[b0:b1].copy()
        a = a0[b0:b1].copy()
        for t in range(T):
            for c0 in range(b0, b1, _CHUNK):
                c1 = min(b1, c0 + _CHUNK)
                n = c1 - c0
                vc, ac = v[c0 - b0:c1 - b0], a[c0 - b0:c1 - b0]
                xt, ht, st = x[t, c0:c1], h[t, c0:c1], s[t, c0:c1]
                for j in range(n):
                    th[j] = ac[j] + thr
                if hard:  # branches hoisted out of the loops
                    for j in range(n):
                        hj = (k * (vc[j] - vr) + c * xt[j]) + vr
                        f = _fired(hj, th[j], ge)
                        ht[j] = hj
                        st[j] = f
                        vc[j] = hj - f * (hj - vr)
                        ac[j] = ac[j] * rho + beta * f
                else:
                    for j in range(n):
                        hj = (k * (vc[j] - vr) + c * xt[j]) + vr
                        f = _fired(hj, th[j], ge)
                        ht[j] = hj
                        st[j] = f
                        vc[j] = hj - f * th[j]
                        ac[j] = ac[j] * rho + beta * f
                if qstep > 0:
                    for j in range(n):
                        vc[j] = min(max(np.rint((vc[j] - vr) / qstep), -qlevels), qlevels - 1) * qstep + vr
                if keep_theta:
                    theta[t, c0:c1] = th[:n]
        v_out[b0:b1] = v
        a_out[b0:b1] = a


@njit(cache=True, nogil=True, error_model="numpy")
def alif_bwd(gs, gv, ga, h, a0, k, c, vr, thr, beta, rho, hard, ge, detach, code, alpha, gx, gv0, ga0, lo,
             hi):  # pragma: no cover - compiled
    """Adaptive-threshold LIF backward. Per span, θ_t is first rebuilt from H and a_0 by the
    forward's own recursion (same arithmetic, so the same bits), then the reverse pass runs.
    With a detached reset the rebuild keeps z = H - θ instead (all the reverse pass reads of
    H and θ): ``H > θ`` iff ``z > 0`` and ``H = θ`` iff ``z = 0`` for finite floats (gradual
    underflow), so the spikes it derives are the forward's."""
    T = h.shape[0]
    one, zero = np.float32(1.0), np.float32(0.0)
    sg = np.empty(_CHUNK, dtype=np.float32)
    z = np.empty(_CHUNK, dtype=np.float32)
    span = max(_CHUNK, min(_SPAN, _ALIF_SCRATCH // max(T, 1)))  # θ of a span stays in cache
    th = np.empty((max(T, 1), span), dtype=np.float32)
    for b0 in range(lo, hi, span):
        b1 = min(hi, b0 + span)
        n = b1 - b0
        a = a0[b0:b1].copy()
        for t in range(T):
            ht, tht = h[t, b0:b1], th[t]
            if detach:  # the reverse pass needs only z = H - θ: keep z (S_t = Θ(z) exactly, z is not 0 unless H = θ)
                for j in range(n):
                    tj = a[j] + thr
                    tht[j] = ht[j] - tj
                    a[j] = a[j] * rho + beta * _fired(ht[j], tj, ge)
            else:
                for j in range(n):
                    tj = a[j] + thr
                    tht[j] = tj
                    a[j] = a[j] * rho + beta * _fired(ht[j], tj, ge)
        g_v = gv[b0:b1].copy()  # ∂L/∂V_t
        g_a = ga[b0:b1].copy()  # ∂L/∂a_t
        for t in range(T - 1, -1, -1):
            for c0 in range(b0, b1, _CHUNK):
                c1 = min(b1, c0 + _CHUNK)
                n = c1 - c0
                gst, gxt, tht = gs[t, c0:c1], gx[t, c0:c1], th[t, c0 - b0:c1 - b0]
                gvc, gac = g_v[c0 - b0:c1 - b0], g_a[c0 - b0:c1 - b0]
                if detach:  # tht holds z = H - θ
                    _surrogate_block(code, alpha, zero, tht, sg, n)
                else:
                    ht = h[t, c0:c1]
                    for j in range(n):
                        z[j] = ht[j] - tht[j]
                    _surrogate_block(code, alpha, zero, z, sg, n)
                # g_z = ∂L/∂(H_t - θ_t); ∂L/∂H_t = g_z + g_v ∂V_t/∂H_t; ∂L/∂θ_t = -g_z [- g_v S_t (soft)]
                if detach and hard:  # branches hoisted out of the loops
                    for j in range(n):
                        g_z = gst[j] * sg[j]
                        g_h = g_z + gvc[j] * (one - _fired(tht[j], zero, ge))
                        gac[j] = -g_z + rho * gac[j]  # ∂L/∂a_{t-1}
                        gxt[j] = g_h * c
                        gvc[j] = g_h * k  # ∂L/∂V_{t-1}
                elif detach:
                    for j in range(n):
                        g_z = gst[j] * sg[j]
                        g_h = g_z + gvc[j]
                        gac[j] = (-g_z - gvc[j] * _fired(tht[j], zero, ge)) + rho * gac[j]
                        gxt[j] = g_h * c
                        gvc[j] = g_h * k
                elif hard:  # the spike also reaches the reset (lever H - V_r) and the adaptation
                    for j in range(n):
                        f = _fired(ht[j], tht[j], ge)
                        g_z = ((gst[j] + beta * gac[j]) - gvc[j] * (ht[j] - vr)) * sg[j]
                        g_h = g_z + gvc[j] * (one - f)
                        gac[j] = -g_z + rho * gac[j]
                        gxt[j] = g_h * c
                        gvc[j] = g_h * k
                else:  # soft, not detached: lever θ_t
                    for j in range(n):
                        f = _fired(ht[j], tht[j], ge)
                        g_z = ((gst[j] + beta * gac[j]) - gvc[j] * tht[j]) * sg[j]
                        g_h = g_z + gvc[j]
                        gac[j] = (-g_z - gvc[j] * f) + rho * gac[j]
                        gxt[j] = g_h * c
                        gvc[j] = g_h * k
        gv0[b0:b1] = g_v
        ga0[b0:b1] = g_a
