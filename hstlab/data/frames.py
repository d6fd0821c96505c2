"""Events -> frames on one fixed clock, and an on-disk cache of binned frames.

``tonic.transforms.ToFrame`` with ``n_time_bins`` starts its bins at each sample's first event,
so two samples would not share a clock. Here every sample is binned over the same window
``[t0, t0 + window_us)`` into ``time_bins`` equal bins (``ToFrame(time_window=window/T,
start_time=t0, end_time=t0 + window)``); events after the window are dropped and an empty event
stream gives all-zero frames.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tonic

from hstlab.data.errors import EventFileError


def check_time_bins(time_bins: object) -> int:
    """Validate ``time_bins`` (an int >= 1) and return it."""
    if isinstance(time_bins, bool) or not isinstance(time_bins, (int, np.integer)) or time_bins < 1:
        raise ValueError(f"time_bins={time_bins!r} must be an integer >= 1")
    return int(time_bins)


def frame_shape(sensor_size: tuple[int, int, int], time_bins: int) -> tuple[int, ...]:
    """[T, P, H, W] for a 2-D sensor (W, H, P) or [T, P * W] for a 1-D one (H == 1, as SHD)."""
    w, h, p = sensor_size
    return (time_bins, p, h, w) if h > 1 else (time_bins, p * w)


def check_events(events: np.ndarray, sensor_size: tuple[int, int, int], source: str) -> None:
    """Raise :class:`EventFileError` if any event lies outside the sensor."""
    w, h, p = sensor_size
    bad = (events["x"] < 0) | (events["x"] >= w)
    if "y" in events.dtype.names:
        bad |= (events["y"] < 0) | (events["y"] >= h)
    if len(events) and p > 1:
        bad |= (events["p"].astype(np.int64) < 0) | (events["p"].astype(np.int64) >= p)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        where = {k: int(events[k][i]) for k in ("x", "y", "p") if k in events.dtype.names}
        raise EventFileError(
            f"{source}: event {i} {where} lies outside the sensor of size (x, y, p) = "
            f"{tuple(sensor_size)}"
        )


def events_to_frames(
    events: np.ndarray,
    sensor_size: tuple[int, int, int],
    time_bins: int,
    window_us: float,
    t0: float = 0.0,
    source: str = "events",
) -> np.ndarray:
    """Bin ``events`` (structured, fields x[, y], t, p) into counts [T, P, H, W] (or [T, P * W]).

    Example:
        >>> ev = np.zeros(2, dtype=[("x", int), ("y", int), ("t", int), ("p", int)])
        >>> ev["t"] = [10, 990]; ev["p"] = [1, 0]
        >>> events_to_frames(ev, (2, 2, 2), time_bins=2, window_us=1000).sum(axis=(2, 3)).tolist()
        [[0, 1], [1, 0]]
    """
    time_bins = check_time_bins(time_bins)
    shape = frame_shape(sensor_size, time_bins)
    if window_us <= 0:
        raise ValueError(f"window_us={window_us!r} must be > 0")
    check_events(events, sensor_size, source)
    events = events[(events["t"] >= t0) & (events["t"] < t0 + window_us)]
    if len(events) == 0:
        return np.zeros(shape, dtype=np.int16)
    if np.any(np.diff(events["t"]) < 0):
        events = events[np.argsort(events["t"], kind="stable")]
    to_frame = tonic.transforms.ToFrame(
        sensor_size=tuple(sensor_size),
        time_window=window_us / time_bins,
        start_time=t0,
        end_time=t0 + window_us,
        include_incomplete=True,
    )
    frames = to_frame(events)[:time_bins]  # ceil() may add one bin past the window: dropped
    return frames.reshape(shape).astype(np.int16, copy=False)


def cache_key(**parts: object) -> str:
    """A short, stable file stem from keyword parts (e.g. split, time bins, window, file list)."""
    text = repr(sorted(parts.items()))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def cached_frames(
    cache_dir: Path | None,
    stem: str,
    n: int,
    shape: tuple[int, ...],
    make: Callable[[int], np.ndarray],
) -> np.ndarray:
    """Frames of all ``n`` samples as one array [N, *shape] (int16), binned once.

    With a writable ``cache_dir`` the array is stored as ``<cache_dir>/<stem>.npy`` (written to a
    temporary file, then renamed) and memory-mapped on later calls; otherwise it is held in RAM.
    """
    path = None if cache_dir is None else Path(cache_dir) / f"{stem}.npy"
    if path is not None and path.exists():
        arr = np.load(path, mmap_mode="r")
        if arr.shape == (n, *shape):
            return arr
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".npy", dir=path.parent)
            os.close(fd)
        except OSError:  # read-only data folder: keep the frames in memory
            path = None
    if path is None:
        out = np.zeros((n, *shape), dtype=np.int16)
        for i in range(n):
            out[i] = make(i)
        return out
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int16, shape=(n, *shape))
        for i in range(n):
            out[i] = make(i)
        out.flush()
        del out
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return np.load(path, mmap_mode="r")
