"""A layer's tar rebuilt from its snapshot and tar-split record, many reads in flight.

The record (layers/_tarsplit) holds every header and every file's size, so where each
byte of the tar goes is known before one is read. The tar is cut into *pieces*: runs of
consecutive headers and small files (about a MiB, at most ``_BATCH_FILES`` files), and
ranges of a big file. A pool of threads reads the pieces, many at once: a cold snapshot
of many small files is read with many requests in flight (as parallel ``cat``s would),
not one seek at a time. Pieces come back in tar order and are

- streamed (``RebuiltTar.read``): into a pipe or a compressor;
- or, when the output is a regular file, read into buffers used again and again and
  written at their offsets (``RebuiltTar.write_at``, ``os.pwrite``), so no byte waits for
  another: by forked helper processes (``_rebuildprocs``: no GIL handed between threads
  at every system call), each region hashed as read back from the file; by the threads
  where there is no fork. Nothing is forced to disk: the kernel writes the output back
  later, not while the snapshot is being read from the same disk.

The record is decoded as the pieces are handed out, so the first files are being read
while the rest of it is still being decoded.

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
import gc
import hashlib
import os
import stat
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from lamina.errors import DigestMismatchError
from lamina.layers._scoped import ScopedRoot, split_entry_path
from lamina.layers._tarsplit import FileOp, RawOp, ThreadedSha256, read_record

_CHUNK = 1 << 20
_ZEROS = bytes(_CHUNK)
_SEEK_DATA = getattr(os, "SEEK_DATA", 3)
_SEEK_HOLE = getattr(os, "SEEK_HOLE", 4)
# O_NONBLOCK: a FIFO put where a file was is opened (and refused) at once, not waited on.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK

_BATCH_BYTES = 1 << 20  # a piece of small files holds about this much content
_BATCH_FILES = 32  # and at most this many files
_BIG = 1 << 20  # a file bigger than this is read in ranges of its own
_RANGE = 4 << 20
_RANGE_ZEROS = bytes(_RANGE)
# Pieces read at once. Each thread announces its piece's files together (WILLNEED), so 8
# keep a few hundred reads in flight; more threads only fought over the GIL (a cold save
# of 20,000 files took no less time with 24 or 48, and more CPU in futex hand-overs).
_THREADS = 8
_BUFFER_UNIT = 1 << 20  # the positional path's reusable buffers come in multiples of this
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


def plan(ops: Iterable[RawOp | FileOp]) -> Iterator[_Piece]:
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


def _segments(fd: int, start: int, end: int) -> Iterator[tuple[int, int, bool]]:
    """[start, end) of a sparse file as runs (from, to, holds data), found with
    SEEK_DATA/SEEK_HOLE: the holes are never read."""
    pos = start
    while pos < end:
        try:
            data_at = min(os.lseek(fd, pos, _SEEK_DATA), end)
        except OSError:  # ENXIO: only a hole is left
            data_at = end
        if data_at > pos:
            yield pos, data_at, False
            pos = data_at
        if pos >= end:
            break
        try:
            hole_at = min(os.lseek(fd, pos, _SEEK_HOLE), end)
        except OSError:
            hole_at = end
        yield pos, hole_at, True
        pos = hole_at


def _read_range(fd: int, start: int, n: int, sparse: bool, name: str) -> Part:
    """Bytes [start, start + n) of a file; holes (when ``sparse``) are not read."""
    if not sparse:
        return _read_exactly(fd, n, start, name)
    parts: list[Part] = []
    for at, to, data in _segments(fd, start, start + n):
        if not data and at == start and to == start + n:
            return _zeros(n)  # all hole: nothing read, nothing to write into a fresh file
        if data:
            parts.append(_read_exactly(fd, to - at, at, name))
        else:
            parts.extend(memoryview(_ZEROS)[: min(_CHUNK, to - k)] for k in range(at, to, _CHUNK))
    return b"".join(parts)


def _read_into(fd: int, view: memoryview, offset: int, name: str) -> None:
    """Fill ``view`` with the file's bytes from ``offset`` (``_read_exactly`` into a buffer)."""
    done = os.preadv(fd, [view], offset)
    while done < len(view):  # a short read: only a file that shrank meanwhile does that
        more = os.preadv(fd, [view[done:]], offset + done)
        if not more:
            raise DigestMismatchError(f"snapshot file {name!r}: size", "longer", "shorter")
        done += more


def _range_into(fd: int, start: int, view: memoryview, sparse: bool, name: str) -> memoryview:
    """``_read_range`` into ``view`` (its whole length): the bytes read, or the shared
    zeros when the range is all hole."""
    n = len(view)
    if not sparse:
        _read_into(fd, view, start, name)
        return view
    for at, to, data in _segments(fd, start, start + n):
        if not data and at == start and to == start + n:
            return _zeros(n)
        if data:
            _read_into(fd, view[at - start : to - start], at, name)
        else:
            view[at - start : to - start] = _zeros(to - at)
    return view


def _zeros(n: int) -> memoryview:
    return memoryview(_RANGE_ZEROS)[:n]


def _is_zeros(data: Part) -> bool:
    return isinstance(data, memoryview) and data.obj is _RANGE_ZEROS


class _Output:
    """A regular file the pieces are written into at ``base`` + their offset in the tar.

    Written as a plain file is (``docker save``, skopeo): into the page cache, left to the
    kernel to write back. Starting the writeback here made the disk write the output
    while the snapshot is read from it, and the reads waited behind the writes."""

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


class _Buffers:
    """The buffers a positional rebuild reads its pieces into, each used again once its
    piece is written and hashed: no new memory (nor the kernel's zeroing of it) per piece.
    At most ``_AHEAD_PIECES`` are out at once."""

    def __init__(self) -> None:
        self._free: dict[int, list[bytearray]] = {}
        self._lock = threading.Lock()

    def take(self, n: int) -> memoryview:
        """A buffer's first ``n`` bytes (what was in them before: the caller fills them)."""
        size = -(-max(n, 1) // _BUFFER_UNIT) * _BUFFER_UNIT
        with self._lock:
            free = self._free.get(size)
            buf = free.pop() if free else None
        return memoryview(buf if buf is not None else bytearray(size))[:n]

    def give(self, view: memoryview) -> None:
        """Back into the pool, the buffer under ``view`` (a piece's, once hashed)."""
        buf = view.obj
        if isinstance(buf, bytearray):
            with self._lock:
                self._free.setdefault(len(buf), []).append(buf)


def _open_files(piece: _Piece, where: tuple[tuple[int, str], ...]) -> list[int]:
    """The files of a small-file piece, opened (checked by ``_open``) and announced to the
    kernel (``POSIX_FADV_WILLNEED``: their reads start at once, side by side) before the
    first is read. Closed again if one fails."""
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
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def _read_piece(piece: _Piece, where: tuple[tuple[int, str], ...]) -> Part:
    """A streaming reader's job: the bytes of ``piece`` (``where``: each file's directory
    fd and name), as new bytes the consumer may keep."""
    if piece.ranged:
        op = piece.ops[0]
        assert isinstance(op, FileOp)
        fd, sparse = _open(*where[0], op.name, op.size)
        try:
            return _read_range(fd, piece.skip, piece.size, sparse, op.name)
        finally:
            os.close(fd)
    fds = _open_files(piece, where)
    try:
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
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _open_piece(piece: _Piece, where: tuple[tuple[int, str], ...]) -> tuple[list[int], bool]:
    """The files of ``piece`` opened, checked and announced (``_open_files``; a range's one
    file, its range announced unless it has holes), and whether that file has holes."""
    if not piece.ranged:
        return _open_files(piece, where), False
    op = piece.ops[0]
    assert isinstance(op, FileOp)
    fd, sparse = _open(*where[0], op.name, op.size)
    if not sparse:
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, piece.skip, piece.size, os.POSIX_FADV_WILLNEED)
    return [fd], sparse


def _write_piece(
    piece: _Piece,
    where: tuple[tuple[int, str], ...],
    out: _Output,
    buffers: _Buffers,
    opened: tuple[list[int], bool] | None = None,
) -> memoryview:
    """A positional reader's job: the bytes of ``piece`` read into a buffer of ``buffers``
    and written into ``out`` at their offset; the buffer (the shared zeros for a range
    that is all hole) is returned to be hashed, then given back. ``opened``: its files,
    opened already by ``_open_piece`` (closed here either way)."""
    fds, sparse = _open_piece(piece, where) if opened is None else opened
    try:
        view = buffers.take(piece.size)
        if piece.ranged:
            op = piece.ops[0]
            assert isinstance(op, FileOp)
            data = _range_into(fds[0], piece.skip, view, sparse, op.name)
            if data is not view:
                buffers.give(view)  # all hole: the zeros stand for it
        else:
            data = view
            pos = k = 0
            for op in piece.ops:
                if isinstance(op, RawOp):
                    n = len(op.data)
                    view[pos : pos + n] = op.data
                else:
                    n = op.size
                    _read_into(fds[k], view[pos : pos + n], 0, op.name)
                    k += 1
                pos += n
    finally:
        for fd in fds:
            os.close(fd)
    out.write(data, out.base + piece.start)
    return data


class _Dirs:
    """The directory fds the pieces' files are opened in, resolved by the one resolver (a
    symlink on the way is followed inside the snapshot, as the applier did when it wrote
    them): fds of this object's own, at most ``_MAX_DIRS``, kept until ``close_all``."""

    def __init__(self, snapshot: str) -> None:
        self._root = ScopedRoot(snapshot)
        self._fds: dict[tuple[str, ...], int] = {}

    def full(self, more: int) -> bool:
        """Whether ``more`` new directories could pass the limit (``close_all`` first)."""
        return len(self._fds) + more > _MAX_DIRS

    def parent(self, name: str) -> tuple[int, str]:
        """The fd of the directory holding entry ``name``, and its last component."""
        parts = split_entry_path(name) if name else []
        if not parts:
            raise _missing(name)
        key = tuple(parts[:-1])
        fd = self._fds.get(key)
        if fd is None:
            found = self._root.parent(parts, name, create=False)
            if found is None:
                raise _missing(name)
            fd = self._fds[key] = os.dup(found)
        return fd, parts[-1]

    def close_all(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def close(self) -> None:
        self.close_all()
        self._root.close()


def pieces_in_order(
    snapshot: str, ops: Iterable[RawOp | FileOp], out: _Output | None = None
) -> Generator[Part, None, None]:
    """Each piece's bytes, in tar order, read by a pool of threads up to
    ``_AHEAD_PIECES`` ahead: new bytes, or with ``out`` written into it at their offsets
    by the reading thread, from buffers used again once the consumer takes the next piece
    (it must be done with the last one by then). Paths are resolved here (``_Dirs``); the
    threads open the last component in its directory (an fd kept until no thread can be
    using it). ``ops`` is planned as the
    pieces are handed out: the first are read while the rest of the record is decoded."""
    pieces = plan(ops)
    dirs = _Dirs(snapshot)
    pool = ThreadPoolExecutor(_THREADS, "snapshot-read")
    buffers = _Buffers() if out is not None else None
    ahead: deque[tuple[int, Future[Part]]] = deque()
    ahead_bytes = 0

    try:
        following = next(pieces, None)
        while following is not None or ahead:
            while following is not None and (
                not ahead or (len(ahead) < _AHEAD_PIECES and ahead_bytes < _AHEAD_BYTES)
            ):
                piece = following
                names = [op.name for op in piece.ops if isinstance(op, FileOp)]
                if dirs.full(len(names)):
                    wait([future for _n, future in ahead])  # no thread uses them now
                    dirs.close_all()
                where = tuple(dirs.parent(name) for name in names)
                if out is None or buffers is None:
                    future = pool.submit(_read_piece, piece, where)
                else:
                    future = pool.submit(_write_piece, piece, where, out, buffers)
                ahead.append((piece.size, future))
                ahead_bytes += piece.size
                following = next(pieces, None)
            size, future = ahead.popleft()
            ahead_bytes -= size
            data = future.result()
            yield data
            if buffers is not None and isinstance(data, memoryview):
                buffers.give(data)  # hashed: its buffer reads another piece
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        dirs.close()


class _Beside:
    """``check()`` run on a thread of its own; ``join()`` waits and raises what it raised."""

    def __init__(self, check: Callable[[], None]) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(check,), name="tree-check")
        self._thread.start()

    def _run(self, check: Callable[[], None]) -> None:
        try:
            check()
        except BaseException as exc:  # handed to join()'s caller
            self._error = exc

    def join(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


class RebuiltTar:
    """The rebuilt tar of a layer, checked against ``diff_id`` (and, if given, ``size``):
    read as a stream (DigestMismatchError at its end unless the bytes hash to the diff_id)
    or written whole into a regular file with ``write_at``.

    ``check_tree``, if given, is a check of the snapshot's tree beyond what the tar reads
    (no entry added behind lamina's back) that raises DigestMismatchError: a stream runs
    it before its first byte goes out, ``write_at`` beside its reads, before it returns."""

    def __init__(
        self,
        snapshot: str | os.PathLike[str],
        record_path: str | os.PathLike[str],
        diff_id: str,
        size: int | None = None,
        *,
        check_tree: Callable[[], None] | None = None,
    ) -> None:
        self._snapshot = os.fspath(snapshot)
        # Read as the pieces go (not verified by them: hashed here as they are read).
        self._record = open(record_path, "rb")  # noqa: SIM115 - closed by close()
        self._chunks: Generator[Part, None, None] | None = None  # the stream, once read
        self._check_tree = check_tree
        self._hash = ThreadedSha256()
        self._diff_id = diff_id
        self._size = size
        self.count = 0
        self._pending = memoryview(b"")
        self._done = False

    def _ops(self) -> Iterator[RawOp | FileOp]:
        """The record's frames, once; with a known size, DigestMismatchError as soon as
        they add up to more (before a byte past it is read or written)."""
        ops = read_record(self._record)
        if self._size is None:
            yield from ops
            return
        total = 0
        for op in ops:
            total += len(op.data) if isinstance(op, RawOp) else op.size
            if total > self._size:
                raise self._too_long()
            yield op

    def read(self, n: int = -1, /) -> bytes:
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(_CHUNK), b""))
        if self._chunks is None:
            if self._done:
                return b""
            if self._check_tree is not None:
                self._check_tree()
            self._chunks = pieces_in_order(self._snapshot, self._ops())
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
        if self._chunks is not None or self._done:
            raise ValueError("write_at on a tar already being read")
        from lamina.layers._rebuildprocs import HelperWriters  # it builds on this

        self._done = True
        digest = hashlib.sha256()  # this thread only waits for the readers: it hashes
        out = _Output(fd, offset)
        # The pieces make no cycles, but their many objects would set the collector
        # walking every op of the record, again and again, while the threads wait.
        collecting = gc.isenabled()
        gc.disable()
        helpers: HelperWriters | None = None
        tree: _Beside | None = None
        try:
            # The helpers are forked before this process starts a thread of its own.
            helpers = HelperWriters.start(self._snapshot, out)
            tree = _Beside(self._check_tree) if self._check_tree is not None else None
            ops = self._ops()
            pieces = helpers.regions(ops) if helpers else pieces_in_order(self._snapshot, ops, out)
            for piece in pieces:
                digest.update(piece)
                self.count += len(piece)
        finally:
            if helpers is not None:
                helpers.close()
            if collecting:
                gc.enable()
            if tree is not None:
                tree.join()
        if out.fresh and os.fstat(fd).st_size < offset + self.count:
            os.ftruncate(fd, offset + self.count)  # it ended in a hole, not written: zeros
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
        if self._chunks is not None:
            self._chunks.close()
        self._record.close()
        self._hash.stop()

    def __enter__(self) -> RebuiltTar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
