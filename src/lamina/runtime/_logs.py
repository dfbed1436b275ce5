"""Container logs on disk, in the CRI log format (the one conmon and the kubelet write).

Each record is one line::

    2026-11-29T23:56:53.123456789Z stdout F hello world

timestamp (RFC 3339, nanoseconds, UTC), stream (`stdout` or `stderr`), `F` for a full line
or `P` for a partial one (the rest follows in the next records of that stream), then the
bytes of the line without its newline. The bytes are kept as the process wrote them.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO, NamedTuple
else:
    from lamina._frozen import NamedTuple

LOG_FILE = "container.log"


def _timestamp(now_ns: int) -> bytes:
    seconds, nanos = divmod(now_ns, 1_000_000_000)
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z").encode()


class LogWriter:
    """Appends records for chunks of output; a chunk's unfinished line becomes a `P` record."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def write(self, stream: str, chunk: bytes) -> None:
        if not chunk:
            return
        stamp = _timestamp(time.time_ns())
        out = []
        lines = chunk.split(b"\n")
        for i, line in enumerate(lines):
            last = i == len(lines) - 1
            if last and not line:
                break
            out.append(b"%s %s %s %s\n" % (stamp, stream.encode(), b"P" if last else b"F", line))
        data = b"".join(out)
        while data:
            data = data[os.write(self._fd, data) :]


class LogLine(NamedTuple):
    """One whole line of output: when it began, its stream, its bytes (newline included when
    the process wrote one)."""

    time: str
    stream: str
    data: bytes


def read_records(f: BinaryIO) -> Iterator[tuple[str, str, bool, bytes]]:
    """(time, stream, full, bytes) for each complete record from `f`'s position on; stops at
    a record still being written (no newline yet), leaving `f` before it."""
    while True:
        start = f.tell()
        raw = f.readline()
        if not raw.endswith(b"\n"):
            f.seek(start)
            return
        parts = raw[:-1].split(b" ", 3)
        if len(parts) < 3:
            continue
        stamp, stream, tag = parts[0], parts[1], parts[2]
        data = parts[3] if len(parts) == 4 else b""
        yield stamp.decode("ascii", "replace"), stream.decode("ascii", "replace"), tag == b"F", data


class LineJoiner:
    """Joins `P` records with what follows on the same stream into whole lines."""

    def __init__(self) -> None:
        self._partial: dict[str, tuple[str, bytes]] = {}

    def feed(self, stamp: str, stream: str, full: bool, data: bytes) -> LogLine | None:
        first, before = self._partial.pop(stream, (stamp, b""))
        if not full:
            self._partial[stream] = (first, before + data)
            return None
        return LogLine(first, stream, before + data + b"\n")

    def rest(self) -> list[LogLine]:
        """Lines the process left unfinished (printed without a newline)."""
        out = [LogLine(t, s, d) for s, (t, d) in self._partial.items()]
        self._partial.clear()
        return out
