"""Events -> frames on one fixed clock, and an on-disk cache of binned frames.

``tonic.transforms.ToFrame`` with ``n_time_bins`` starts its bins at each sample's first event,
so two samples would not share a clock. Here every sample is binned over the same window
``[t0, t0 + window_us)`` into ``time_bins`` equal bins (``ToFrame(time_window=window/T,
start_time=t0, end_time=t0 + window)``); events after the window are dropped and an empty event
stream gives all-zero frames.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tonic

from hstlab.data.errors import DataOptionError, EventFileError, notice


def check_time_bins(time_bins: object) -> int:
    """Validate ``time_bins`` (an int >= 1) and return it."""
    if isinstance(time_bins, bool) or not isinstance(time_bins, (int, np.integer)) or time_bins < 1:
        raise ValueError(f"time_bins={time_bins!r} must be an integer >= 1")
    return int(time_bins)


MIN_BIN_US = 1.0  # event timestamps count microseconds: a shorter bin cannot hold its own events


def check_window(window_us: float, time_bins: int, option: str = "window_us") -> float:
    """Validate a frame window: finite, and ``time_bins`` bins of at least 1 us each.

    ``option`` names the value in the error (``window_ms`` for a dataset option, in ms).

    Example:
        >>> check_window(315_000, 16)
        315000.0
        >>> check_window(float("nan"), 16, "window_ms")
        Traceback (most recent call last):
        ...
        hstlab.data.errors.DataOptionError: window_ms=nan is not allowed; allowed: a finite ...
    """
    scale = 1000.0 if option == "window_ms" else 1.0
    ok = isinstance(window_us, (int, float, np.integer, np.floating)) and not isinstance(
        window_us, bool
    )
    if not ok or not math.isfinite(window_us) or window_us < MIN_BIN_US * time_bins:
        shown = window_us / scale if ok else window_us
        raise DataOptionError(
            f"{option}={shown!r} is not allowed; allowed: a finite number >= "
            f"{MIN_BIN_US * time_bins / scale:g} (time_bins={time_bins} bins of at least 1 us)"
        )
    return float(window_us)


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
    if len(events) and events["t"].min() < 0:  # also NaN times cast to integers
        i = int(np.argmin(events["t"]))
        raise EventFileError(
            f"{source}: event {i} has time t={int(events['t'][i])} us, before the recording starts "
            "(negative or not a number); the file is corrupt"
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
    check_window(window_us, time_bins)
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


CACHE_FORMAT = 2  # version of the checksum file written next to each cached array
CHUNK_BYTES = 1 << 24  # one CRC-32 per 16 MiB, so that threads verify a large cache in parallel


def _checksum_file(path: Path) -> Path:
    return path.with_suffix(".json")


def chunk_crcs(arr: np.ndarray) -> list[int]:
    """CRC-32 of each ``CHUNK_BYTES`` piece of a C-contiguous array's bytes, computed in threads
    (zlib releases the GIL): ~1.3 GB/s per core.

    Example:
        >>> chunk_crcs(np.zeros(4, np.int16)) == [zlib.crc32(bytes(8))]
        True
    """
    flat = arr.reshape(-1).view(np.uint8)  # [bytes]
    starts = range(0, len(flat), CHUNK_BYTES)
    if len(starts) <= 1:
        return [zlib.crc32(flat)]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(len(starts), os.cpu_count() or 1, 8)) as pool:
        return list(pool.map(lambda s: zlib.crc32(flat[s : s + CHUNK_BYTES]), starts))


def _open_checked(path: Path, shape: tuple[int, ...]) -> tuple[np.ndarray | None, str]:
    """The cached array at ``path`` if it matches ``shape`` and its checksum file, else
    (None, what is wrong). Verifying reads the whole array: ~0.7 s per GB and core (digits-dvs
    train at T=16 is 93 MB)."""
    try:
        meta = json.loads(_checksum_file(path).read_text())
        crcs, stored_shape = [int(c) for c in meta["crc32"]], tuple(meta["shape"])
    except FileNotFoundError:
        return None, "has no checksum file (written by an older hstlab, or interrupted)"
    except (OSError, ValueError, KeyError, TypeError) as err:
        return None, f"has a damaged checksum file ({type(err).__name__})"
    try:
        with open(path, "rb") as f:
            if f.read(6) != b"\x93NUMPY":
                return None, "is not a .npy file"
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as err:
        return None, f"cannot be read ({err})"
    if arr.shape != shape or stored_shape != shape or arr.dtype != np.int16:
        return None, f"holds {arr.dtype} {list(arr.shape)}, not int16 {list(shape)}"
    if chunk_crcs(arr) != crcs:
        return None, "differs from its checksum (zeroed, overwritten or damaged)"
    return arr, ""


def cached_frames(
    cache_dir: Path | None,
    stem: str,
    n: int,
    shape: tuple[int, ...],
    make: Callable[[int], np.ndarray],
) -> np.ndarray:
    """Frames of all ``n`` samples as one array [N, *shape] (int16), binned once.

    With a writable ``cache_dir`` the array is stored as ``<cache_dir>/<stem>.npy`` (written to a
    temporary file, then renamed) with its CRC-32 in ``<stem>.json``, and memory-mapped on later
    calls after its checksum is verified; a damaged, zeroed or unverifiable cache is rebuilt from
    the events with a :class:`~hstlab.data.errors.DataWarning`. Without a writable folder the
    frames are held in RAM.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> a = cached_frames(d, "demo", 3, (2,), lambda i: np.array([i, 1]))
        >>> sorted(p.name for p in d.iterdir()), a.tolist()
        (['demo.json', 'demo.npy'], [[0, 1], [1, 1], [2, 1]])
    """
    full = (n, *shape)
    path = None if cache_dir is None or n == 0 else Path(cache_dir) / f"{stem}.npy"
    if path is not None and path.exists():
        arr, problem = _open_checked(path, full)
        if arr is not None:
            return arr
        notice(f"{path}: frame cache {problem}; rebuilding it from the event files")
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".npy", dir=path.parent)
            os.close(fd)
        except OSError:  # read-only data folder: keep the frames in memory
            path = None
    if path is None:
        out = np.zeros(full, dtype=np.int16)
        for i in range(n):
            out[i] = make(i)
        return out
    side = Path(tmp).with_suffix(".json")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int16, shape=full)
        for i in range(n):
            out[i] = make(i)
        out.flush()
        crcs = chunk_crcs(out)
        del out
        side.write_text(json.dumps({"format": CACHE_FORMAT, "shape": list(full), "crc32": crcs}))
        os.replace(side, _checksum_file(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        side.unlink(missing_ok=True)
        raise
    return np.load(path, mmap_mode="r")
