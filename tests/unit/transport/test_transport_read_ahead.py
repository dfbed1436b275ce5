"""The read-ahead between a layer's download/decompression and its unpacking: the bytes
arrive whole and in order, an error reaches the consumer at the read that needed it,
and closing early stops the reading thread (nothing reads the stream afterwards)."""

from __future__ import annotations

import io
import threading

import pytest

from lamina.errors import DigestMismatchError
from lamina.transport._lean import _ReadAhead


def test_the_bytes_arrive_whole_and_in_order_whatever_the_read_sizes() -> None:
    data = bytes(range(256)) * 40_000  # ~10 MiB
    with _ReadAhead(io.BytesIO(data), piece=65_536) as ahead:
        got = [ahead.read(n) for n in (1, 100, 65_535, 1 << 20, 7)]
        got.append(ahead.read(-1))
        assert ahead.read(10) == b"" and ahead.read(10) == b""
    assert b"".join(got) == data


class _Failing(io.RawIOBase):
    """A stream that gives `good` bytes, then raises what a digest check at EOF raises."""

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self.left:
            raise DigestMismatchError("layer blob", "sha256:" + "a" * 64, "sha256:" + "b" * 64)
        n = min(len(buffer), self.left)
        buffer[:n] = b"x" * n
        self.left -= n
        return n


def test_an_error_is_raised_to_the_consumer_after_the_bytes_before_it() -> None:
    with _ReadAhead(io.BufferedReader(_Failing(3000), 1000), piece=1000) as ahead:
        assert len(ahead.read(1000) + ahead.read(1000) + ahead.read(1000)) == 3000
        with pytest.raises(DigestMismatchError):
            ahead.read(1000)
        assert ahead.read(1000) == b""


class _Endless(io.RawIOBase):
    def __init__(self) -> None:
        self.reads = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self.reads += 1
        buffer[:] = b"\0" * len(buffer)
        return len(buffer)


def test_closing_early_stops_the_thread_and_the_reads() -> None:
    stream = _Endless()
    ahead = _ReadAhead(stream, piece=4096)
    assert ahead.read(10) == b"\0" * 10
    ahead.close()
    reads = stream.reads
    assert not any(t.name == "layer-read-ahead" and t.is_alive() for t in threading.enumerate())
    assert stream.reads == reads  # a bounded read-ahead: it had stopped, and stays stopped
    assert reads <= _ReadAhead._AHEAD + 3
