"""Datasets for hstlab: built-in digits-dvs, real event datasets via tonic, spikes and text.

Example:
    >>> from hstlab.data import load_dataset, time_first_collate
    >>> ds = load_dataset("lorenz-spikes", "train", time_bins=20, neurons=8, trials=10)
    >>> x, y = time_first_collate([ds[0], ds[1]]); tuple(x.shape)
    (20, 2, 8)
"""

from hstlab.data.augment import RandomShift
from hstlab.data.collate import spread_indices, time_first_collate
from hstlab.data.encode import spike_encode
from hstlab.data.errors import (
    DataError,
    DataFileError,
    DataOptionError,
    DatasetUnavailable,
    DataWarning,
    EventFileError,
    SplitRecordError,
)
from hstlab.data.registry import (
    DATASETS,
    data_dir,
    dataset_folder,
    dataset_info,
    ensure_digits_dvs,
    list_datasets,
    load_dataset,
)

__all__ = [
    "DATASETS",
    "DataError",
    "DataFileError",
    "DataOptionError",
    "DataWarning",
    "DatasetUnavailable",
    "EventFileError",
    "SplitRecordError",
    "RandomShift",
    "data_dir",
    "dataset_folder",
    "dataset_info",
    "ensure_digits_dvs",
    "list_datasets",
    "load_dataset",
    "spike_encode",
    "spread_indices",
    "time_first_collate",
]
