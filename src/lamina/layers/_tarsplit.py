"""The exact tar stream of a layer, kept beside its snapshot (as containers/storage's tar-split).

A snapshot holds a layer's files; the tar they came from also had headers, padding, an
end-of-archive marker and an order. The *record* keeps exactly those bytes, and for each
regular file only its name and how many content bytes it had. Rebuilding the tar is then
the record's bytes interleaved with the files' content read from the snapshot, byte for
byte the stream whose sha256 is the layer's diff_id.

Record format (zlib-compressed): ``MAGIC``, then frames::

    b"R" <u32 length> <bytes>             raw tar bytes (headers, padding, trailer)
    b"F" <u64 size> <u16 n> <name[n]>     `size` content bytes of the file `name`

The record trusts nothing it reads back: the rebuilt stream is hashed and compared with
the diff_id, so a snapshot changed behind lamina's back is found, never served.
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import stat
import struct
import threading
import zlib
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from lamina.errors import DigestMismatchError, InvalidInputError
from lamina.layers._scoped import ScopedRoot, split_entry_path

if TYPE_CHECKING:
    from lamina.layers._tarread import TarEntry

MAGIC = b"lamina-tar-split\x001\n"
_RAW_FLUSH = 1 << 20
_CHUNK = 1 << 20
_ZEROS = bytes(_CHUNK)
_SEEK_DATA = getattr(os, "SEEK_DATA", 3)
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


_THREAD_HASH_AFTER = 4 << 20  # a layer this big is hashed on a thread of its own


class ThreadedSha256:
    """sha256 of a stream, moved to a thread of its own once the stream is big: hashlib
    releases the GIL on large buffers, so a diff_id costs the thread that reads (the
    applier, a rebuilt tar's reader) no time. Chunks are hashed strictly in the order
    given; give them large (a MiB), they cross a queue."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._seen = 0
        self._queue: queue.Queue[bytes | None] | None = None
        self._thread: threading.Thread | None = None

    def update(self, data: bytes | memoryview) -> None:
        if not isinstance(data, bytes):
            data = bytes(data)  # it may cross to the thread: its buffer must not change
        self._seen += len(data)
        if self._queue is None:
            if self._seen <= _THREAD_HASH_AFTER:
                self._hash.update(data)
                return
            self._queue = queue.Queue(maxsize=16)
            self._thread = threading.Thread(target=self._run, name="tar-sha256", daemon=True)
            self._thread.start()
        self._queue.put(data)

    def _run(self) -> None:
        assert self._queue is not None
        while (data := self._queue.get()) is not None:
            self._hash.update(data)

    def stop(self) -> None:
        """Wait for every chunk given so far to be hashed; the thread ends."""
        if self._queue is not None and self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._queue, self._thread = None, None
            self._seen = -(1 << 62)  # never restart: later chunks are hashed inline

    def hexdigest(self) -> str:
        self.stop()
        return self._hash.hexdigest()


class SplitRecorder:
    """Writes a record while a tar stream passes by: ``raw(bytes)`` and ``file(name, n)``
    in stream order; ``close()`` flushes. Consecutive content of one file merges."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._z = zlib.compressobj(1)  # headers compress well even at 1; 6 costs 2.5x the time
        self._frames = bytearray()  # frames not compressed yet: zlib sees big pieces
        self._raw = bytearray()
        self._file: bytes | None = None
        self._file_size = 0
        self._emit(MAGIC)

    def _emit(self, data: bytes) -> None:
        self._frames += data
        if len(self._frames) >= _RAW_FLUSH:
            self._compress()

    def _compress(self) -> None:
        chunk = self._z.compress(self._frames)
        self._frames.clear()
        if chunk:
            self._out.write(chunk)

    def _flush_raw(self) -> None:
        if self._raw:
            self._emit(b"R" + struct.pack(">I", len(self._raw)) + bytes(self._raw))
            self._raw.clear()

    def _flush_file(self) -> None:
        if self._file is not None:
            self._emit(b"F" + struct.pack(">QH", self._file_size, len(self._file)) + self._file)
            self._file = None
            self._file_size = 0

    def raw(self, data: bytes | bytearray | memoryview) -> None:
        if not len(data):
            return
        self._flush_file()
        self._raw += data
        if len(self._raw) >= _RAW_FLUSH:
            self._flush_raw()

    def file(self, name: str, size: int) -> None:
        """``size`` more content bytes of the regular file ``name`` (a layer path)."""
        if not size:
            return
        encoded = name.encode("utf-8", "surrogateescape")
        if len(encoded) > 0xFFFF:
            raise InvalidInputError(f"tar entry {name[:80]!r}: name too long to record")
        self._flush_raw()
        if self._file is not None and self._file != encoded:
            self._flush_file()
        self._file = encoded
        self._file_size += size

    def close(self) -> None:
        self._flush_raw()
        self._flush_file()
        self._compress()
        self._out.write(self._z.flush())


@dataclass(frozen=True)
class RawOp:
    data: bytes


@dataclass(frozen=True)
class FileOp:
    name: str
    size: int


def read_record(record: BinaryIO) -> Iterator[RawOp | FileOp]:
    """The frames of a record, in order; InvalidInputError if it is damaged."""
    try:
        data = zlib.decompress(record.read())
    except zlib.error as exc:
        raise InvalidInputError(f"tar-split record is corrupt: {exc}") from exc
    view = memoryview(data)
    if bytes(view[: len(MAGIC)]) != MAGIC:
        raise InvalidInputError("not a lamina tar-split record")
    pos, end = len(MAGIC), len(data)
    unpack_raw, unpack_file = struct.Struct(">I").unpack_from, struct.Struct(">QH").unpack_from
    while pos < end:
        kind = data[pos]
        if kind == 0x52 and pos + 5 <= end:  # R
            (n,) = unpack_raw(data, pos + 1)
            pos += 5
            if pos + n > end:
                break
            yield RawOp(data[pos : pos + n])
            pos += n
        elif kind == 0x46 and pos + 11 <= end:  # F
            size, n = unpack_file(data, pos + 1)
            pos += 11
            if pos + n > end:
                break
            yield FileOp(data[pos : pos + n].decode("utf-8", "surrogateescape"), size)
            pos += n
        else:
            raise InvalidInputError(f"tar-split record: bad frame at {pos}")
    if pos != end:
        raise InvalidInputError("tar-split record is truncated")


def _file_chunks(fd: int, size: int, name: str) -> Iterator[bytes | memoryview]:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size != size:
        raise DigestMismatchError(f"snapshot file {name!r}: size", str(size), str(st.st_size))
    pos = 0
    sparse = st.st_blocks * 512 < size
    while pos < size:
        if sparse:
            try:
                data_at = os.lseek(fd, pos, _SEEK_DATA)
            except OSError:
                data_at = size  # ENXIO: only a hole is left
            while pos < min(data_at, size):
                n = min(_CHUNK, min(data_at, size) - pos)
                yield memoryview(_ZEROS)[:n]
                pos += n
            if pos >= size:
                break
            os.lseek(fd, pos, os.SEEK_SET)
        data = os.read(fd, min(_CHUNK, size - pos))
        if not data:
            raise DigestMismatchError(f"snapshot file {name!r}: size", str(size), str(pos))
        pos += len(data)
        yield data


_PREFETCH_FILES = 256  # files being read ahead of the one being sent
_PREFETCH_BYTES = 64 << 20  # at most this much read ahead
_PREFETCH_MAX = 1 << 20  # a file up to this size is read whole by a prefetch thread
_PREFETCH_THREADS = 12  # 4 advising, 8 reading: a cold disk answers many at once
_ADVISE_AHEAD = 4096  # files the kernel is asked to read ahead of the reads
_ADVISE_CHUNK = 128  # files per advising task
_ADVISE_TASKS = 4  # advising tasks at once (they share the pool with the reads)
_MAX_DIRS = 256  # directory fds the prefetch keeps open
_PIECE = 1 << 20  # what rebuild_chunks yields: raw records and small files joined


def _fetch(parent: int, name: str, base: str, size: int) -> tuple[int, bytes | None]:
    """Open ``base`` in the directory ``parent``; a file of up to ``_PREFETCH_MAX`` bytes
    that is not sparse is read whole and closed here (fd -1), any other is returned
    open, to be streamed: a prefetch thread's job."""
    try:
        fd = os.open(base, _READ_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):  # ELOOP: a symlink
            raise DigestMismatchError(f"snapshot file {name!r}", "present", "missing") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            raise DigestMismatchError(f"snapshot file {name!r}: size", str(size), str(st.st_size))
        if size > _PREFETCH_MAX or st.st_blocks * 512 < size:
            return fd, None
        data = os.pread(fd, size, 0)
        while len(data) < size:
            more = os.pread(fd, size - len(data), len(data))
            if not more:
                raise DigestMismatchError(
                    f"snapshot file {name!r}: size", str(size), str(len(data))
                )
            data += more
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return -1, data


def _advise(snapshot: str, files: list[FileOp]) -> None:
    """Ask the kernel to read ``files`` of ``snapshot`` into the page cache, without
    waiting: a hint, so a file that is not there (the read will say so) is passed over."""
    root = ScopedRoot(snapshot)
    try:
        for op in files:
            parts = split_entry_path(op.name) if op.name else []
            try:
                parent = root.parent(parts, op.name, create=False) if parts else None
                if parent is None:
                    continue
                fd = os.open(parts[-1], _READ_FLAGS | os.O_NONBLOCK, dir_fd=parent)
            except (OSError, InvalidInputError):
                continue
            try:
                os.posix_fadvise(fd, 0, op.size, os.POSIX_FADV_WILLNEED)
            except OSError:
                pass
            finally:
                os.close(fd)
    finally:
        root.close()


class _Prefetch:
    """Snapshot files in record order, opened and (small ones) read by a pool of threads
    up to ``_PREFETCH_FILES`` ahead: a cold snapshot of many small files is read with many
    requests in flight, not one seek at a time. Paths are resolved here, by the one
    resolver (no symlink followed); the threads open the last component in its parent
    (a directory fd of this object's own, kept until no thread can be using it)."""

    def __init__(self, root: ScopedRoot, ops: list[RawOp | FileOp], snapshot: str) -> None:
        self._root = root
        self._snapshot = snapshot
        self._files = [op for op in ops if isinstance(op, FileOp)]
        self._next = 0
        self._advised = 0  # files [0, _advised) were (or are being) advised
        self._advising: deque[Future[None]] = deque()
        self._ahead: deque[tuple[FileOp, Future[tuple[int, bytes | None]]]] = deque()
        self._bytes = 0
        self._dirs: dict[tuple[str, ...], int] = {}
        self._pool = ThreadPoolExecutor(_PREFETCH_THREADS, "snapshot-read")

    def _parent(self, parts: list[str], name: str) -> int:
        key = tuple(parts[:-1])
        fd = self._dirs.get(key)
        if fd is None:
            if len(self._dirs) >= _MAX_DIRS:
                wait([future for _op, future in self._ahead])  # no thread uses them now
                self._close_dirs()
            parent = self._root.parent(parts, name, create=False) if parts else None
            if parent is None:
                raise DigestMismatchError(f"snapshot file {name!r}", "present", "missing")
            fd = self._dirs[key] = os.dup(parent)
        return fd

    def _close_dirs(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()

    def _submit(self) -> None:
        op = self._files[self._next]
        self._next += 1
        parts = split_entry_path(op.name) if op.name else []
        parent = self._parent(parts, op.name)
        future = self._pool.submit(_fetch, parent, op.name, parts[-1], op.size)
        self._ahead.append((op, future))
        self._bytes += min(op.size, _PREFETCH_MAX + 1)

    def _advise(self) -> None:
        """Keep the kernel reading ``_ADVISE_AHEAD`` files ahead of the reads, in chunks
        (``posix_fadvise(WILLNEED)``: many requests in flight at once, merged where the
        files lie side by side); by then the reads find their pages in the cache."""
        while self._advising and self._advising[0].done():
            self._advising.popleft()
        limit = min(len(self._files), self._next + _ADVISE_AHEAD)
        while self._advised < limit and len(self._advising) < _ADVISE_TASKS:
            chunk = self._files[self._advised : self._advised + _ADVISE_CHUNK]
            self._advised += len(chunk)
            self._advising.append(self._pool.submit(_advise, self._snapshot, chunk))

    def take(self, op: FileOp) -> tuple[int, bytes | None]:
        """The content of ``op``, the next file of the record, when it was read whole
        (fd -1), else its open fd (the caller closes it) and None."""
        self._advise()
        while self._next < len(self._files) and (
            not self._ahead
            or (len(self._ahead) < _PREFETCH_FILES and self._bytes < _PREFETCH_BYTES)
        ):
            self._submit()
        queued, future = self._ahead.popleft()
        assert queued is op
        self._bytes -= min(op.size, _PREFETCH_MAX + 1)
        return future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for _op, future in self._ahead:
            if not future.cancelled() and future.exception() is None:
                fd = future.result()[0]
                if fd >= 0:
                    os.close(fd)
        self._ahead.clear()
        self._close_dirs()


def rebuild_chunks(
    snapshot: str | os.PathLike[str], record: BinaryIO
) -> Generator[bytes | memoryview, None, None]:
    """The layer's tar stream rebuilt from ``snapshot`` and its ``record``, in chunks
    (raw records and small files joined into pieces of about a MiB).

    Not verified here: hash what it yields (``RebuiltTar`` does) and compare with the diff_id.
    A file missing or of the wrong size raises DigestMismatchError at once.
    """
    ops = list(read_record(record))
    root = ScopedRoot(os.fspath(snapshot))
    prefetch = _Prefetch(root, ops, os.fspath(snapshot))
    piece: list[bytes] = []
    piece_size = 0
    try:
        for op in ops:
            if isinstance(op, RawOp):
                data: bytes | None = op.data
            else:
                fd, data = prefetch.take(op)
                if data is None:
                    try:
                        if piece:
                            yield b"".join(piece)
                            piece, piece_size = [], 0
                        yield from _file_chunks(fd, op.size, op.name)
                    finally:
                        os.close(fd)
                    continue
            assert data is not None
            piece.append(data)
            piece_size += len(data)
            if piece_size >= _PIECE:
                yield b"".join(piece)
                piece, piece_size = [], 0
        if piece:
            yield b"".join(piece)
    finally:
        prefetch.close()
        root.close()


class RebuiltTar:
    """A readable stream of the rebuilt tar that raises DigestMismatchError at its end
    unless the bytes hash to ``diff_id`` (and, if given, number ``size``)."""

    def __init__(
        self,
        snapshot: str | os.PathLike[str],
        record_path: str | os.PathLike[str],
        diff_id: str,
        size: int | None = None,
        on_chunk: Callable[[bytes | memoryview], None] | None = None,
    ) -> None:
        self._file = open(record_path, "rb")  # noqa: SIM115 - closed by close()
        self._chunks = rebuild_chunks(snapshot, self._file)
        self._hash = ThreadedSha256()
        self._diff_id = diff_id
        self._size = size
        self._on_chunk = on_chunk
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
                self._check()
                break
            self._hash.update(chunk)
            self.count += len(chunk)
            if self._size is not None and self.count > self._size:
                raise DigestMismatchError(
                    f"layer {self._diff_id} rebuilt from its snapshot: size",
                    str(self._size), f"more than {self._size}",
                )  # fmt: skip
            if self._on_chunk is not None:
                self._on_chunk(chunk)
            self._pending = memoryview(chunk)
            if self._size is not None and self.count == self._size:
                # A reader that stops at the known size never asks for EOF: check now,
                # before the last bytes go out.
                if next(self._chunks, None) is not None:
                    raise DigestMismatchError(
                        f"layer {self._diff_id} rebuilt from its snapshot: size",
                        str(self._size), f"more than {self._size}",
                    )  # fmt: skip
                self._done = True
                self._check()
        whole = self._pending.obj
        if isinstance(whole, bytes) and len(self._pending) == len(whole) <= n:
            self._pending = memoryview(b"")
            return whole  # a whole piece, as it came: no copy
        out = bytes(self._pending[:n])
        self._pending = self._pending[n:]
        return out

    def _check(self) -> None:
        actual = "sha256:" + self._hash.hexdigest()
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


class _Skeleton:
    """The tar stream of a record with every file's content replaced by zeros: enough
    to read the headers back without touching the snapshot."""

    def __init__(self, record: BinaryIO) -> None:
        self._ops = read_record(record)
        self._pending = memoryview(b"")
        self._zeros = 0

    def read(self, n: int = -1, /) -> bytes:
        n = _CHUNK if n is None or n < 0 else n
        while not self._pending and not self._zeros:
            op = next(self._ops, None)
            if op is None:
                return b""
            if isinstance(op, RawOp):
                self._pending = memoryview(op.data)
            else:
                self._zeros = op.size
        if self._pending:
            out = bytes(self._pending[:n])
            self._pending = self._pending[n:]
            return out
        k = min(n, self._zeros, _CHUNK)
        self._zeros -= k
        return _ZEROS[:k]


def record_entries(record_path: str | os.PathLike[str]) -> Iterator[TarEntry]:
    """Every entry of a layer, in tar order, read from its tar-split record alone (the
    headers it keeps): what a per-layer index needs, without touching the snapshot."""
    from lamina.layers._tarread import Limits, TarReader

    with open(record_path, "rb") as f:
        reader = TarReader(_Skeleton(f), Limits(max_total_bytes=1 << 62), digest=False)
        for entry, _content in reader.entries():
            yield entry


def count_entries(snapshot: str | os.PathLike[str]) -> int:
    """How many entries (of any type, the root not counted) a snapshot directory holds."""
    total = 0
    for _top, dirs, files in os.walk(snapshot):
        total += len(dirs) + len(files)
    return total


def snapshot_extras(
    snapshot: str | os.PathLike[str], record_path: str | os.PathLike[str]
) -> list[str]:
    """Paths in ``snapshot`` that its layer's tar does not account for (a file added behind
    lamina's back), read from the record's headers alone."""
    from lamina.layers import _whiteout

    expected: set[tuple[str, ...]] = set()
    for entry in record_entries(record_path):
        parts = split_entry_path(entry.name)
        if not parts:
            continue
        marker, victim = _whiteout.classify(parts[-1])
        if marker is _whiteout.Marker.OPAQUE:
            parts = parts[:-1]
        elif marker is _whiteout.Marker.WHITEOUT:
            parts = [*parts[:-1], victim]
        for i in range(1, len(parts) + 1):
            expected.add(tuple(parts[:i]))
    extras: list[str] = []
    root = os.fspath(snapshot)
    for top, dirs, files in os.walk(root):
        rel = os.path.relpath(top, root)
        prefix = () if rel == "." else tuple(rel.split(os.sep))
        for name in dirs + files:
            if (*prefix, name) not in expected:
                extras.append("/".join((*prefix, name)))
        dirs[:] = [d for d in dirs if (*prefix, d) in expected]
    return sorted(extras)
