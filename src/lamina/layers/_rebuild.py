"""A layer's tar rebuilt from its snapshot and tar-split record, many reads in flight.

The record (layers/_tarsplit) holds every header and every file's size, so where each
byte of the tar goes is known before one is read. The tar is cut into *pieces*: runs of
consecutive headers and small files (about a MiB, at most ``_BATCH_FILES`` files), and
ranges of a big file. A pool of threads reads the pieces, many at once: a cold snapshot
of many small files is read with many requests in flight (as parallel ``cat``s would),
not one seek at a time. Pieces come back in tar order and are

- streamed (``RebuiltTar.read``): into a pipe or a compressor;
- or, when the output is a regular file, written at their offsets by the thread that
  read them (``RebuiltTar.write_at``, ``os.pwritev``), so no byte waits for another.

Either way every piece is hashed in tar order and the sha256 compared with the diff_id
at the end (Docker verifies a layer's rebuilt TarStream the same way; containers/storage
checks each file's CRC as it reassembles). A snapshot file that is missing, a symlink,
not a regular file or of another size fails at once; changed content fails at the end.
Holes in a sparse file are read as zeros without reading them, and are not written
into a fresh region of an output file (it reads as zeros already).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from lamina.errors import DigestMismatchError
from lamina.layers._scoped import ScopedRoot, split_entry_path
from lamina.layers._tarsplit import FileOp, RawOp, ThreadedSha256, read_record
from lamina.store import start_writeback

_CHUNK = 1 << 20
_ZEROS = bytes(_CHUNK)
_SEEK_DATA = getattr(os, "SEEK_DATA", 3)
_SEEK_HOLE = getattr(os, "SEEK_HOLE", 4)
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC

_BATCH_BYTES = 1 << 20  # a piece of small files holds about this much content
_BATCH_FILES = 32  # and at most this many files
_BIG = 1 << 20  # a file bigger than this is read in ranges of its own
_RANGE = 4 << 20
_RANGE_ZEROS = bytes(_RANGE)
_THREADS = 24  # pieces read at once
_AHEAD_PIECES = 96  # pieces read ahead of the one being consumed
_AHEAD_BYTES = 96 << 20  # and at most this many bytes
_MAX_DIRS = 256  # directory fds kept open for the threads

Part = bytes | memoryview


@dataclass(frozen=True, slots=True)
class _Piece:
    """A contiguous region of the tar: ``ops`` (raw bytes and whole files), or the range
    [``skip``, ``skip + size``) of the one file ``ops[0]``."""

    start: int
    size: int
    ops: tuple[RawOp | FileOp, ...]
    ranged: bool = False
    skip: int = 0


def plan(ops: list[RawOp | FileOp]) -> Iterator[_Piece]:
    """The tar's pieces, in order (see the module doc)."""
    pos = 0
    batch: list[RawOp | FileOp] = []
    start = size = files = 0
    for op in ops:
        if isinstance(op, FileOp) and op.size > _BIG:
            if batch:
                yield _Piece(start, size, tuple(batch))
                batch, size, files = [], 0, 0
            for skip in range(0, op.size, _RANGE):
                n = min(_RANGE, op.size - skip)
                yield _Piece(pos, n, (op,), ranged=True, skip=skip)
                pos += n
            start = pos
            continue
        if not batch:
            start = pos
        batch.append(op)
        n = len(op.data) if isinstance(op, RawOp) else op.size
        size += n
        pos += n
        files += isinstance(op, FileOp)
        if size >= _BATCH_BYTES or files >= _BATCH_FILES:
            yield _Piece(start, size, tuple(batch))
            batch, size, files = [], 0, 0
    if batch:
        yield _Piece(start, size, tuple(batch))


def _missing(name: str) -> DigestMismatchError:
    return DigestMismatchError(f"snapshot file {name!r}", "present", "missing")


def _open(parent: int, base: str, name: str, size: int) -> tuple[int, bool]:
    """The snapshot file ``base`` in ``parent``, checked to be a regular file (no symlink
    followed) of ``size`` bytes; its fd, and whether it has holes."""
    try:
        fd = os.open(base, _READ_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):  # ELOOP: a symlink
            raise _missing(name) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            raise DigestMismatchError(f"snapshot file {name!r}: size", str(size), str(st.st_size))
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_blocks * 512 < size


def _read_exactly(fd: int, n: int, offset: int, name: str) -> bytes:
    data = os.pread(fd, n, offset)
    while len(data) < n:  # a short read: only a file that shrank meanwhile does that
        more = os.pread(fd, n - len(data), offset + len(data))
        if not more:
            raise DigestMismatchError(f"snapshot file {name!r}: size", "longer", "shorter")
        data += more
    return data


def _read_range(fd: int, start: int, n: int, sparse: bool, name: str) -> Part:
    """Bytes [start, start + n) of a file; holes (when ``sparse``) are not read."""
    if not sparse:
        return _read_exactly(fd, n, start, name)
    parts: list[Part] = []
    pos, end = start, start + n
    while pos < end:
        try:
            data_at = min(os.lseek(fd, pos, _SEEK_DATA), end)
        except OSError:  # ENXIO: only a hole is left
            data_at = end
        if pos == start and data_at == end:
            return _zeros(n)  # all hole: nothing read, nothing to write into a fresh file
        while pos < data_at:
            k = min(_CHUNK, data_at - pos)
            parts.append(memoryview(_ZEROS)[:k])
            pos += k
        if pos >= end:
            break
        try:
            hole_at = min(os.lseek(fd, pos, _SEEK_HOLE), end)
        except OSError:
            hole_at = end
        parts.append(_read_exactly(fd, hole_at - pos, pos, name))
        pos = hole_at
    return b"".join(parts)


def _zeros(n: int) -> memoryview:
    return memoryview(_RANGE_ZEROS)[:n]


def _is_zeros(data: Part) -> bool:
    return isinstance(data, memoryview) and data.obj is _RANGE_ZEROS


class _Output:
    """A regular file the pieces are written into at ``base`` + their offset in the tar."""

    def __init__(self, fd: int, base: int) -> None:
        self.fd = fd
        self.base = base
        # Beyond the file's end nothing was written yet: a hole there reads as zeros.
        self.fresh = os.fstat(fd).st_size <= base

    def write(self, data: Part, offset: int) -> None:
        if self.fresh and _is_zeros(data):
            return
        done = os.pwrite(self.fd, data, offset)
        while done < len(data):  # a short write (a full disk says so by raising): the rest
            done += os.pwrite(self.fd, memoryview(data)[done:], offset + done)
        start_writeback(self.fd, offset, len(data))


def _read_piece(piece: _Piece, where: tuple[tuple[int, str], ...], out: _Output | None) -> Part:
    """A reading thread's job: the bytes of ``piece`` (``where``: each file's directory fd
    and name), written to ``out`` at their offset if given. The files of a piece are
    opened and announced to the kernel (``POSIX_FADV_WILLNEED``: their reads start at
    once, side by side) before the first is read."""
    if piece.ranged:
        op = piece.ops[0]
        assert isinstance(op, FileOp)
        fd, sparse = _open(*where[0], op.name, op.size)
        try:
            data = _read_range(fd, piece.skip, piece.size, sparse, op.name)
        finally:
            os.close(fd)
    else:
        fds: list[int] = []
        try:
            k = 0
            for op in piece.ops:
                if isinstance(op, FileOp):
                    fd, _sparse = _open(*where[k], op.name, op.size)
                    fds.append(fd)
                    k += 1
                    with contextlib.suppress(OSError):
                        os.posix_fadvise(fd, 0, op.size, os.POSIX_FADV_WILLNEED)
            parts: list[Part] = []
            k = 0
            for op in piece.ops:
                if isinstance(op, RawOp):
                    parts.append(op.data)
                else:
                    parts.append(_read_exactly(fds[k], op.size, 0, op.name))
                    k += 1
        finally:
            for fd in fds:
                os.close(fd)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
    if out is not None:
        out.write(data, out.base + piece.start)
    return data


def pieces_in_order(
    snapshot: str, ops: list[RawOp | FileOp], out: _Output | None = None
) -> Generator[Part, None, None]:
    """Each piece's bytes, in tar order, read (and written to ``out``) by a pool of threads
    up to ``_AHEAD_PIECES`` ahead. Paths are resolved here, by the one resolver (a symlink
    on the way is followed inside the snapshot, as the applier did when it wrote them);
    the threads open the last component in its directory (an fd of this generator's own,
    kept until no thread can be using it)."""
    pieces = list(plan(ops))
    root = ScopedRoot(snapshot)
    pool = ThreadPoolExecutor(_THREADS, "snapshot-read")
    dirs: dict[tuple[str, ...], int] = {}
    ahead: deque[tuple[int, Future[Part]]] = deque()
    ahead_bytes = 0

    def parent(name: str) -> tuple[int, str]:
        parts = split_entry_path(name) if name else []
        if not parts:
            raise _missing(name)
        key = tuple(parts[:-1])
        fd = dirs.get(key)
        if fd is None:
            found = root.parent(parts, name, create=False)
            if found is None:
                raise _missing(name)
            fd = dirs[key] = os.dup(found)
        return fd, parts[-1]

    def close_dirs() -> None:
        for fd in dirs.values():
            os.close(fd)
        dirs.clear()

    try:
        following = 0
        while following < len(pieces) or ahead:
            while following < len(pieces) and (
                not ahead or (len(ahead) < _AHEAD_PIECES and ahead_bytes < _AHEAD_BYTES)
            ):
                piece = pieces[following]
                following += 1
                names = [op.name for op in piece.ops if isinstance(op, FileOp)]
                if len(dirs) + len(names) > _MAX_DIRS:
                    wait([future for _n, future in ahead])  # no thread uses them now
                    close_dirs()
                where = tuple(parent(name) for name in names)
                ahead.append((piece.size, pool.submit(_read_piece, piece, where, out)))
                ahead_bytes += piece.size
            size, future = ahead.popleft()
            ahead_bytes -= size
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        close_dirs()
        root.close()


class RebuiltTar:
    """The rebuilt tar of a layer, checked against ``diff_id`` (and, if given, ``size``):
    read as a stream (DigestMismatchError at its end unless the bytes hash to the diff_id)
    or written whole into a regular file with ``write_at``."""

    def __init__(
        self,
        snapshot: str | os.PathLike[str],
        record_path: str | os.PathLike[str],
        diff_id: str,
        size: int | None = None,
    ) -> None:
        self._snapshot = os.fspath(snapshot)
        self._file = open(record_path, "rb")  # noqa: SIM115 - closed by close()
        # Not verified by the pieces themselves: hashed here as they are read.
        self._chunks = pieces_in_order(self._snapshot, list(read_record(self._file)))
        self._hash = ThreadedSha256()
        self._diff_id = diff_id
        self._size = size
        self.count = 0
        self._pending = memoryview(b"")
        self._done = False

    def read(self, n: int = -1, /) -> bytes:
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(_CHUNK), b""))
        while not self._pending and not self._done:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._done = True
                self._check(self._hash.hexdigest())
                break
            self._hash.update(chunk)
            self.count += len(chunk)
            if self._size is not None and self.count > self._size:
                raise self._too_long()
            self._pending = memoryview(chunk)
            if self._size is not None and self.count == self._size:
                # A reader that stops at the known size never asks for EOF: check now,
                # before the last bytes go out.
                if next(self._chunks, None) is not None:
                    raise self._too_long()
                self._done = True
                self._check(self._hash.hexdigest())
        whole = self._pending.obj
        if isinstance(whole, bytes) and len(self._pending) == len(whole) <= n:
            self._pending = memoryview(b"")
            return whole  # a whole piece, as it came: no copy
        out = bytes(self._pending[:n])
        self._pending = self._pending[n:]
        return out

    def write_at(self, fd: int, offset: int) -> int:
        """Write the whole tar into the regular file ``fd`` at ``offset`` (positioned
        writes, from many threads; the file's own offset does not move) and return its
        size, once its bytes hashed to the diff_id. On DigestMismatchError the region
        holds whatever was read: the caller drops the file."""
        if self.count or self._done:
            raise ValueError("write_at on a tar already being read")
        self._chunks.close()
        self._done = True
        self._file.seek(0)
        ops = list(read_record(self._file))
        total = sum(len(op.data) if isinstance(op, RawOp) else op.size for op in ops)
        if self._size is not None and total != self._size:
            raise DigestMismatchError(
                f"layer {self._diff_id} rebuilt from its snapshot: size",
                str(self._size), str(total),
            )  # fmt: skip
        digest = hashlib.sha256()  # this thread only waits for the readers: it hashes
        out = _Output(fd, offset)
        for piece in pieces_in_order(self._snapshot, ops, out):
            digest.update(piece)
            self.count += len(piece)
        if out.fresh and os.fstat(fd).st_size < offset + total:
            os.ftruncate(fd, offset + total)  # it ended in a hole, not written: zeros
        self._check(digest.hexdigest())
        return self.count

    def _too_long(self) -> DigestMismatchError:
        return DigestMismatchError(
            f"layer {self._diff_id} rebuilt from its snapshot: size",
            str(self._size), f"more than {self._size}",
        )  # fmt: skip

    def _check(self, hexdigest: str) -> None:
        actual = "sha256:" + hexdigest
        if actual != self._diff_id:
            raise DigestMismatchError(
                f"layer {self._diff_id} rebuilt from its snapshot (changed on disk?)",
                self._diff_id,
                actual,
            )
        if self._size is not None and self.count != self._size:
            raise DigestMismatchError(
                f"layer {self._diff_id} rebuilt from its snapshot: size",
                str(self._size),
                str(self.count),
            )

    def close(self) -> None:
        self._chunks.close()
        self._file.close()
        self._hash.stop()

    def __enter__(self) -> RebuiltTar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
