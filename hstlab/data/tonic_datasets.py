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

from hstlab.data.errors import DatasetUnavailable, EventFileError
from hstlab.data.events_io import check_nmnist_bin
from hstlab.data.frames import (
    cache_key,
    cached_frames,
    check_time_bins,
    events_to_frames,
    frame_shape,
)
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
        self.window_us = float(source.window_us)
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
        return _offline(cls)(str(folder), **kwargs)
    if not download:
        raise DatasetUnavailable(
            name,
            folder,
            layout,
            "Pass download=True to let tonic fetch it where the network allows.",
        )
    existed = folder.exists()
    try:
        return cls(str(folder), **kwargs)
    except Exception as err:  # network, checksum or extraction failure
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        raise DatasetUnavailable(name, folder, layout, f"Download failed: {err!r}") from err


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
    writable; an existing record is read back, never overwritten.
    """
    record = folder / "hstlab_split.json"
    if record.exists():
        known = json.loads(record.read_text())["split"]
        if all(i in known for i in ids):
            return np.array([SPLITS.index(known[i]) for i in ids], dtype=np.int64)
        raise ValueError(f"{record} does not list every file present; remove it to re-split")
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
    limit: int | None = None,
    window_ms: float = 315.0,
    cache: bool = True,
    download: bool = False,
) -> EventSource:
    """N-MNIST-format files read by ``tonic.datasets.NMNIST`` (and checked byte by byte first).

    ``split_of(rel_paths, labels)`` gives split numbers for the Train files; default: a recorded
    stratified 90/10 train/val split.
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
    rel = [Path(p).relative_to(folder).as_posix() for p in ds.data]
    targets = np.asarray(ds.targets, dtype=np.int64)
    if train:
        split_no = (split_of or _default_val_split(folder, name))(rel, targets)
        keep = split_no == SPLITS.index(split)
    else:
        keep = np.ones(len(rel), dtype=bool)
    idx = select(targets, keep, limit)

    def read(i: int) -> np.ndarray:
        check_nmnist_bin(Path(ds.data[idx[i]]), (34, 34))
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
    rel = [Path(p).relative_to(folder).as_posix() for p in ds.data]
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
    )


def _vision_source(
    name, ds, idx, rel, targets, sensor, classes, window_ms, downsample, folder, cache
) -> EventSource:
    if isinstance(downsample, bool) or not isinstance(downsample, int) or downsample < 1:
        raise ValueError(f"downsample={downsample!r} must be an integer >= 1")
    w, h, p = sensor
    size = (w // downsample, h // downsample, p)

    def read(i: int) -> np.ndarray:
        path = ds.data[int(idx[i])]
        try:
            ev = ds[int(idx[i])][0]
        except ModuleNotFoundError as err:
            raise ImportError(
                f"{path}: tonic needs the {err.name!r} package to read this file: "
                f"pip install {err.name}"
            ) from err
        except EventFileError:
            raise
        except Exception as err:  # truncated or corrupt file
            raise EventFileError(f"{path}: cannot be read ({err!r})") from err
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
    rel = [Path(p).relative_to(folder).as_posix() for p in ds.data]
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
    )


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
    ds = open_tonic(
        "shd",
        tonic.datasets.SHD,
        folder,
        (folder / "SHD" / fname).is_file(),
        SHD_LAYOUT,
        download,
        train=train,
    )
    import h5py

    with h5py.File(folder / "SHD" / fname, "r") as f:
        targets = np.asarray(f["labels"][()], dtype=np.int64)
    ids = [f"SHD/{fname}#{i}" for i in range(len(targets))]
    keep = (
        recorded_split(folder, "shd", ids, targets, None) == SPLITS.index(split)
        if train
        else np.ones(len(ids), dtype=bool)
    )
    idx = select(targets, keep, limit)
    classes = [k.decode() if isinstance(k, bytes) else str(k) for k in ds.classes]
    return EventSource(
        "shd",
        (700, 1, 1),
        classes,
        [ids[i] for i in idx],
        targets[idx],
        lambda i: ds[int(idx[i])][0],
        window_ms * 1000,
        "zero",
        _cache_dir(folder, cache),
    )
