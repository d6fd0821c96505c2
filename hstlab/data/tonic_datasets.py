"""Event datasets read through tonic's own dataset classes, binned to frames on a fixed clock.

Each dataset is read from a local folder in tonic's layout; tonic's classes are used unchanged
except that their "is it downloaded?" check and their download are replaced, so local files are
used as they are and nothing is fetched unless ``download=True`` is passed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.lib.recfunctions  # (tonic's DVSGesture reader needs it imported)
import tonic
import torch
from torch.utils.data import Dataset

from hstlab.data.errors import (
    DataFileError,
    DatasetUnavailable,
    EventFileError,
    SplitRecordError,
    notice,
)
from hstlab.data.events_io import check_nmnist_bin
from hstlab.data.frames import (
    cache_key,
    cached_frames,
    check_time_bins,
    check_window,
    events_to_frames,
    frame_shape,
)
from hstlab.data.split_record import FileRecord, read_json_record
from hstlab.data.splits import stratified_first, stratified_split

SPLITS = ("train", "val", "test")


@dataclass
class EventSource:
    """The samples of one split: how to read sample i's events, and its label."""

    name: str
    sensor_size: tuple[int, int, int]  # (W, H, P), as tonic
    classes: list[str]
    ids: list[str]  # one stable id per sample (file path or file#row), for the cache key
    targets: np.ndarray  # [N]
    read: Callable[[int], np.ndarray]
    window_us: float
    align: str = "zero"  # "zero": the clock starts at t = 0; "first": at the first event
    cache_dir: Path | None = None
    extra: dict = field(default_factory=dict)


class EventFrameDataset(Dataset):
    """(frames, label) pairs: frames float32 [T, P, H, W] (or [T, C] for 1-D sensors), counts.

    All samples share one clock (see :mod:`hstlab.data.frames`); the frames of a split are binned
    once and cached as ``<folder>/cache/<key>.npy`` so later epochs only read them.

    Example:
        >>> ds = hstlab.load_dataset("digits-dvs", "val", time_bins=8, limit=20)  # doctest: +SKIP
        >>> x, y = ds[0]; x.shape                                                # doctest: +SKIP
        torch.Size([8, 2, 34, 34])
    """

    def __init__(self, source: EventSource, split: str, time_bins: int, cache: bool = True):
        self.source = source
        self.name = source.name
        self.split = split
        self.time_bins = check_time_bins(time_bins)
        self.sensor_size = source.sensor_size
        self.classes = list(source.classes)
        self.targets = np.asarray(source.targets, dtype=np.int64)
        self.window_us = check_window(source.window_us, self.time_bins, "window_ms")
        self.frame_shape = frame_shape(self.sensor_size, self.time_bins)
        stem = f"{source.name}-{split}-T{self.time_bins}-" + cache_key(
            ids=source.ids,
            window=self.window_us,
            align=source.align,
            sensor=self.sensor_size,
            extra=source.extra,
        )
        self._frames = cached_frames(
            source.cache_dir if cache else None,
            stem,
            len(self.targets),
            self.frame_shape,
            self._bin,
        )

    def _bin(self, i: int) -> np.ndarray:
        ev = self.events(i)
        t0 = float(ev["t"].min()) if (self.source.align == "first" and len(ev)) else 0.0
        return events_to_frames(
            ev, self.sensor_size, self.time_bins, self.window_us, t0, self.source.ids[i]
        )

    def events(self, i: int) -> np.ndarray:
        """The raw events of sample ``i`` (structured array, t in microseconds)."""
        return self.source.read(i)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(np.asarray(self._frames[i], dtype=np.float32))  # [T, P, H, W]
        return x, int(self.targets[i])

    def __repr__(self) -> str:
        return (
            f"EventFrameDataset({self.name!r}, split={self.split!r}, n={len(self)}, "
            f"x={list(self.frame_shape)}, window_us={self.window_us:g})"
        )


# ----------------------------------------------------------------------------- helpers


def _offline(cls: type) -> type:
    """tonic's class with the download check and the download switched off (same class name, so
    tonic's folder ``<save_to>/<ClassName>`` is unchanged)."""

    def _refuse(self) -> None:
        raise RuntimeError("download is disabled here")

    return type(cls.__name__, (cls,), {"_check_exists": lambda self: True, "download": _refuse})


def open_tonic(
    name: str, cls: type, folder: Path, present: bool, layout: str, download: bool, **kwargs
):
    """Instantiate tonic's dataset class ``cls`` on ``folder``: offline when the files are
    ``present``; else download if allowed; else :class:`DatasetUnavailable`."""
    if present:
        try:
            return _offline(cls)(str(folder), **kwargs)
        except (ValueError, KeyError, IndexError, OSError) as err:  # tonic indexes the folder
            raise DataFileError(
                f"{folder}: tonic cannot index the {name} files there ({type(err).__name__}: "
                f"{err}); expected this layout: {_one_line(layout)}"
            ) from err
    if not download:
        raise DatasetUnavailable(
            name,
            folder,
            layout,
            "Or pass download=True (CLI: --data-option download=true) to let tonic fetch it",
        )
    existed = folder.exists()
    try:
        return cls(str(folder), **kwargs)
    except Exception as err:  # network, checksum or extraction failure
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        raise DatasetUnavailable(name, folder, layout, f"Download failed: {err!r}") from err


def _relative(paths: list[str], folder: Path) -> list[str]:
    """``paths`` relative to ``folder``, POSIX style (string slicing: 60k files in ~10 ms)."""
    prefix = str(folder).rstrip("/") + "/"
    if all(p.startswith(prefix) and "\\" not in p for p in paths):
        return [p[len(prefix):] for p in paths]
    return [Path(p).relative_to(folder).as_posix() for p in paths]


def _one_line(text: str) -> str:
    lines = (" ".join(line.split()).rstrip(";") for line in text.splitlines())
    return "; ".join(line for line in lines if line)


def _any_file(folder: Path, pattern: str) -> bool:
    return folder.is_dir() and next(folder.glob(pattern), None) is not None


def recorded_split(
    folder: Path,
    name: str,
    ids: list[str],
    labels: np.ndarray,
    test_fraction: float | None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> np.ndarray:
    """Split numbers (0 train, 1 val, 2 test) per id, stratified by class and seeded.

    ``test_fraction`` None: all ids are train/val (the official test set is separate). The split
    is recorded in ``<folder>/hstlab_split.json`` when that file is absent and the folder is
    writable; an existing record is read back, never overwritten. Files the record does not list
    get -1 (left out, with a notice); a record that lists none of the files, or is damaged, raises
    :class:`SplitRecordError`.
    """
    record = folder / "hstlab_split.json"
    if record.exists():
        return _read_recorded_split(record, ids)
    labels = np.asarray(labels)
    out = np.zeros(len(ids), dtype=np.int64)
    rest = np.arange(len(ids))
    if test_fraction is not None:
        part = stratified_split(labels, (1 - test_fraction, test_fraction), seed)
        out[part == 1] = 2
        rest = np.flatnonzero(part == 0)
    part = stratified_split(labels[rest], (1 - val_fraction, val_fraction), seed + 1)
    out[rest[part == 1]] = 1
    payload = {
        "dataset": name,
        "seed": seed,
        "test_fraction": test_fraction,
        "val_fraction": val_fraction,
        "split": {i: SPLITS[s] for i, s in zip(ids, out)},
    }
    try:
        record.write_text(json.dumps(payload, indent=0) + "\n")
    except OSError:
        pass  # read-only folder: the split is still fixed by the seed
    return out


def _read_recorded_split(record: Path, ids: list[str]) -> np.ndarray:
    repair = "remove it to re-split (a new seeded split is then recorded)"
    known = read_json_record(record, repair).get("split")
    if not isinstance(known, dict):
        raise SplitRecordError(f"{record}: damaged split record (no 'split' object); {repair}")
    bad = next((k for k, v in known.items() if v not in SPLITS), None)
    if bad is not None:
        raise SplitRecordError(
            f"{record}: damaged split record ({bad!r} is in split {known[bad]!r}; allowed: "
            f"{', '.join(SPLITS)}); {repair}"
        )
    out = np.array([SPLITS.index(known[i]) if i in known else -1 for i in ids], dtype=np.int64)
    unknown = [i for i, s in zip(ids, out) if s < 0]
    if ids and len(unknown) == len(ids):
        raise SplitRecordError(
            f"{record}: lists none of the {len(ids)} files present (first: {ids[0]}); "
            f"it belongs to other files; {repair}"
        )
    if unknown:
        notice(
            f"{record}: {len(unknown)} file(s) present are not in the recorded split and are left "
            f"out (first: {unknown[0]}); to use them, {repair}"
        )
    return out


def select(targets: np.ndarray, keep: np.ndarray, limit: int | None) -> np.ndarray:
    """Indices where ``keep``; with ``limit`` the first ``limit`` of them, round-robin by class."""
    idx = np.flatnonzero(keep)
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit={limit!r} must be an integer >= 1")
        idx = np.sort(idx[stratified_first(np.asarray(targets)[idx], limit)])
    return idx


def _cache_dir(folder: Path, cache: bool) -> Path | None:
    return folder / "cache" if cache else None


# ----------------------------------------------------------------------------- N-MNIST layout

NMNIST_LAYOUT = (
    "  <folder>/NMNIST/Train/<digit 0-9>/<id>.bin   (N-MNIST 40-bit event files)\n"
    "  <folder>/NMNIST/Test/<digit 0-9>/<id>.bin\n"
    "(the Train.zip/Test.zip archives from the N-MNIST site, extracted there)"
)


def nmnist_source(
    name: str,
    folder: Path,
    split: str,
    *,
    split_of: Callable | None = None,
    record: FileRecord | None = None,
    limit: int | None = None,
    window_ms: float = 315.0,
    cache: bool = True,
    download: bool = False,
) -> EventSource:
    """N-MNIST-format files read by ``tonic.datasets.NMNIST`` (and checked byte by byte first).

    ``split_of(rel_paths, labels)`` gives split numbers (-1: leave the file out) for the files of
    the Train folder and, when given, of the Test folder too; default: a recorded stratified 90/10
    train/val split of Train, and all of Test. With a ``record`` each selected file's size is
    checked against its recorded event count on load, and its bytes against the recorded CRC-32
    when it is read.
    """
    train = split != "test"
    sub = folder / "NMNIST" / ("Train" if train else "Test")
    ds = open_tonic(
        name,
        tonic.datasets.NMNIST,
        folder,
        _any_file(sub, "*/*.bin"),
        NMNIST_LAYOUT,
        download,
        train=train,
    )
    rel = _relative(ds.data, folder)
    targets = np.asarray(ds.targets, dtype=np.int64)
    if train or split_of is not None:
        split_no = (split_of or _default_val_split(folder, name))(rel, targets)
        keep = split_no == SPLITS.index(split)
    else:
        keep = np.ones(len(rel), dtype=bool)
    idx = select(targets, keep, limit)
    if record is not None:
        record.check_sizes(rel[i] for i in idx)

    def read(i: int) -> np.ndarray:
        path = Path(ds.data[idx[i]])
        data = path.read_bytes()
        if record is not None:
            record.check_bytes(rel[idx[i]], data)
        elif not data:
            raise EventFileError(
                f"{path}: empty (0 bytes), but an N-MNIST recording always holds events; the "
                "file was truncated; replace it with the original"
            )
        check_nmnist_bin(path, (34, 34), data)
        return ds[int(idx[i])][0]

    return EventSource(
        name,
        (34, 34, 2),
        [str(c) for c in ds.classes],
        [rel[i] for i in idx],
        targets[idx],
        read,
        window_ms * 1000,
        "zero",
        _cache_dir(folder, cache),
    )


def _default_val_split(folder: Path, name: str) -> Callable:
    return lambda ids, labels: recorded_split(folder, name, ids, labels, None)


# ----------------------------------------------------------------------------- DVS Gesture

DVSGESTURE_LAYOUT = (
    "  <folder>/DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label 0-10>.npy\n"
    "  <folder>/DVSGesture/ibmGestureTest/user<NN>_<lighting>/<label 0-10>.npy\n"
    "(tonic's preprocessed release: each .npy is an [N, 4] array of x, y, p, t in ms; the\n"
    " archives ibmGestureTrain.tar.gz / ibmGestureTest.tar.gz extracted there)"
)


def dvsgesture_source(
    folder: Path,
    split: str,
    *,
    limit: int | None = None,
    window_ms: float = 6000.0,
    downsample: int = 1,
    cache: bool = True,
    download: bool = False,
) -> EventSource:
    """IBM DVS Gesture through ``tonic.datasets.DVSGesture``; clock from each sample's first event."""
    train = split != "test"
    loc = folder / "DVSGesture" / ("ibmGestureTrain" if train else "ibmGestureTest")
    ds = open_tonic(
        "dvsgesture",
        tonic.datasets.DVSGesture,
        folder,
        _any_file(loc, "*/*.npy"),
        DVSGESTURE_LAYOUT,
        download,
        train=train,
    )
    rel = _relative(ds.data, folder)
    targets = np.asarray(ds.targets, dtype=np.int64)
    keep = (
        recorded_split(folder, "dvsgesture", rel, targets, None) == SPLITS.index(split)
        if train
        else np.ones(len(rel), dtype=bool)
    )
    idx = select(targets, keep, limit)
    return _vision_source(
        "dvsgesture",
        ds,
        idx,
        rel,
        targets,
        (128, 128, 2),
        list(ds.classes),
        window_ms,
        downsample,
        folder,
        cache,
        "a DVS Gesture .npy event array",
        check_npy_magic,
    )


def _vision_source(
    name, ds, idx, rel, targets, sensor, classes, window_ms, downsample, folder, cache,
    file_format: str, check: Callable[[Path], None] | None = None,
) -> EventSource:
    """``check(path)`` (optional) rejects a file before tonic reads it."""
    w, h, p = sensor
    if isinstance(downsample, bool) or not isinstance(downsample, int) or not 1 <= downsample <= w:
        raise ValueError(f"downsample={downsample!r} must be an integer in [1, {w}]")
    size = (w // downsample, h // downsample, p)

    def read(i: int) -> np.ndarray:
        path = ds.data[int(idx[i])]
        try:
            if check is not None:
                check(Path(path))
            ev = ds[int(idx[i])][0]
        except ModuleNotFoundError as err:
            raise ImportError(
                f"{path}: tonic needs the {err.name!r} package to read this file: "
                f"pip install {err.name}"
            ) from err
        except EventFileError:
            raise
        except Exception as err:  # truncated or corrupt file
            raise EventFileError(
                f"{path}: cannot be read as {file_format} ({type(err).__name__}: {err}); the "
                "file is truncated, corrupt or of another format"
            ) from err
        if downsample > 1:
            ev = ev.copy()
            ev["x"] = ev["x"] // downsample
            ev["y"] = ev["y"] // downsample
        return ev

    return EventSource(
        name,
        size,
        classes,
        [rel[i] for i in idx],
        targets[idx],
        read,
        window_ms * 1000,
        "first",
        _cache_dir(folder, cache),
        {"downsample": downsample},
    )


# ----------------------------------------------------------------------------- CIFAR10-DVS

CIFAR10DVS_LAYOUT = (
    "  <folder>/CIFAR10DVS/<class>/<id>.aedat4   (class: airplane, automobile, bird, cat, deer,\n"
    "   dog, frog, horse, ship, truck; tonic 1.7's release, read with the `aedat` package)"
)


def cifar10dvs_source(
    folder: Path,
    split: str,
    *,
    limit: int | None = None,
    window_ms: float = 1300.0,
    downsample: int = 1,
    cache: bool = True,
    download: bool = False,
) -> EventSource:
    """CIFAR10-DVS through ``tonic.datasets.CIFAR10DVS`` with a fixed, recorded per-class split:
    test = 10 % of each class, val = 10 % of the rest (seed 0), in ``hstlab_split.json``."""
    loc = folder / "CIFAR10DVS"
    ds = open_tonic(
        "cifar10dvs",
        tonic.datasets.CIFAR10DVS,
        folder,
        _any_file(loc, "*/*.aedat4"),
        CIFAR10DVS_LAYOUT,
        download,
    )
    rel = _relative(ds.data, folder)
    targets = np.asarray(ds.targets, dtype=np.int64)
    keep = recorded_split(folder, "cifar10dvs", rel, targets, 0.1) == SPLITS.index(split)
    idx = select(targets, keep, limit)
    classes = sorted(ds.classes, key=ds.classes.get)
    return _vision_source(
        "cifar10dvs",
        ds,
        idx,
        rel,
        targets,
        (128, 128, 2),
        classes,
        window_ms,
        downsample,
        folder,
        cache,
        "AEDAT 4",
        check_aedat4_magic,
    )


def _check_magic(path: Path, magic: bytes, what: str) -> None:
    with open(path, "rb") as f:
        head = f.read(len(magic))
    if head != magic:
        raise EventFileError(
            f"{path}: not {what} (it starts with {head!r}, not {magic!r}); "
            "the file is corrupt or of another format"
        )


def check_aedat4_magic(path: Path) -> None:
    """Raise :class:`EventFileError` unless ``path`` starts as an AEDAT 4.0 file does."""
    _check_magic(path, b"#!AER-DAT4.0", "an AEDAT 4.0 file")


def check_npy_magic(path: Path) -> None:
    """Raise :class:`EventFileError` unless ``path`` starts as a NumPy ``.npy`` file does."""
    _check_magic(path, b"\x93NUMPY", "a NumPy .npy file")


# ----------------------------------------------------------------------------- SHD

SHD_LAYOUT = (
    "  <folder>/SHD/shd_train.h5\n  <folder>/SHD/shd_test.h5\n"
    "(HDF5 with spikes/times, spikes/units (ragged), labels, extra/keys, extra/speaker;\n"
    " unzip shd_train.h5.zip / shd_test.h5.zip from zenkelab.org there)"
)


def shd_source(
    folder: Path,
    split: str,
    *,
    limit: int | None = None,
    window_ms: float = 1000.0,
    cache: bool = True,
    download: bool = False,
) -> EventSource:
    """Spiking Heidelberg Digits through ``tonic.datasets.SHD``: 700 channels, 20 classes."""
    train = split != "test"
    fname = "shd_train.h5" if train else "shd_test.h5"
    path = folder / "SHD" / fname
    present = path.is_file()
    targets = check_shd_file(path) if present else None  # before tonic opens it
    ds = open_tonic("shd", tonic.datasets.SHD, folder, present, SHD_LAYOUT, download, train=train)
    if targets is None:  # just downloaded
        targets = check_shd_file(path)
    ids = [f"SHD/{fname}#{i}" for i in range(len(targets))]
    keep = (
        recorded_split(folder, "shd", ids, targets, None) == SPLITS.index(split)
        if train
        else np.ones(len(ids), dtype=bool)
    )
    idx = select(targets, keep, limit)
    classes = [k.decode() if isinstance(k, bytes) else str(k) for k in ds.classes]

    def read(i: int) -> np.ndarray:
        try:
            with np.errstate(invalid="ignore"):  # NaN times turn negative: check_events says so
                return ds[int(idx[i])][0]
        except Exception as err:  # a ragged row that does not decode
            raise EventFileError(
                f"{path}: row {int(idx[i])} cannot be read ({type(err).__name__}: {err})"
            ) from err

    return EventSource(
        "shd",
        (700, 1, 1),
        classes,
        [ids[i] for i in idx],
        targets[idx],
        read,
        window_ms * 1000,
        "zero",
        _cache_dir(folder, cache),
    )


SHD_FIELDS = ("spikes/times", "spikes/units", "labels", "extra/keys", "extra/speaker")
_SHD_HINT = "replace it with the original file (unzip shd_*.h5.zip from zenkelab.org)"


def check_shd_file(path: Path) -> np.ndarray:
    """The labels [N] of an SHD HDF5 file after checking its structure, else
    :class:`EventFileError` naming the file and the missing or inconsistent field."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise EventFileError(f"{path}: not a readable HDF5 file ({err}); {_SHD_HINT}") from None
    with f:
        missing = [k for k in SHD_FIELDS if k not in f]
        if missing:
            raise EventFileError(f"{path}: no {', '.join(missing)} in this HDF5 file; {_SHD_HINT}")
        try:
            labels = np.asarray(f["labels"][()])
            n_times, n_units = len(f["spikes/times"]), len(f["spikes/units"])
            n_keys = len(f["extra/keys"][()])
        except (OSError, TypeError, ValueError) as err:
            raise EventFileError(f"{path}: damaged HDF5 data ({err}); {_SHD_HINT}") from None
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise EventFileError(
            f"{path}: 'labels' is {labels.dtype} {list(labels.shape)}, not [N] integers; "
            f"{_SHD_HINT}"
        )
    if not len(labels) == n_times == n_units:
        raise EventFileError(
            f"{path}: {len(labels)} labels but {n_times} spikes/times and {n_units} "
            f"spikes/units rows; {_SHD_HINT}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= n_keys):
        raise EventFileError(
            f"{path}: labels lie in [{labels.min()}, {labels.max()}], but extra/keys names "
            f"{n_keys} classes; {_SHD_HINT}"
        )
    return labels.astype(np.int64)
