"""lorenz-spikes: a Poisson population driven by a latent Lorenz system (synthetic, in memory).

A Lorenz system (sigma=10, rho=28, beta=8/3) is integrated with RK4; each trial starts from its
own point on the attractor. The standardised latent z [L+1, 3] drives ``neurons`` Poisson
neurons through a random linear readout and an exponential link:

    rate_n(t) = exp(b_n + W_n . z(t))   [spikes per bin],   counts ~ Poisson(rate)

with baseline rates 5-20 Hz, random unit readout directions and gains 0.3-0.7 (rates mostly
2-60 Hz). One sample is one trial:
``x = counts[:-1]`` [L, C] and ``y = counts[1:]`` [L, C] (next-bin targets; float32 counts);
the true rates of the same bins are ``dataset.rates[i]`` (``[L+1, C]``, per bin) and the
latents ``dataset.latents[i]``. Trials are split 70/15/15 into train/val/test by trial index.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from hstlab.data.frames import check_time_bins

SPLIT_FRACTIONS = (0.7, 0.15, 0.15)


def lorenz_latents(
    n_trials: int, length: int, rng: np.random.Generator, dt: float = 0.01, substeps: int = 2
) -> np.ndarray:
    """Standardised Lorenz trajectories [n_trials, length, 3], one bin = ``dt * substeps``."""

    def f(s: np.ndarray) -> np.ndarray:  # [N, 3]
        x, y, z = s[:, 0], s[:, 1], s[:, 2]
        return np.stack([10.0 * (y - x), x * (28.0 - z) - y, x * y - 8.0 / 3.0 * z], -1)

    def rk4(s: np.ndarray) -> np.ndarray:
        h = dt
        k1 = f(s)
        k2 = f(s + 0.5 * h * k1)
        k3 = f(s + 0.5 * h * k2)
        k4 = f(s + h * k3)
        return s + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)

    s = rng.normal(0.0, 1.0, (n_trials, 3)) + np.array([0.0, 0.0, 25.0])
    for _ in range(500 + int(rng.integers(0, 500))):  # burn in onto the attractor
        s = rk4(s)
    out = np.empty((n_trials, length, 3))
    for t in range(length):
        out[:, t] = s
        for _ in range(substeps):
            s = rk4(s)
    mean = np.array([0.0, 0.0, 23.5])
    std = np.array([7.9, 9.0, 8.6])  # long-run statistics of the attractor
    return (out - mean) / std


class LorenzSpikes(Dataset):
    """Spike counts of a Lorenz-driven Poisson population, for next-bin prediction.

    Example:
        >>> ds = LorenzSpikes("train", time_bins=50, neurons=16, trials=20, seed=0)
        >>> x, y = ds[0]; tuple(x.shape), tuple(y.shape), ds.rates.shape[1:]
        ((50, 16), (50, 16), (51, 16))
    """

    def __init__(
        self,
        split: str = "train",
        time_bins: int = 100,
        *,
        neurons: int = 64,
        bin_ms: float = 10.0,
        trials: int = 200,
        seed: int = 0,
        limit: int | None = None,
    ) -> None:
        time_bins = check_time_bins(time_bins)
        for field_name, v, lo in (("neurons", neurons, 1), ("trials", trials, 3)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{field_name}={v!r} must be an integer >= {lo}")
        if not bin_ms > 0:
            raise ValueError(f"bin_ms={bin_ms!r} must be > 0")
        rng = np.random.default_rng(seed)
        latents = lorenz_latents(trials, time_bins + 1, rng)  # [N, L+1, 3]
        direction = rng.normal(0.0, 1.0, (3, neurons))
        direction /= np.linalg.norm(direction, axis=0, keepdims=True)
        weights = direction * rng.uniform(0.3, 0.7, neurons)  # [3, C] unit readout x gain
        base_hz = rng.uniform(5.0, 20.0, neurons)  # [C]
        log_rate = np.log(base_hz * bin_ms * 1e-3) + latents @ weights  # [N, L+1, C]
        rates = np.exp(log_rate)
        counts = rng.poisson(rates)  # [N, L+1, C]
        cut = np.round(np.cumsum(SPLIT_FRACTIONS)[:-1] * trials).astype(int)
        parts = np.split(np.arange(trials), cut)
        if split not in ("train", "val", "test"):
            raise ValueError(f"split={split!r} is not allowed; allowed: train, val, test")
        keep = parts[("train", "val", "test").index(split)]
        if limit is not None:
            keep = keep[:limit]
        self.split = split
        self.bin_ms = float(bin_ms)
        self.latents = latents[keep].astype(np.float32)  # [N, L+1, 3]
        self.rates = rates[keep].astype(np.float32)  # [N, L+1, C] expected counts per bin
        self.counts = counts[keep].astype(np.float32)  # [N, L+1, C]
        self.readout = weights.astype(np.float32)
        self.base_hz = base_hz.astype(np.float32)

    def __len__(self) -> int:
        return len(self.counts)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        c = torch.from_numpy(self.counts[i])  # [L+1, C]
        return c[:-1], c[1:]

    def true_rates(self, i: int) -> torch.Tensor:
        """Expected counts per bin of the target bins of sample ``i``, [L, C] (aligned with y)."""
        return torch.from_numpy(self.rates[i][1:])
