"""Split records on disk: reading them safely, and checking event files against them.

A split record is a JSON file in a dataset's folder: ``splits.json`` of a digits-dvs build (the
split, and per file its event count and CRC-32) or ``hstlab_split.json`` of a real dataset (the
recorded train/val/test split). A damaged record raises :class:`SplitRecordError` naming the file
and what is wrong; a file that differs from its recorded count or checksum raises
:class:`EventFileError`, so a truncated or zeroed file never loads as a thinned or blank sample.

Example:
    >>> import tempfile, zlib
    >>> d = Path(tempfile.mkdtemp()); (d / "a.bin").write_bytes(bytes(10))
    10
    >>> rec = FileRecord(d / "splits.json", d, {"a.bin": (2, zlib.crc32(bytes(10)))}, "rebuild")
    >>> rec.check_sizes(["a.bin"])
    >>> _ = (d / "a.bin").write_bytes(bytes(5))
    >>> rec.check_sizes(["a.bin"])
    Traceback (most recent call last):
    ...
    hstlab.data.errors.EventFileError: ...a.bin: holds 1 events (5 bytes), but ...
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hstlab.data.errors import EventFileError, SplitRecordError


def read_json_record(path: Path, repair: str, what: str = "split record") -> dict:
    """The JSON object in ``path``, or :class:`SplitRecordError` naming the file and the fault.

    Example:
        >>> import tempfile
        >>> bad = Path(tempfile.mkdtemp()) / "splits.json"; _ = bad.write_text('{"seed": 0,')
        >>> read_json_record(bad, "delete it")
        Traceback (most recent call last):
        ...
        hstlab.data.errors.SplitRecordError: ...splits.json: damaged split record ...
    """
    try:
        text = Path(path).read_bytes().decode("utf-8")
        data = json.loads(text)
    except UnicodeDecodeError as err:
        raise SplitRecordError(
            f"{path}: damaged {what} (not UTF-8 text: byte {err.start}); {repair}"
        ) from None
    except json.JSONDecodeError as err:
        raise SplitRecordError(
            f"{path}: damaged {what} (not valid JSON: {err.msg}: line {err.lineno} "
            f"column {err.colno}); {repair}"
        ) from None
    except OSError as err:
        raise SplitRecordError(f"{path}: cannot be read ({err.strerror}); {repair}") from None
    if not isinstance(data, dict):
        raise SplitRecordError(
            f"{path}: damaged {what} (a JSON {type(data).__name__}, not an object); {repair}"
        )
    return data


def record_field(
    data: dict, key: str, kind: type | tuple[type, ...], path: Path, repair: str
) -> Any:
    """``data[key]`` if it is a ``kind``, else :class:`SplitRecordError` naming the field."""
    value = data.get(key)
    if isinstance(value, bool) and kind is int or not isinstance(value, kind):
        what = "missing" if key not in data else f"{type(value).__name__} {value!r:.40}"
        raise SplitRecordError(f"{path}: damaged split record (field {key!r}: {what}); {repair}")
    return value


def file_digest(data: bytes) -> int:
    """CRC-32 of a file's bytes (fast: ~1 GB/s; detects truncation, zeroing and edits)."""
    return zlib.crc32(data)


@dataclass
class FileRecord:
    """Per-file event counts and CRC-32s from a split record, checked when files are used.

    ``entries`` maps a path relative to ``folder`` to (events, CRC-32 of the file's bytes); a file
    holds ``bytes_per_event`` bytes per event (N-MNIST records without overflow markers: 5).
    """

    record: Path  # the record file, named in errors
    folder: Path
    entries: dict[str, tuple[int, int]]
    repair: str  # how to repair, appended to every error
    bytes_per_event: int = 5

    def _mismatch(self, rel: str, size: int, expected: int) -> EventFileError:
        return EventFileError(
            f"{self.folder / rel}: holds {size // self.bytes_per_event} events ({size} bytes), "
            f"but {self.record} records {expected} events; the file was truncated or replaced; "
            f"{self.repair}"
        )

    def check_sizes(self, rels: Iterable[str]) -> None:
        """Each file exists and has the recorded size (one ``stat`` per file, no reading)."""
        root = str(self.folder)
        for rel in rels:
            entry = self.entries.get(rel)
            if entry is None:
                continue
            try:
                size = os.stat(f"{root}/{rel}").st_size  # (pathlib costs 4x the stat here)
            except FileNotFoundError:
                raise SplitRecordError(
                    f"{self.folder / rel}: listed in {self.record} but missing; {self.repair}"
                ) from None
            if size != entry[0] * self.bytes_per_event:
                raise self._mismatch(rel, size, entry[0])

    def check_bytes(self, rel: str, data: bytes) -> None:
        """The file's bytes have the recorded size and CRC-32 (call on the bytes just read)."""
        entry = self.entries.get(rel)
        if entry is None:
            return
        n, crc = entry
        if len(data) != n * self.bytes_per_event:
            raise self._mismatch(rel, len(data), n)
        if file_digest(data) != crc:
            raise EventFileError(
                f"{self.folder / rel}: its {len(data)} bytes differ from the checksum in "
                f"{self.record} (CRC-32 {file_digest(data):08x}, recorded {crc:08x}); the file was "
                f"overwritten or damaged; {self.repair}"
            )
