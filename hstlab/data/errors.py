"""Errors and notices of the data package.

Every error a user can cause with their files or options is a :class:`DataError`, which is a
``ValueError``: a command line catches ``ValueError`` and prints the message (one line, naming
the file or the option) instead of a traceback. :class:`DatasetUnavailable` is also a
``FileNotFoundError`` for callers that test for that.

Example:
    >>> issubclass(EventFileError, DataFileError) and issubclass(DataFileError, ValueError)
    True
    >>> issubclass(DatasetUnavailable, ValueError) and issubclass(DataOptionError, ValueError)
    True
"""

from __future__ import annotations

import warnings


class DataError(ValueError):
    """A dataset cannot be used as asked: files missing or damaged, or an option out of range."""


class DatasetUnavailable(DataError, FileNotFoundError):
    """The dataset's files are not on disk and may not be fetched (offline or ``download=False``).

    The message (one line) names the dataset, the folder to fill and the layout expected there;
    ``layout`` keeps the layout as readable lines.

    Example:
        >>> raise DatasetUnavailable("nmnist", "/data/nmnist", "NMNIST/Train/<digit>/*.bin")
        Traceback (most recent call last):
        ...
        hstlab.data.errors.DatasetUnavailable: dataset 'nmnist' is not available: ...
    """

    def __init__(self, name: str, folder: object, layout: str, hint: str = "") -> None:
        self.name = name
        self.folder = str(folder)
        self.layout = layout
        one_line = "; ".join(
            " ".join(line.split()).rstrip(";") for line in layout.splitlines() if line.strip()
        )
        msg = (
            f"dataset {name!r} is not available: no files under {self.folder}. "
            f"Put the files there in this layout: {one_line}"
        )
        if hint:
            msg += f". {hint}"
        super().__init__(msg)


class DataFileError(DataError):
    """A dataset file (events, split record, labels) is damaged, truncated or of another format.

    The message starts with the file's path and says what is wrong and how to repair it.
    """


class EventFileError(DataFileError):
    """An event file is truncated, corrupt or holds events outside the sensor.

    The message names the file and the byte offset (or event index) of the first bad record.

    Example:
        >>> raise EventFileError("a.bin: truncated at byte offset 10")
        Traceback (most recent call last):
        ...
        hstlab.data.errors.EventFileError: a.bin: truncated at byte offset 10
    """


class SplitRecordError(DataFileError):
    """A split record (``splits.json``, ``hstlab_split.json``) is damaged or does not match the
    files on disk."""


class DataOptionError(DataError):
    """A dataset option has the wrong type or lies outside its allowed range.

    The message names the option, the value given and the values allowed.
    """


class DataWarning(UserWarning):
    """A notice about data that was repaired or skipped (a rebuilt cache, an ignored file)."""


def notice(message: str) -> None:
    """Warn with :class:`DataWarning` (shown once per message; ``-W error`` makes it fatal)."""
    warnings.warn(message, DataWarning, stacklevel=3)
