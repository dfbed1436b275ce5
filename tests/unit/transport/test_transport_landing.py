"""A pull's blob lands in its ingest on a download thread and is read back as it lands:
the reader gets every byte in order and never one not yet written, the end only once the
download is whole, the download's error at the read that waits for the missing bytes,
and closing early stops the download."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

import pytest

from lamina.errors import DigestMismatchError, LaminaError
from lamina.store import ContentStore
from lamina.transport._lean import _Landing


class _Slow(io.RawIOBase):
    """Gives `data` in pieces of `piece` bytes, each after `gate` is set (then cleared),
    and raises `error` instead of its end, if given."""

    def __init__(self, data: bytes, piece: int, error: Exception | None = None) -> None:
        self.data = data
        self.piece = piece
        self.error = error
        self.gate = threading.Event()
        self.pos = 0
        self.closed_by: str | None = None
        self.landing_closed = False  # set by a test once it closed the landing
        self.late_reads = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self.gate.wait(10)
        self.gate.clear()
        if self.landing_closed:  # a download that goes on after close
            self.late_reads += 1
            raise AssertionError("read after the landing was closed")
        if self.pos >= len(self.data) and self.error is not None:
            raise self.error
        n = min(len(buffer), self.piece, len(self.data) - self.pos)
        buffer[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n

    def close(self) -> None:
        self.closed_by = threading.current_thread().name
        super().close()


def _read_all(landing: _Landing, stream: _Slow, piece: int) -> bytes:
    out = bytearray()
    buffer = bytearray(piece)
    while True:
        stream.gate.set()  # one more piece may come
        count = landing.readinto(buffer)
        if not count:
            return bytes(out)
        out += buffer[:count]


def test_every_byte_arrives_in_order_and_the_end_only_once_all_landed(tmp_path: Path) -> None:
    data = os.urandom((3 << 20) + 777)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    content = ContentStore(tmp_path)
    stream = _Slow(data, 100_000)
    with content.writer(digest, len(data), ref="layer") as writer:
        landing = _Landing(stream, writer)  # type: ignore[arg-type]
        # read sizes unlike the download's pieces: never past what has landed
        assert _read_all(landing, stream, 65_537) == data
        assert writer.offset == len(data)
        landing.close()
        assert writer.verify().digest == digest
    assert stream.closed_by == "blob-download"


def test_the_download_s_error_is_raised_at_the_read_after_the_bytes_before_it(
    tmp_path: Path,
) -> None:
    data = os.urandom(300_000)
    error = DigestMismatchError("blob", "sha256:" + "a" * 64, "sha256:" + "b" * 64)
    stream = _Slow(data, 50_000, error)
    with ContentStore(tmp_path).writer(ref="layer") as writer:
        landing = _Landing(stream, writer)  # type: ignore[arg-type]
        got = bytearray()
        buffer = bytearray(1 << 20)
        with pytest.raises(DigestMismatchError):
            while True:
                stream.gate.set()
                count = landing.readinto(buffer)
                assert count, "the end must not come before the error"
                got += buffer[:count]
        assert bytes(got) == data
        landing.close()


def test_closing_early_stops_the_download_and_a_read_then_fails(tmp_path: Path) -> None:
    data = os.urandom(1 << 20)
    stream = _Slow(data, 1000)
    with ContentStore(tmp_path).writer(ref="layer") as writer:
        landing = _Landing(stream, writer)  # type: ignore[arg-type]
        stream.gate.set()
        assert landing.readinto(bytearray(10)) == 10
        stream.gate.set()  # the download may take one more piece, then sees the stop
        landing.close()
        stream.landing_closed = True
        landed = writer.offset
        assert landed < len(data)
        assert stream.closed_by == "blob-download"
        stream.gate.set()  # a download still running would read (and fail) now
        downloads = [t for t in threading.enumerate() if t.name == "blob-download"]
        for thread in downloads:
            thread.join(0.5)
        assert stream.late_reads == 0
        assert writer.offset == landed  # nothing writes after close
        # what landed can still be read; then the stop is an error, never a clean end
        buffer = bytearray(1 << 20)
        with pytest.raises(LaminaError, match="stopped"):
            while True:
                assert landing.readinto(buffer), "a stopped download must not end cleanly"


def test_a_resumed_ingest_is_read_from_its_first_byte(tmp_path: Path) -> None:
    data = os.urandom((1 << 20) + 4321)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    content = ContentStore(tmp_path)
    first = 300_001
    with content.writer(digest, len(data), ref="layer") as writer:
        writer.write(data[:first])
        writer.close(keep=True)  # an interrupted pull's partial blob
    rest = _Slow(data[first:], 100_000)
    with content.writer(digest, len(data), ref="layer") as writer:
        assert writer.offset == first
        landing = _Landing(rest, writer)  # type: ignore[arg-type]
        assert _read_all(landing, rest, 65_536) == data
        landing.close()
        assert writer.verify().digest == digest
