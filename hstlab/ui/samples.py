"""Where the explorer's input comes from: a dataset sample, or a random input when data is missing.

Only library calls here (``load_dataset``, ``DATASETS``, ``example_input``); the views draw.
"""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from hstlab.config import HSTConfig

EVENT_KINDS = ("events-vision",)  # datasets whose frames an SPS / events tokenizer can read
INSPECT_LIMIT = 64  # samples per split offered for inspection
_BUILD_LOCK = threading.Lock()  # one dataset build per process (sessions share the data folder)


def vision_datasets() -> list[str]:
    """Registered event-camera datasets (frames ``[T, C, H, W]``), digits-dvs first."""
    from hstlab.data import DATASETS

    names = [n for n in DATASETS.names() if DATASETS.get(n).kind in EVENT_KINDS]
    return sorted(names, key=lambda n: (n != "digits-dvs", n))


def no_build_options(name: str) -> dict[str, Any]:
    """``build=False`` for loaders that would otherwise generate data (digits-dvs) on first use."""
    from hstlab.data import DATASETS

    params = inspect.signature(DATASETS.get(name).load).parameters
    return {"build": False} if "build" in params else {}


def load_split(name: str, split: str, time_bins: int, limit: int | None) -> Any:
    """``load_dataset(name, split, time_bins=..., limit=...)`` without building or downloading.

    Raises ``hstlab.data.DatasetUnavailable`` when the files are not on disk.
    """
    from hstlab.data import load_dataset

    options = no_build_options(name)
    if limit is not None:
        options["limit"] = limit
    return load_dataset(name, split, time_bins=time_bins, **options)


def build_dataset(name: str) -> str:
    """Generate a built-in dataset into its folder (digits-dvs, about 20 s); returns the folder."""
    from hstlab.data import dataset_folder, ensure_digits_dvs

    if name != "digits-dvs":
        raise ValueError(f"dataset={name!r} cannot be built here; allowed: digits-dvs")
    folder = dataset_folder(name)
    with _BUILD_LOCK:
        ensure_digits_dvs(folder)
    return str(folder)


@dataclass
class Sample:
    """One input for the model, batch of one: ``x`` is ``[T, 1, ...]``.

    ``source`` says where it came from, ``note`` why a random input was used (empty otherwise),
    ``events`` holds the raw events (structured array) when the dataset has them.
    """

    x: torch.Tensor  # [T, 1, C, H, W]
    label: str | None
    source: str
    note: str = ""
    events: Any = None
    size: int = 1  # samples available in the chosen split

    @property
    def from_data(self) -> bool:
        return not self.note


@dataclass
class SampleSource:
    """Loads dataset samples for a config and keeps the loaded splits (one cache per session).

    Example:
        >>> src = SampleSource()
        >>> s = src.sample(HSTConfig.from_preset("tiny"), "digits-dvs", 0)
        >>> s.x.shape[1]
        1
    """

    split: str = "val"
    limit: int = INSPECT_LIMIT
    _cache: dict[tuple, Any] = field(default_factory=dict)

    def dataset(self, name: str, time_bins: int) -> Any:
        key = (name, self.split, time_bins, self.limit)
        if key not in self._cache:
            self._cache[key] = load_split(name, self.split, time_bins, self.limit)
        return self._cache[key]

    def forget(self) -> None:
        self._cache.clear()

    def sample(self, cfg: HSTConfig, name: str, index: int) -> Sample:
        """Sample ``index`` of ``name`` binned to ``cfg.input_steps`` steps, or a random input.

        The random input (``hstlab.example_input``) is used, with a ``note`` saying why, when the
        dataset is not on disk or its frames do not have the config's ``input_shape``.
        """
        from hstlab.data import DatasetUnavailable
        from hstlab.model import example_input

        def fallback(reason: str) -> Sample:
            x = example_input(cfg, batch_size=1)  # [T, 1, ...]
            return Sample(x, None, "random input (example_input, rate 0.1)", reason)

        if cfg.tokenizer == "linear":
            return fallback(f"tokenizer='linear' reads sequences; {name} holds event frames")
        try:
            ds = self.dataset(name, cfg.input_steps)
        except DatasetUnavailable as exc:
            first = str(exc).splitlines()[0]
            return fallback(f"{first} Build it with `hstlab data build {name}` or the button.")
        except (ValueError, OSError) as exc:
            return fallback(f"{name} could not be loaded: {exc}")
        if len(ds) == 0:
            return fallback(f"{name} split {self.split!r} is empty")
        i = int(np.clip(index, 0, len(ds) - 1))
        x, y = ds[i]  # [T, C, H, W]
        if tuple(x.shape[1:]) != tuple(cfg.input_shape):
            return fallback(
                f"{name} frames are {tuple(x.shape[1:])} but the config's input_shape is "
                f"{cfg.input_shape} (preset {cfg.name!r})"
            )
        classes = getattr(ds, "classes", None)
        label = classes[y] if classes and 0 <= int(y) < len(classes) else str(y)
        events = ds.events(i) if hasattr(ds, "events") else None
        source = f"{name} {self.split} sample {i} (label {label})"
        return Sample(x.unsqueeze(1).float(), label, source, "", events, len(ds))
