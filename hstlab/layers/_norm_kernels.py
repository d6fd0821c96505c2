"""numba kernels behind :mod:`hstlab.layers.norm`'s compiled batch norm (imported on first use).

Each kernel works on the columns ``[c0, c1)`` of a contiguous ``[M, D]`` float32 array, rows in
the outer loop and columns in a vectorizable inner loop. Sums accumulate in float64.
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, error_model="numpy")
def bn_stats(x, mean, var, c0, c1):  # pragma: no cover - compiled
    """mean[c], biased var[c] of x[:, c] for c in [c0, c1): one pass of float64 sums of x and x²."""
    m = x.shape[0]
    n = c1 - c0
    s = np.zeros(n, dtype=np.float64)
    q = np.zeros(n, dtype=np.float64)
    for i in range(m):
        row = x[i, c0:c1]
        for j in range(n):
            v = np.float64(row[j])
            s[j] += v
            q[j] += v * v
    for j in range(n):
        mu = s[j] / m
        mean[c0 + j] = mu
        var[c0 + j] = max(q[j] / m - mu * mu, 0.0)


@njit(cache=True, nogil=True, error_model="numpy")
def bn_apply(x, mean, scale, bias, out, c0, c1):  # pragma: no cover - compiled
    """out = (x - mean) * scale + bias on columns [c0, c1) (scale = weight * rstd)."""
    m = x.shape[0]
    n = c1 - c0
    mu, sc, b = mean[c0:c1], scale[c0:c1], bias[c0:c1]
    for i in range(m):
        row, o = x[i, c0:c1], out[i, c0:c1]
        for j in range(n):
            o[j] = (row[j] - mu[j]) * sc[j] + b[j]


@njit(cache=True, nogil=True, error_model="numpy")
def bn_grad_sums(g, x, mean, rstd, gsum, gxhat, c0, c1):  # pragma: no cover - compiled
    """gsum[c] = Σ_i g[i, c], gxhat[c] = Σ_i g[i, c] x̂[i, c] with x̂ = (x - mean) rstd (float64 sums)."""
    m = g.shape[0]
    n = c1 - c0
    s = np.zeros(n, dtype=np.float64)
    p = np.zeros(n, dtype=np.float64)
    mu, r = mean[c0:c1], rstd[c0:c1]
    for i in range(m):
        gr, xr = g[i, c0:c1], x[i, c0:c1]
        for j in range(n):
            gv = np.float64(gr[j])
            s[j] += gv
            p[j] += gv * np.float64((xr[j] - mu[j]) * r[j])
    for j in range(n):
        gsum[c0 + j] = s[j]
        gxhat[c0 + j] = p[j]


@njit(cache=True, nogil=True, error_model="numpy")
def bn_grad_x(g, x, mean, rstd, coef, a, b, dx, c0, c1):  # pragma: no cover - compiled
    """dx = coef * (g - a - x̂ b) on columns [c0, c1) (coef = w rstd, a = Σg / M, b = Σg x̂ / M)."""
    m = g.shape[0]
    n = c1 - c0
    mu, r, cf, aa, bb = mean[c0:c1], rstd[c0:c1], coef[c0:c1], a[c0:c1], b[c0:c1]
    for i in range(m):
        gr, xr, o = g[i, c0:c1], x[i, c0:c1], dx[i, c0:c1]
        for j in range(n):
            o[j] = cf[j] * (gr[j] - aa[j] - (xr[j] - mu[j]) * r[j] * bb[j])
