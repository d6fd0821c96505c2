"""The dataset registry: ``load_dataset``, ``dataset_info``, ``list_datasets``, the data folder."""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from hstlab.data import digits_dvs as dd
from hstlab.data import tonic_datasets as td
from hstlab.data.frames import check_time_bins
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

    def allowed_options(self) -> list[str]:
        """Keyword options of ``load``: its declared ``options``, else its keyword-only parameters."""
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


def ensure_digits_dvs(
    folder: Path, seed: int = 0, build: bool = True, verbose: bool = False
) -> dict:
    """Build digits-dvs into ``folder`` unless it is there; return its ``splits.json``."""
    meta_file = folder / "splits.json"
    if not meta_file.exists():
        if not build:
            raise td.DatasetUnavailable(
                "digits-dvs", folder, td.NMNIST_LAYOUT, "Build it: hstlab data build digits-dvs"
            )
        if folder.exists() and any(folder.iterdir()):
            raise FileExistsError(
                f"{folder} exists but holds no digits-dvs build (no splits.json); "
                "empty or move it, then build again"
            )
        if folder.exists():
            folder.rmdir()
        dd.build_digits_dvs(folder, seed=seed, verbose=verbose)
    meta = json.loads(meta_file.read_text())
    if meta["seed"] != seed:
        raise ValueError(
            f"seed={seed!r}, but {folder} was built with seed={meta['seed']}; "
            "pass another root for another seed"
        )
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
    where = {p: SPLITS.index(s) for s in SPLITS for p, _ in meta["splits"][s]}

    def split_of(ids: list[str], labels: np.ndarray) -> np.ndarray:
        return np.array([where[i] for i in ids], dtype=np.int64)

    source = td.nmnist_source(
        "digits-dvs",
        folder,
        split,
        split_of=split_of,
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
        meta = json.loads((folder / "splits.json").read_text())
        info["sizes"] = {s: len(meta["splits"][s]) for s in SPLITS}
        info["seed"] = meta["seed"]
        stats_file = folder / "stats.json"
        if stats_file.exists():
            info["event_stats"] = json.loads(stats_file.read_text())
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
    def options(self) -> tuple[str, ...]:
        return ("limit", "window_ms", "cache", "download") + (("downsample",) if self.vision else ())

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


_register(
    DatasetSpec(
        "nmnist",
        "events-vision",
        "N-MNIST (Orchard et al. 2015), 34x34, 3 saccades",
        16,
        TonicLoader(lambda f, s, **kw: td.nmnist_source("nmnist", f, s, **kw), 315.0, False),
        _static_info(
            (34, 34, 2),
            "[T, 2, 34, 34]",
            [str(i) for i in range(10)],
            {"train+val": 60000, "test": 10000},
            td.NMNIST_LAYOUT,
            "val = a recorded, stratified 10 % of Train (hstlab_split.json)",
        ),
    )
)
_register(
    DatasetSpec(
        "dvsgesture",
        "events-vision",
        "IBM DVS Gesture (tonic's preprocessed release), 128x128",
        16,
        TonicLoader(td.dvsgesture_source, 6000.0, True),
        _static_info(
            (128, 128, 2),
            "[T, 2, 128 // downsample, 128 // downsample]",
            list(td.tonic.datasets.DVSGesture.classes),
            {"train+val": 1077, "test": 264},
            td.DVSGESTURE_LAYOUT,
            "clock starts at each sample's first event; val = recorded 10 % of train",
        ),
    )
)
_register(
    DatasetSpec(
        "cifar10dvs",
        "events-vision",
        "CIFAR10-DVS (Li et al. 2017), 128x128, no official split",
        16,
        TonicLoader(td.cifar10dvs_source, 1300.0, True),
        _static_info(
            (128, 128, 2),
            "[T, 2, 128 // downsample, 128 // downsample]",
            list(td.tonic.datasets.CIFAR10DVS.classes),
            {"all": 10000},
            td.CIFAR10DVS_LAYOUT,
            "fixed recorded per-class split: test 10 %, val 10 % of the rest; "
            "AEDAT 4 files decoded by the `aedat` package",
        ),
    )
)
_register(
    DatasetSpec(
        "shd",
        "events-audio",
        "Spiking Heidelberg Digits (Cramer et al. 2020), 700 channels",
        100,
        TonicLoader(td.shd_source, 1000.0, False),
        _static_info(
            (700, 1, 1),
            "[T, 700]",
            "20 (English and German digits 0-9)",
            {"train+val": 8156, "test": 2264},
            td.SHD_LAYOUT,
            "val = recorded, stratified 10 % of train",
        ),
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
    )
)
