"""Write tiny AEDAT 4.0 files (iniVation's DV format) for the CIFAR10-DVS loader tests.

Layout, all little-endian: the magic line ``#!AER-DAT4.0\\r\\n``; a u32 length and the IOHeader
flatbuffer (compression, data-table position -1 = none, and an XML description of the streams);
then packets, each a u32 stream id, a u32 length and a size-prefixed ``EventPacket`` flatbuffer
(identifier ``EVTS``) holding a vector of 16-byte ``Event`` structs (t int64, x int16, y int16,
on bool, 3 padding bytes). Packets are stored uncompressed. The flatbuffers are laid out by hand
with fixed offsets; ``aedat.Decoder`` (which tonic's ``read_aedat4`` uses) reads them back.

Example:
    >>> import tempfile, numpy as np
    >>> path = Path(tempfile.mkdtemp()) / "one.aedat4"
    >>> write_aedat4(path, np.array([(10, 1, 2, True)], dtype=EVENT_DTYPE), width=4, height=4)
    >>> path.read_bytes()[:14]
    b'#!AER-DAT4.0\\r\\n'
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

MAGIC = b"#!AER-DAT4.0\r\n"
EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("on", "?")])
EVENT_STRUCT = np.dtype({"names": ["t", "x", "y", "on"], "formats": ["<i8", "<i2", "<i2", "?"],
                         "offsets": [0, 8, 10, 12], "itemsize": 16})  # flatbuffers struct, 8-aligned


def _description(width: int, height: int) -> bytes:
    """The DV XML that names stream 0 an event stream of ``width`` x ``height`` pixels."""
    prefix = "/mainloop/Recorder/outInfo/"
    return (
        f'<dv version="2.0"><node name="outInfo" path="{prefix}">'
        f'<node name="0" path="{prefix}0/">'
        '<attr key="compression" type="string">NONE</attr>'
        '<attr key="originalModuleName" type="string">hstlab-tests</attr>'
        '<attr key="originalOutputName" type="string">events</attr>'
        '<attr key="typeIdentifier" type="string">EVTS</attr>'
        f'<node name="info" path="{prefix}0/info/">'
        f'<attr key="sizeX" type="int">{width}</attr><attr key="sizeY" type="int">{height}</attr>'
        "</node></node></node></dv>"
    ).encode()


def ioheader(width: int, height: int) -> bytes:
    """IOHeader flatbuffer: root offset, "IOHE", vtable at 8, table at 24, description at 44."""
    text = _description(width, height)
    vtable = struct.pack("<5H", 10, 20, 4, 8, 16)  # sizes, then field offsets in the table
    table = struct.pack("<iiqI", 24 - 8, 0, -1, 44 - 40)  # vtable back-offset, None, no data table, string
    buf = struct.pack("<I", 24) + b"IOHE" + vtable + bytes(6) + table
    buf += struct.pack("<I", len(text)) + text + b"\0"
    return buf + bytes(-len(buf) % 4)


def event_packet(events: np.ndarray) -> bytes:
    """Size-prefixed EventPacket flatbuffer: vtable at 12, table at 20, vector length at 28, events at 32."""
    elements = np.zeros(len(events), dtype=EVENT_STRUCT)
    for name in EVENT_DTYPE.names:
        elements[name] = events[name]
    body = (struct.pack("<I", 20 - 4) + b"EVTS" + struct.pack("<3H", 6, 8, 4) + bytes(2)
            + struct.pack("<iI", 20 - 12, 28 - 24) + struct.pack("<I", len(events)) + elements.tobytes())
    return struct.pack("<I", len(body)) + body


def write_aedat4(path: Path, events: np.ndarray, width: int, height: int, packet_size: int = 64) -> None:
    """Write ``events`` (``EVENT_DTYPE``, time-sorted, microseconds) as stream 0, in packets."""
    header = ioheader(width, height)
    chunks: Sequence[np.ndarray] = [events[i:i + packet_size] for i in range(0, len(events), packet_size)]
    with Path(path).open("wb") as f:
        f.write(MAGIC + struct.pack("<I", len(header)) + header)
        for chunk in chunks:
            packet = event_packet(chunk)
            f.write(struct.pack("<II", 0, len(packet)) + packet)
