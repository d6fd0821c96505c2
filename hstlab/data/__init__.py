"""Datasets for hstlab: built-in digits-dvs, real event datasets via tonic, spikes and text.

Example:
    >>> from hstlab.data import load_dataset, time_first_collate
    >>> ds = load_dataset("lorenz-spikes", "train", time_bins=20, neurons=8, trials=10)
    >>> x, y = time_first_collate([ds[0], ds[1]]); tuple(x.shape)
    (20, 2, 8)
"""


from hstlab._lazy import lazy_exports

# names -> home modules, imported on first use (so `hstlab --help` does not start torch)
_EXPORTS: dict[str, str] = {
    "RandomShift": "hstlab.data.augment",
    "spread_indices": "hstlab.data.collate",
    "time_first_collate": "hstlab.data.collate",
    "spike_encode": "hstlab.data.encode",
    "DataError": "hstlab.data.errors",
    "DataFileError": "hstlab.data.errors",
    "DataOptionError": "hstlab.data.errors",
    "DatasetUnavailable": "hstlab.data.errors",
    "DataWarning": "hstlab.data.errors",
    "EventFileError": "hstlab.data.errors",
    "SplitRecordError": "hstlab.data.errors",
    "DATASETS": "hstlab.data.registry",
    "data_dir": "hstlab.data.registry",
    "dataset_folder": "hstlab.data.registry",
    "dataset_info": "hstlab.data.registry",
    "ensure_digits_dvs": "hstlab.data.registry",
    "list_datasets": "hstlab.data.registry",
    "load_dataset": "hstlab.data.registry",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
