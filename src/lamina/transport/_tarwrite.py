"""A deterministic tar writer for our own archives: fixed owner, modes and mtime.

Headers come from the layers' encoder (`lamina.layers.build_header`, the one lamina has);
content is streamed in 1 MiB chunks, by `os.sendfile` when both ends are files. When the
output is a regular file, an entry whose source can write itself at an offset (a layer
rebuilt from its snapshot: many reads in flight, each written where it belongs) is left
to it (`add_at`).
"""

from __future__ import annotations

import fcntl
import io
import os
import stat
from collections.abc import Iterable
from typing import BinaryIO, Protocol, runtime_checkable

from lamina.errors import InvalidInputError
from lamina.layers import build_header, source_date_epoch

_CHUNK = 1 << 20
_BLOCK = 512


def default_mtime() -> int:
    """SOURCE_DATE_EPOCH when set (reproducible builds), else 0; a bad value is an error."""
    return source_date_epoch() or 0


def _fileno(stream: object) -> int | None:
    try:
        fd = stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    return fd if isinstance(fd, int) else None


def _position(stream: BinaryIO) -> int | None:
    try:
        return stream.tell()
    except (OSError, io.UnsupportedOperation):
        return None


def copy_stream(source: BinaryIO, out: BinaryIO, size: int, what: str) -> None:
    """Copy exactly `size` bytes; in-kernel when both are files, else in 1 MiB chunks."""
    in_fd, out_fd = _fileno(source), _fileno(out)
    remaining = size
    offset = _position(source) if in_fd is not None and out_fd is not None else None
    if in_fd is not None and out_fd is not None and offset is not None:
        out.flush()
        try:
            while remaining:
                sent = os.sendfile(out_fd, in_fd, offset, min(remaining, 1 << 30))
                if sent == 0:
                    break
                offset += sent
                remaining -= sent
            source.seek(offset)
        except OSError:
            source.seek(offset)  # a pipe or a special file: fall back to copying
    while remaining:
        data = source.read(min(remaining, _CHUNK))
        if not data:
            break
        out.write(data)
        remaining -= len(data)
    if remaining:
        raise InvalidInputError(f"{what}: ended {remaining} bytes short of its size {size}")


@runtime_checkable
class PositionalSource(Protocol):
    """Content that writes itself into a regular file at an offset (``os.pwrite``, from as
    many threads as it likes), checks itself, and returns how many bytes it wrote."""

    def write_at(self, fd: int, offset: int) -> int: ...


def positional_fd(out: BinaryIO) -> int | None:
    """`out`'s fd if bytes may be written into it at offsets: a regular file, seekable, not
    opened to append (where the kernel puts every write at the end). Else None."""
    fd = _fileno(out)
    if fd is None or _position(out) is None:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode) or fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND:
            return None
    except OSError:
        return None
    return fd


class TarWriter:
    """Writes entries in the order given; callers sort them for determinism."""

    def __init__(self, out: BinaryIO, mtime: int) -> None:
        self._out = out
        self._mtime = mtime
        self._fd = positional_fd(out)

    def takes(self, source: object) -> bool:
        """Whether `add_at` can write `source` here (it is positional, and so is the output)."""
        return self._fd is not None and isinstance(source, PositionalSource)

    def _header(self, name: str, size: int, kind: bytes, mode: int) -> None:
        self._out.write(build_header(name.encode(), kind, mode, 0, 0, size, self._mtime))

    def add_dirs(self, names: Iterable[str]) -> None:
        for name in names:
            self._header(name.rstrip("/") + "/", 0, b"5", 0o755)

    def add_bytes(self, name: str, data: bytes) -> None:
        self._header(name, len(data), b"0", 0o644)
        self._out.write(data)
        self._pad(len(data))

    def add_stream(self, name: str, size: int, source: BinaryIO) -> None:
        self._header(name, size, b"0", 0o644)
        copy_stream(source, self._out, size, name)
        self._pad(size)

    def add_at(self, name: str, size: int, source: PositionalSource) -> None:
        """An entry written by `source` itself at its offset (see `takes`)."""
        assert self._fd is not None
        self._header(name, size, b"0", 0o644)
        self._out.flush()
        offset = self._out.tell()
        written = source.write_at(self._fd, offset)
        if written != size:
            raise InvalidInputError(f"{name}: content is {written} bytes, expected {size}")
        self._out.seek(offset + size)
        self._pad(size)

    def add_chunks(self, name: str, size: int, chunks: Iterable[bytes]) -> None:
        """An entry whose size is known up front but whose content is produced on the go."""
        self._header(name, size, b"0", 0o644)
        written = 0
        for chunk in chunks:
            written += len(chunk)
            if written > size:
                raise InvalidInputError(f"{name}: content is longer than its size {size}")
            self._out.write(chunk)
        if written != size:
            raise InvalidInputError(f"{name}: content is {written} bytes, expected {size}")
        self._pad(size)

    def _pad(self, size: int) -> None:
        if size % _BLOCK:
            self._out.write(bytes(_BLOCK - size % _BLOCK))

    def finish(self) -> None:
        self._out.write(bytes(2 * _BLOCK))
        self._out.flush()
