"""N-MNIST 40-bit event files: writing them, and reading them through tonic after a check.

One event is 5 bytes: x (8 bit), y (8 bit), polarity (bit 7 of byte 2, 1 = ON) and a 23-bit
timestamp in microseconds (bits 6..0 of byte 2, bytes 3 and 4). A record with y == 240 is a
timestamp-overflow marker (adds 2**13 us to later events), exactly as ``tonic.io`` reads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tonic

from hstlab.data.errors import EventFileError

NMNIST_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])  # tonic.datasets.NMNIST
_OVERFLOW_Y = 240
_MAX_T = 2**23 - 1


def encode_nmnist(x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray) -> bytes:
    """Pack events (all [N] integer arrays, t in us, p in {0, 1}) as N-MNIST 40-bit records."""
    x, y, t, p = (np.asarray(a, dtype=np.int64) for a in (x, y, t, p))
    if len(t) and (t.min() < 0 or t.max() > _MAX_T):
        raise ValueError(f"t must lie in [0, {_MAX_T}] us for the 23-bit N-MNIST timestamp")
    if len(x) and (x.min() < 0 or x.max() > 255 or y.min() < 0 or y.max() > 239):
        raise ValueError("x must lie in [0, 255] and y in [0, 239] for N-MNIST records")
    raw = np.empty((len(t), 5), dtype=np.uint8)  # [N, 5]
    raw[:, 0] = x
    raw[:, 1] = y
    raw[:, 2] = (p.astype(np.uint8) << 7) | ((t >> 16) & 0x7F).astype(np.uint8)
    raw[:, 3] = (t >> 8) & 0xFF
    raw[:, 4] = t & 0xFF
    return raw.tobytes()


def write_nmnist_bin(path: Path, x, y, t, p) -> None:
    """Write events to ``path`` in the N-MNIST ``.bin`` format."""
    Path(path).write_bytes(encode_nmnist(x, y, t, p))


def check_nmnist_bin(
    path: Path, sensor_size: tuple[int, int] = (34, 34), data: bytes | None = None
) -> None:
    """Raise :class:`EventFileError` naming the file and byte offset if ``path`` is truncated or
    holds an event outside ``sensor_size`` = (width, height). ``data``: its bytes, if read."""
    path = Path(path)
    size = path.stat().st_size if data is None else len(data)
    if size % 5:
        offset = size - size % 5
        raise EventFileError(
            f"{path}: truncated N-MNIST event file: {size} bytes is not a multiple of 5; "
            f"the incomplete record starts at byte offset {offset}"
        )
    raw = (np.fromfile(path, dtype=np.uint8) if data is None else np.frombuffer(data, np.uint8))
    raw = raw.reshape(-1, 5)  # [N, 5]
    x, y = raw[:, 0], raw[:, 1]
    bad = np.flatnonzero((y != _OVERFLOW_Y) & ((x >= sensor_size[0]) | (y >= sensor_size[1])))
    if len(bad):
        i = int(bad[0])
        raise EventFileError(
            f"{path}: event {i} at byte offset {5 * i} lies outside the {sensor_size[0]}x"
            f"{sensor_size[1]} sensor (x={int(x[i])}, y={int(y[i])}); the file is corrupt or "
            "not from this sensor"
        )


def read_nmnist_bin(path: Path, sensor_size: tuple[int, int] = (34, 34)) -> np.ndarray:
    """Check ``path`` and read it with tonic's own reader (``tonic.io.read_mnist_file``)."""
    check_nmnist_bin(path, sensor_size)
    return tonic.io.read_mnist_file(str(path), dtype=NMNIST_DTYPE)
