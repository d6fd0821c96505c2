"""The dataset registry: ``load_dataset``, ``dataset_info``, ``list_datasets``, the data folder."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from hstlab.data import digits_dvs as dd
from hstlab.data import options as opt
from hstlab.data import tonic_datasets as td
from hstlab.data.errors import DataFileError, DataOptionError, SplitRecordError, notice
from hstlab.data.frames import check_time_bins
from hstlab.data.options import Option, check_options
from hstlab.data.split_record import FileRecord, read_json_record, record_field
from hstlab.registry import Registry
from hstlab.runtime import smoke_mode

SPLITS = ("train", "val", "test")
SMOKE_LIMIT = 64  # samples per split when HSTLAB_SMOKE=1 and no limit is given


@dataclass(frozen=True)
class DatasetSpec:
    """How to load and describe one dataset.

    Example:
        >>> DATASETS.get("digits-dvs").default_time_bins
        16
    """

    name: str
    kind: str  # "events-vision" | "events-audio" | "spikes" | "text"
    description: str
    default_time_bins: int
    load: Callable[..., Dataset]  # (folder, split, time_bins, **options)
    info: Callable[[Path], dict]
    on_disk: bool = True  # False: generated in memory, no folder
    options: Mapping[str, Option] = field(default_factory=dict)  # type and range of each option

    def allowed_options(self) -> list[str]:
        """Keyword options of ``load``: the declared ``options``, else the keyword-only
        parameters of ``load``."""
        if self.options:
            return list(self.options)
        declared = getattr(self.load, "options", None)
        if declared is not None:
            return list(declared)
        params = inspect.signature(self.load).parameters.values()
        return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def data_dir() -> Path:
    """Where datasets live: ``$HSTLAB_DATA``, else ``data/`` of a source checkout, else
    ``~/.cache/hstlab/data``."""
    env = os.environ.get("HSTLAB_DATA")
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[2]
    if (repo / "pyproject.toml").is_file() and (repo / "hstlab").is_dir():
        return repo / "data"
    return Path.home() / ".cache" / "hstlab" / "data"


def dataset_folder(name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder of dataset ``name``: ``root`` if given, else ``data_dir() / name``."""
    DATASETS.get(name)
    return Path(root).expanduser() if root is not None else data_dir() / name


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return list(DATASETS.names())


def load_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike | None = None,
    time_bins: int | None = None,
    **options: Any,
) -> Dataset:
    """A torch Dataset of (x, y) with x time first.

    Args:
        name: one of :func:`list_datasets`.
        split: "train", "val" or "test".
        root: the dataset's folder (default ``data_dir() / name``).
        time_bins: T, the number of frames / sequence length (default per dataset, see info).
        options: per dataset, e.g. ``limit`` (first N per split, class-balanced), ``seed``,
            ``window_ms``, ``cache``, ``download`` (default False: never touch the network).
            With ``HSTLAB_SMOKE=1`` and no ``limit``, ``limit=SMOKE_LIMIT`` (64) is used.
            Each option's type and range is checked first (``DATASETS.get(name).options``);
            a bad one raises :class:`~hstlab.data.errors.DataOptionError` naming it.

    Example:
        >>> ds = load_dataset("lorenz-spikes", "val", time_bins=20, neurons=8, trials=20)
        >>> tuple(ds[0][0].shape)
        (20, 8)
    """
    spec = DATASETS.get(name)
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not allowed; allowed: {', '.join(SPLITS)}")
    time_bins = spec.default_time_bins if time_bins is None else check_time_bins(time_bins)
    allowed = spec.allowed_options()
    if smoke_mode() and "limit" in allowed and "limit" not in options:
        options["limit"] = SMOKE_LIMIT  # smoke runs (notebooks, CI): a small class-balanced subset
    if spec.options:
        options = check_options(name, options, spec.options)
    for key, value in options.items():
        if key not in allowed:
            raise ValueError(
                f"option {key}={value!r} is not known for dataset {name!r}; "
                f"allowed: {', '.join(allowed)}"
            )
    return spec.load(dataset_folder(name, root), split, time_bins, **options)


def dataset_info(name: str, root: str | os.PathLike | None = None) -> dict:
    """Sensor size, classes, splits and sizes, default T, files' folder and layout, statistics."""
    spec = DATASETS.get(name)
    folder = dataset_folder(name, root)
    info = {
        "name": name,
        "kind": spec.kind,
        "description": spec.description,
        "default_time_bins": spec.default_time_bins,
        "splits": list(SPLITS),
    }
    if spec.on_disk:
        info["folder"] = str(folder)
    info.update(spec.info(folder))
    return info


def _register(spec: DatasetSpec) -> None:
    DATASETS.register(spec.name)(spec)


# ----------------------------------------------------------------------------- digits-dvs


def _digits_repair(folder: Path, seed: object = None) -> str:
    flag = f" --seed {seed}" if isinstance(seed, int) and seed else ""
    return (
        f"delete {folder} and build it again: hstlab data build digits-dvs --root {folder}{flag}"
    )


def ensure_digits_dvs(
    folder: Path, seed: int = 0, build: bool = True, verbose: bool = False
) -> dict:
    """Build digits-dvs into ``folder`` unless it is there; return its checked ``splits.json``."""
    meta_file = folder / "splits.json"
    if not meta_file.exists():
        if not build:
            raise td.DatasetUnavailable(
                "digits-dvs", folder, td.NMNIST_LAYOUT, "Build it: hstlab data build digits-dvs"
            )
        if folder.exists() and any(folder.iterdir()):
            raise DataFileError(
                f"{folder}: holds files but no digits-dvs build (no splits.json); "
                "empty or move it, then build again"
            )
        if folder.exists():
            folder.rmdir()
        dd.build_digits_dvs(folder, seed=seed, verbose=verbose)
    meta = read_digits_record(meta_file)
    if meta["seed"] != seed:
        raise DataOptionError(
            f"option seed={seed!r} of dataset 'digits-dvs' does not match {folder}, built with "
            f"seed={meta['seed']}; allowed: {meta['seed']} here, or another root for another seed"
        )
    return meta


def read_digits_record(meta_file: Path) -> dict:
    """``splits.json`` of a digits-dvs build, checked field by field (:class:`SplitRecordError`
    names the file and the field). Records without event counts (built before they were
    recorded) load with a notice."""
    folder = meta_file.parent
    meta = read_json_record(meta_file, _digits_repair(folder))
    repair = _digits_repair(folder, meta.get("seed"))

    def bad(what: str) -> SplitRecordError:
        return SplitRecordError(f"{meta_file}: damaged split record ({what}); {repair}")

    record_field(meta, "seed", int, meta_file, repair)
    record_field(meta, "generator_version", int, meta_file, repair)
    splits = record_field(meta, "splits", dict, meta_file, repair)
    for split in SPLITS:
        items = splits.get(split)
        if not isinstance(items, list):
            raise bad(f"splits.{split}: {'missing' if items is None else 'not a list'}")
        for item in items:
            if not (
                isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], int) and not isinstance(item[1], bool)
            ):
                raise bad(f"splits.{split} entry {item!r:.60}: not [path, label]")
    events = meta.get("events")
    if events is None:
        notice(
            f"{meta_file}: an older digits-dvs record without per-file event counts; its files "
            f"cannot be checked for truncation or zeroing. To check them, {repair}"
        )
        meta["events"] = {}
    elif not isinstance(events, dict) or not all(
        type(v) is list and len(v) == 2 and type(v[0]) is int and type(v[1]) is int
        for v in events.values()
    ):
        raise bad("events: not {path: [event count, CRC-32]}")
    return meta


def _load_digits_dvs(
    folder: Path,
    split: str,
    time_bins: int,
    *,
    seed: int = 0,
    limit: int | None = None,
    window_ms: float = dd.WINDOW_US / 1000,
    cache: bool = True,
    build: bool = True,
) -> Dataset:
    meta = ensure_digits_dvs(folder, seed, build)
    meta_file = folder / "splits.json"
    where = {p: SPLITS.index(s) for s in SPLITS for p, _ in meta["splits"][s]}
    mine = [p for p, _ in meta["splits"][split]]
    repair = _digits_repair(folder, meta["seed"])

    def split_of(ids: list[str], labels: np.ndarray) -> np.ndarray:
        extra = [i for i in ids if i not in where]
        if extra:  # a stray file: the record defines the dataset, so it is left out
            notice(
                f"{folder}: {len(extra)} .bin file(s) not listed in {meta_file} are ignored "
                f"(first: {extra[0]}); the recorded split stays as built"
            )
        present = set(ids)
        missing = [p for p in mine if p not in present]
        if missing:
            raise SplitRecordError(
                f"{folder / missing[0]}: listed in {meta_file} but missing "
                f"({len(missing)} file(s) of the {split} split missing); {repair}"
            )
        return np.array([where.get(i, -1) for i in ids], dtype=np.int64)

    record = FileRecord(
        meta_file, folder, {k: (v[0], v[1]) for k, v in meta["events"].items()}, repair
    )
    source = td.nmnist_source(
        "digits-dvs",
        folder,
        split,
        split_of=split_of,
        record=record,
        limit=limit,
        window_ms=window_ms,
        cache=cache,
    )
    # the build identifies the cached frames too (a rebuilt folder never reuses stale frames)
    source.extra.update(seed=meta["seed"], generator=meta["generator_version"])
    return td.EventFrameDataset(source, split, time_bins, cache)


def _info_digits_dvs(folder: Path) -> dict:
    info: dict[str, Any] = {
        "sensor_size": (34, 34, 2),
        "x_shape": "[T, 2, 34, 34] float32 event counts (channel 0 OFF, 1 ON)",
        "classes": [str(i) for i in range(10)],
        "window_us": dd.WINDOW_US,
        "source": "scikit-learn load_digits (1,797 real 8x8 digits), converted with a DVS model",
        "format": "N-MNIST .bin files in tonic's layout, read by tonic.datasets.NMNIST",
        "layout": td.NMNIST_LAYOUT,
        "built": (folder / "splits.json").exists(),
    }
    if info["built"]:
        meta = read_digits_record(folder / "splits.json")
        info["sizes"] = {s: len(meta["splits"][s]) for s in SPLITS}
        info["seed"] = meta["seed"]
        stats_file = folder / "stats.json"
        if stats_file.exists():
            info["event_stats"] = read_json_record(
                stats_file, _digits_repair(folder, meta["seed"]), "event statistics"
            )
    else:
        _, labels = dd.load_digits()
        parts = np.bincount(dd.stratified_split(labels, dd.SPLIT_FRACTIONS, 0), minlength=3)
        info["sizes"] = dict(zip(SPLITS, map(int, parts)))
    return info


_register(
    DatasetSpec(
        "digits-dvs",
        "events-vision",
        "Built-in: sklearn's 1,797 digits as N-MNIST-style DVS events (3 saccades, 34x34)",
        16,
        _load_digits_dvs,
        _info_digits_dvs,
        options={
            "seed": opt.SEED,
            "limit": opt.LIMIT,
            "window_ms": opt.WINDOW_MS,
            "cache": opt.FLAG,
            "build": opt.FLAG,
        },
    )
)

# ----------------------------------------------------------------------------- tonic datasets


@dataclass(frozen=True)
class TonicLoader:
    """``load(folder, split, time_bins, **options)`` for a tonic dataset's frame source ``make``."""

    make: Callable[..., Any]
    default_window_ms: float
    vision: bool  # vision datasets also take ``downsample``

    @property
    def options(self) -> dict[str, Option]:
        """The options this loader takes, with their types and ranges."""
        out = {
            "limit": opt.LIMIT,
            "window_ms": opt.WINDOW_MS_OR_DEFAULT,
            "cache": opt.FLAG,
            "download": opt.FLAG,
        }
        return {**out, "downsample": opt.DOWNSAMPLE_128} if self.vision else out

    def __call__(self, folder: Path, split: str, time_bins: int, *, window_ms: float | None = None,
                 cache: bool = True, **kw: Any) -> Dataset:
        window = self.default_window_ms if window_ms is None else window_ms
        source = self.make(folder, split, window_ms=window, cache=cache, **kw)
        return td.EventFrameDataset(source, split, time_bins, cache)


def _static_info(sensor, x_shape, classes, sizes, layout, note) -> Callable[[Path], dict]:
    def info(folder: Path) -> dict:
        present = (
            any(folder.rglob(p) for p in ("*.bin", "*.npy", "*.h5", "*.aedat4"))
            if folder.is_dir()
            else False
        )
        return {
            "sensor_size": sensor,
            "x_shape": x_shape,
            "classes": classes,
            "sizes": sizes,
            "layout": layout,
            "present": bool(present),
            "note": note,
        }

    return info


_NMNIST = TonicLoader(lambda f, s, **kw: td.nmnist_source("nmnist", f, s, **kw), 315.0, False)
_DVSGESTURE = TonicLoader(td.dvsgesture_source, 6000.0, True)
_CIFAR10DVS = TonicLoader(td.cifar10dvs_source, 1300.0, True)
_SHD = TonicLoader(td.shd_source, 1000.0, False)

_register(
    DatasetSpec(
        "nmnist",
        "events-vision",
        "N-MNIST (Orchard et al. 2015), 34x34, 3 saccades",
        16,
        _NMNIST,
        _static_info(
            (34, 34, 2),
            "[T, 2, 34, 34]",
            [str(i) for i in range(10)],
            {"train+val": 60000, "test": 10000},
            td.NMNIST_LAYOUT,
            "val = a recorded, stratified 10 % of Train (hstlab_split.json)",
        ),
        options=_NMNIST.options,
    )
)
_register(
    DatasetSpec(
        "dvsgesture",
        "events-vision",
        "IBM DVS Gesture (tonic's preprocessed release), 128x128",
        16,
        _DVSGESTURE,
        _static_info(
            (128, 128, 2),
            "[T, 2, 128 // downsample, 128 // downsample]",
            list(td.tonic.datasets.DVSGesture.classes),
            {"train+val": 1077, "test": 264},
            td.DVSGESTURE_LAYOUT,
            "clock starts at each sample's first event; val = recorded 10 % of train",
        ),
        options=_DVSGESTURE.options,
    )
)
_register(
    DatasetSpec(
        "cifar10dvs",
        "events-vision",
        "CIFAR10-DVS (Li et al. 2017), 128x128, no official split",
        16,
        _CIFAR10DVS,
        _static_info(
            (128, 128, 2),
            "[T, 2, 128 // downsample, 128 // downsample]",
            list(td.tonic.datasets.CIFAR10DVS.classes),
            {"all": 10000},
            td.CIFAR10DVS_LAYOUT,
            "fixed recorded per-class split: test 10 %, val 10 % of the rest; "
            "AEDAT 4 files decoded by the `aedat` package",
        ),
        options=_CIFAR10DVS.options,
    )
)
_register(
    DatasetSpec(
        "shd",
        "events-audio",
        "Spiking Heidelberg Digits (Cramer et al. 2020), 700 channels",
        100,
        _SHD,
        _static_info(
            (700, 1, 1),
            "[T, 700]",
            "20 (English and German digits 0-9)",
            {"train+val": 8156, "test": 2264},
            td.SHD_LAYOUT,
            "val = recorded, stratified 10 % of train",
        ),
        options=_SHD.options,
    )
)

# ----------------------------------------------------------------------------- in memory


def _load_lorenz(
    folder: Path,
    split: str,
    time_bins: int,
    *,
    neurons: int = 64,
    bin_ms: float = 10.0,
    trials: int = 200,
    seed: int = 0,
    limit: int | None = None,
) -> Dataset:
    from hstlab.data.lorenz import LorenzSpikes

    return LorenzSpikes(
        split, time_bins, neurons=neurons, bin_ms=bin_ms, trials=trials, seed=seed, limit=limit
    )


def _load_text(
    folder: Path, split: str, time_bins: int, *, one_hot: bool = True, limit: int | None = None
) -> Dataset:
    from hstlab.data.text import TextChars

    return TextChars(split, time_bins, one_hot=one_hot, limit=limit)


def _info_lorenz(folder: Path) -> dict:
    return {
        "x_shape": "[L, neurons] float32 counts (bins 0..L-1)",
        "y": "[L, neurons] float32 counts of the next bins (1..L); true rates: ds.true_rates(i)",
        "sizes": {"train": "70 % of trials", "val": "15 %", "test": "15 %"},
        "options": "neurons=64, bin_ms=10, trials=200, seed=0",
    }


def _info_text(folder: Path) -> dict:
    from hstlab.data.text import TextChars

    ds = {s: TextChars(s, 128) for s in SPLITS}
    return {
        "x_shape": "[L, V] one-hot float32 (one_hot=False: [L] int64)",
        "y": "[L] int64 next-character indices",
        "vocab_size": ds["train"].vocab_size,
        "source": "Python's bundled pydoc_data.topics (help-topic documentation)",
        "sizes": {s: f"{len(d.text)} chars, {len(d)} windows of 128" for s, d in ds.items()},
    }


_register(
    DatasetSpec(
        "lorenz-spikes",
        "spikes",
        "Poisson population (64 neurons, 10 ms bins) driven by a Lorenz latent",
        100,
        _load_lorenz,
        _info_lorenz,
        on_disk=False,
        options={
            "neurons": Option("int", minimum=1, maximum=4096),
            "bin_ms": Option("float", minimum=0, maximum=1000, above=True),
            "trials": Option("int", minimum=3, maximum=100_000),
            "seed": opt.SEED,
            "limit": opt.LIMIT,
        },
    )
)
_register(
    DatasetSpec(
        "text-chars",
        "text",
        "Character-level English text from Python's bundled pydoc topics",
        128,
        _load_text,
        _info_text,
        on_disk=False,
        options={"one_hot": opt.FLAG, "limit": opt.LIMIT},
    )
)
