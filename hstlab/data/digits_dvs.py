"""digits-dvs: scikit-learn's 1,797 handwritten digits converted to events as N-MNIST was recorded.

Each 8x8 digit is upsampled (cubic spline) to a 20x20-pixel digit on a dark background and moved
along three saccades in front of a 34x34 DVS (:class:`~hstlab.data.dvs_pixel.DVSPixelModel`),
following N-MNIST's triangle path: (+3.5, +7) px, then (+3.5, -7) px, then (-7, 0) px, each
saccade about 100 ms. Per sample the start point, the saccade end points (+-0.5 px) and the
saccade durations (95-105 ms) are jittered, and the digit's brightness varies by +-15 %.
Events are written as N-MNIST ``.bin`` files in tonic's folder layout
(``NMNIST/Train/<digit>/<index>.bin`` for train and val, ``NMNIST/Test/<digit>/...`` for test);
``splits.json`` records the split and, per file, its event count and CRC-32 (checked when the
files are loaded), and ``stats.json`` the event statistics.
Everything is a function of the seed: the same seed gives byte-identical files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from hstlab.data.dvs_pixel import DVSPixelModel
from hstlab.data.events_io import encode_nmnist
from hstlab.data.splits import stratified_first, stratified_split

SENSOR = 34  # pixels per side
DIGIT_PX = 20  # digit box on the sensor, as MNIST's 20x20 box
SUB = 16  # sub-pixels per sensor pixel in the rendering canvas
DT_US = 1000.0  # simulation step (event times are interpolated inside it)
SACCADE_MS = 100.0
WINDOW_US = 315_000  # fixed frame window, the longest recording (3 x 105 ms)
BACKGROUND = 0.05  # background luminance relative to the digit's ink (1:20)
GENERATOR_VERSION = 1
RECORD_VERSION = 2  # splits.json: 1 = split only, 2 = + per-file event counts and CRC-32s
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)  # train, val, test
PIXEL_MODEL = DVSPixelModel(threshold=0.5, mismatch=0.03, refractory_us=1000.0, noise_hz=1.0)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 bundled digits: images [N, 8, 8] in 0..16 and labels [N]."""
    from sklearn.datasets import load_digits as _load

    d = _load()
    return d.images.astype(np.float64), d.target.astype(np.int64)


def _upsampler() -> np.ndarray:
    """[160, 8] matrix of scipy's cubic-spline zoom (8 -> 160 px; it is linear and separable)."""
    from scipy.ndimage import zoom

    n = DIGIT_PX * SUB
    eye = np.eye(8)
    return np.stack([zoom(e, n / 8, order=3, mode="nearest", grid_mode=True) for e in eye], 1)


def _log_canvas(images: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Upsample digits [B, 8, 8] to log-luminance canvases [B, 322, 322] (float32) with a
    one-sub-pixel background border."""
    up = _upsampler().astype(np.float32)  # [320, 8]
    n = len(up)
    ink = np.zeros((len(images), n + 2, n + 2), dtype=np.float32)  # [B, 322, 322]
    img = images.astype(np.float32) / 16.0  # [B, 8, 8]
    # separable upsampling as explicit sums over the 8 source pixels (no BLAS: a fixed order of
    # additions keeps the result bit-identical whatever the BLAS library or thread count)
    rows = sum(img[:, :, k, None] * up[None, None, :, k] for k in range(8))  # [B, 8(r), 320(j)]
    ink[:, 1:-1, 1:-1] = sum(up[None, :, k, None] * rows[:, k, None, :] for k in range(8))
    np.clip(ink, 0.0, 1.0, out=ink)
    ink *= (gains[:, None, None] * (1.0 - BACKGROUND)).astype(np.float32)
    ink += np.float32(BACKGROUND)
    return np.log(ink, out=ink)


def _saccade_paths(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Vertex times [4] (us) and digit top-left positions [4, 2] (x, y) of one jittered path."""
    start = (SENSOR - DIGIT_PX - 7) / 2 + rng.uniform(-1.0, 1.0, 2)
    steps = np.array([[3.5, 7.0], [7.0, 0.0], [0.0, 0.0]])
    verts = np.vstack([start, start + steps + rng.uniform(-0.5, 0.5, (3, 2))])
    durations = SACCADE_MS * 1000 * rng.uniform(0.95, 1.05, 3)
    return np.concatenate([[0.0], np.cumsum(durations)]), verts


def simulate_batch(images: np.ndarray, indices: np.ndarray, seed: int) -> list[np.ndarray]:
    """Events (structured x, y, t, p arrays) for a batch of digits; sample i uses rng([seed, i])."""
    rngs = [np.random.default_rng([seed, int(i)]) for i in indices]
    paths = [_saccade_paths(r) for r in rngs]
    gains = np.array([r.uniform(0.85, 1.15) for r in rngs])
    canvas = _log_canvas(images, gains).reshape(len(images), -1)  # [B, 162*162]
    side = DIGIT_PX * SUB + 2
    n_steps = int(np.ceil(max(p[0][-1] for p in paths) / DT_US))
    times = np.arange(n_steps + 1) * DT_US
    pos = np.stack(
        [np.stack([np.interp(times, tv, v[:, c]) for c in (0, 1)], -1) for tv, v in paths]
    )  # [B, S+1, 2]
    centres = np.arange(SENSOR) + 0.5  # [34]
    base = (np.arange(len(images)) * side * side)[:, None, None]  # [B, 1, 1]

    def log_intensity(k: int) -> np.ndarray:
        ox, oy = pos[:, k, 0:1], pos[:, k, 1:2]  # [B, 1]
        cols = np.clip(np.floor((centres - ox) * SUB).astype(np.int64) + 1, 0, side - 1)  # [B, 34]
        rows = np.clip(np.floor((centres - oy) * SUB).astype(np.int64) + 1, 0, side - 1)
        flat = base + rows[:, :, None] * side + cols[:, None, :]  # [B, 34, 34]
        return np.take(canvas, flat)

    events = PIXEL_MODEL.simulate(log_intensity, n_steps, DT_US, rngs)
    # recordings end when their own path ends
    return [ev[ev["t"] < p[0][-1]] for ev, p in zip(events, paths)]


def _encode_batch(args: tuple[np.ndarray, np.ndarray, int]) -> list[tuple[bytes, int, int]]:
    """Worker job: (N-MNIST bytes, n events, n ON events) per digit of a batch."""
    images, idx, seed = args
    out = []
    for ev in simulate_batch(images, idx, seed):
        out.append((encode_nmnist(ev["x"], ev["y"], ev["t"], ev["p"]), len(ev), int(ev["p"].sum())))
    return out


def _run_batches(jobs: list, workers: int):
    """Map ``_encode_batch`` over jobs in order, in ``workers`` spawned processes (1: inline)."""
    if workers <= 1 or len(jobs) <= 1:
        yield from map(_encode_batch, jobs)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        yield from pool.map(_encode_batch, jobs)


def _stats(counts: np.ndarray, on: np.ndarray, seconds: float) -> dict:
    return {
        "events_per_sample_mean": float(counts.mean()),
        "events_per_sample_std": float(counts.std()),
        "events_per_sample_min": int(counts.min()),
        "events_per_sample_max": int(counts.max()),
        "on_fraction": float(on.sum() / max(counts.sum(), 1)),
        "build_seconds": round(seconds, 2),
    }


def build_digits_dvs(
    folder: Path,
    seed: int = 0,
    n_samples: int | None = None,
    batch: int = 96,
    workers: int = 1,
    verbose: bool = False,
) -> Path:
    """Generate digits-dvs into ``folder`` (written to a temporary folder, then renamed).

    Args:
        folder: dataset folder (gets ``NMNIST/``, ``splits.json``, ``stats.json``); must not exist.
        seed: the only source of randomness.
        n_samples: a class-balanced subset of the 1,797 digits (quick tests), split over itself;
            None = all.
        workers: processes (spawned; they pay off only on idle cores: one process builds all
            1,797 digits in ~10 s); the files do not depend on it.
    """
    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"folder={str(folder)!r} exists; remove it to rebuild digits-dvs")
    t0, cpu0 = time.perf_counter(), time.process_time()
    images, labels = load_digits()
    chosen = np.arange(len(labels))
    if n_samples is not None:
        if not 10 <= n_samples <= len(labels):
            raise ValueError(f"n_samples={n_samples!r} must lie in [10, {len(labels)}]")
        chosen = np.sort(stratified_first(labels, n_samples))
    split_of = np.full(len(labels), -1, dtype=np.int64)  # [N] 0/1/2 for the chosen digits
    split_of[chosen] = stratified_split(labels[chosen], SPLIT_FRACTIONS, seed)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.build-", dir=folder.parent))
    try:
        counts, on_counts = [], []
        files: dict[str, list[list]] = {"train": [], "val": [], "test": []}
        checks: dict[str, list[int]] = {}  # path -> [events, CRC-32 of the file's bytes]
        batches = [chosen[s : s + batch] for s in range(0, len(chosen), batch)]
        jobs = [(images[idx], idx, seed) for idx in batches]
        done = 0
        for idx, results in zip(batches, _run_batches(jobs, workers)):
            for i, (data, n_ev, n_on) in zip(idx, results):
                split = ("train", "val", "test")[split_of[i]]
                rel = Path("NMNIST", "Test" if split == "test" else "Train", str(labels[i]))
                (tmp / rel).mkdir(parents=True, exist_ok=True)
                (tmp / rel / f"{i:05d}.bin").write_bytes(data)
                files[split].append([f"{rel.as_posix()}/{i:05d}.bin", int(labels[i])])
                checks[f"{rel.as_posix()}/{i:05d}.bin"] = [n_ev, zlib.crc32(data)]
                counts.append(n_ev)
                on_counts.append(n_on)
            done += len(idx)
            if verbose:
                print(f"  digits-dvs: {done}/{len(chosen)} samples")
        seconds = time.perf_counter() - t0
        cpu_seconds = time.process_time() - cpu0
        meta = {
            "dataset": "digits-dvs",
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "n_samples": len(chosen),
            "split_fractions": list(SPLIT_FRACTIONS),
            "window_us": WINDOW_US,
            "splits": files,
            "record_version": RECORD_VERSION,
            "events": dict(sorted(checks.items())),
        }
        (tmp / "splits.json").write_text(json.dumps(meta, indent=1) + "\n")
        stats = _stats(np.array(counts), np.array(on_counts), seconds)
        stats["build_cpu_seconds"] = round(cpu_seconds, 2)  # this process only (workers=1: all)
        (tmp / "stats.json").write_text(json.dumps(stats, indent=1) + "\n")
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished the same build first: keep its files
            if not (folder / "splits.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
