"""A DVS pixel model: log-intensity change detectors with mismatch, refractory period and noise.

Each pixel keeps the log intensity it saw at its last reset (its memory). When the present log
intensity differs from the memory by more than the pixel's ON (or OFF) contrast threshold the
pixel emits an ON (or OFF) event, resets its memory to the present level and stays blind for a
refractory period (its memory follows the input meanwhile). Thresholds differ from pixel to
pixel (Gaussian mismatch). Event times are interpolated inside a simulation step to the moment
the threshold was crossed, so timestamps have microsecond resolution. Background-noise events
arrive at a low Poisson rate per pixel, with random polarity.

The loop runs over time only; all pixels of all samples in a batch are updated at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DVSPixelModel:
    """Parameters of the pixel model (contrasts in natural-log units, times in microseconds).

    Example:
        >>> import numpy as np
        >>> model = DVSPixelModel(threshold=0.2, mismatch=0.0, noise_hz=0.0)
        >>> ramp = lambda k: np.full((1, 1, 1), 0.01 * k)  # log intensity rising 0.01 per step
        >>> ev = model.simulate(ramp, n_steps=110, dt_us=1000, rngs=[np.random.default_rng(0)])
        >>> int(ev[0]["p"].sum()), len(ev[0])   # rises by 1.1: floor(1.1 / 0.2) = 5 ON, no OFF
        (5, 5)
    """

    threshold: float = 0.3
    mismatch: float = 0.03
    refractory_us: float = 1000.0
    noise_hz: float = 1.0
    latency_jitter_us: float = 50.0

    def thresholds(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        """Per-pixel ON and OFF thresholds, [2, H, W], drawn with mismatch and kept >= 1/4 nominal."""
        th = self.threshold + self.mismatch * rng.standard_normal((2, *shape))
        return np.maximum(th, 0.25 * self.threshold)

    def simulate(
        self,
        log_intensity: Callable[[int], np.ndarray],
        n_steps: int,
        dt_us: float,
        rngs: list[np.random.Generator],
    ) -> list[np.ndarray]:
        """Run the pixels over ``n_steps`` steps of ``dt_us``.

        Args:
            log_intensity: step k -> log intensity [B, H, W] at time k * dt_us (k = 0..n_steps).
            rngs: one generator per sample (thresholds, noise and jitter depend only on it).

        Returns:
            B structured arrays with fields x, y, t (int us), p (1 = ON), sorted by time.
        """
        level = np.asarray(log_intensity(0), dtype=np.float32)  # [B, H, W]
        B, H, W = level.shape
        if len(rngs) != B:
            raise ValueError(f"rngs has {len(rngs)} generators; expected one per sample ({B})")
        th = np.stack([self.thresholds(r, (H, W)) for r in rngs], 1).astype(np.float32)  # [2,B,H,W]
        th_on, th_off = th[0], th[1]
        memory = level.copy()  # [B, H, W]
        blind_until = np.full((B, H, W), -np.inf)  # [B, H, W]
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (flat index, t, p)
        for k in range(1, n_steps + 1):
            t_prev, t_now = (k - 1) * dt_us, k * dt_us
            new = np.asarray(log_intensity(k), dtype=np.float32)  # [B, H, W]
            held = blind_until >= t_now
            d_now = new - memory
            on = (d_now >= th_on) & ~held
            off = (d_now <= -th_off) & ~held
            fire = np.flatnonzero(on | off)
            if len(fire):
                pol = on.ravel()[fire]
                dn = d_now.ravel()[fire]
                dp = level.ravel()[fire] - memory.ravel()[fire]
                target = np.where(pol, th_on.ravel()[fire], -th_off.ravel()[fire])
                frac = np.clip((target - dp) / (dn - dp + 1e-12), 0.0, 1.0)
                t_ev = np.maximum(t_prev + frac * dt_us, blind_until.ravel()[fire])
                frac = np.clip((t_ev - t_prev) / dt_us, 0.0, 1.0)
                memory.ravel()[fire] = level.ravel()[fire] + frac * (dn - dp)
                blind_until.ravel()[fire] = t_ev + self.refractory_us
                found.append((fire, t_ev, pol))
            np.copyto(memory, new, where=held)
            level = new
        duration = n_steps * dt_us
        return self._collect(found, rngs, (B, H, W), duration)

    def _collect(self, found, rngs, shape, duration) -> list[np.ndarray]:
        B, H, W = shape
        dtype = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])
        if found:
            flat = np.concatenate([f[0] for f in found])
            times = np.concatenate([f[1] for f in found])
            pols = np.concatenate([f[2] for f in found]).astype(np.int64)
        else:
            flat, times, pols = np.zeros(0, int), np.zeros(0), np.zeros(0, int)
        owner = flat // (H * W)
        order = np.argsort(owner, kind="stable")
        bounds = np.searchsorted(owner[order], np.arange(B + 1))
        out = []
        for b in range(B):
            sel = order[bounds[b] : bounds[b + 1]]
            pix = flat[sel] % (H * W)
            rng = rngs[b]
            t = times[sel] + self.latency_jitter_us * rng.random(len(sel))
            n_noise = rng.poisson(self.noise_hz * H * W * duration * 1e-6)
            noise_pix = rng.integers(0, H * W, n_noise)
            noise_t = rng.random(n_noise) * duration
            noise_p = rng.integers(0, 2, n_noise)
            pix = np.concatenate([pix, noise_pix])
            t = np.floor(np.concatenate([t, noise_t])).astype(np.int64)
            t = np.clip(t, 0, int(duration) - 1)
            p = np.concatenate([pols[sel], noise_p])
            ev = np.empty(len(t), dtype=dtype)
            ev["x"], ev["y"], ev["t"], ev["p"] = pix % W, pix // W, t, p
            out.append(ev[np.lexsort((ev["p"], ev["x"], ev["y"], ev["t"]))])
        return out
