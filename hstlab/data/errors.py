"""Errors raised by the data package."""

from __future__ import annotations


class DatasetUnavailable(FileNotFoundError):
    """The dataset's files are not on disk and may not be fetched (offline or ``download=False``).

    The message names the dataset, the folder to fill and the layout expected there.

    Example:
        >>> raise DatasetUnavailable("nmnist", "/data/nmnist", "NMNIST/Train/<digit>/*.bin")
        Traceback (most recent call last):
        ...
        hstlab.data.errors.DatasetUnavailable: ...
    """

    def __init__(self, name: str, folder: object, layout: str, hint: str = "") -> None:
        self.name = name
        self.folder = str(folder)
        self.layout = layout
        msg = (
            f"dataset {name!r} is not available: no files under {self.folder}. "
            f"Put the files there in this layout:\n{layout}"
        )
        if hint:
            msg += f"\n{hint}"
        super().__init__(msg)


class EventFileError(ValueError):
    """An event file is truncated, corrupt or holds events outside the sensor.

    The message names the file and the byte offset (or event index) of the first bad record.

    Example:
        >>> raise EventFileError("a.bin: truncated at byte offset 10")
        Traceback (most recent call last):
        ...
        hstlab.data.errors.EventFileError: a.bin: truncated at byte offset 10
    """
