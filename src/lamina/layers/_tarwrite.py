"""The deterministic layer writer: a changeset → an OCI layer tar on a binary stream.

Headers come from ``_tarheader.build_header`` (ustar whenever the entry fits, PAX only
when it must; the one encoder, which transport's archive writer uses too). Only numeric owners, the
modification time (seconds, clamped to ``source_date_epoch``) and no atime/ctime are
recorded, so the same tree gives the same bytes anywhere. File bodies are read with
``readv`` into one reusable buffer that is flushed in large chunks.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import stat
import subprocess
import sys
from array import array
from collections.abc import Callable, Iterable, Sized
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from lamina.errors import LaminaError
from lamina.layers import _whiteout
from lamina.layers._changes import Change, ChangeKind, read_xattrs
from lamina.layers._hashworker import END, HEAD
from lamina.layers._tarheader import build_header
from lamina.layers._tarread import MAX_DEPTH, too_deep
from lamina.layers._tarsplit import SplitRecorder

if TYPE_CHECKING:
    from lamina.layers._index import EntryCollector

_BLOCK = 512
_CHUNK = 1 << 20
_BUF = _CHUNK + 4 * _BLOCK  # a buffer: flushed once it holds _CHUNK, headers fit after
_BUFFERS = 3  # one being filled, up to two being hashed
# The hashing process's: more, so its start (~30 ms) and its turns on a busy machine
# do not stop the writer.
_PROCESS_BUFFERS = 12
# A layer of at least this many entries whose files are indexed hashes in a child
# process (`_ProcessHashing`): below, its start (~20 ms) costs more than the thread's
# GIL hand-overs it saves.
_PROCESS_MIN_ENTRIES = 2000
_NOATIME = getattr(os, "O_NOATIME", 0)


@dataclass(frozen=True)
class LayerStats:
    """What was written: ``diff_id`` is ``sha256:<hex>`` of the uncompressed tar."""

    diff_id: str
    size: int
    entries: int


class DigestingSink(Protocol):
    """A stream that hashes the uncompressed tar itself (e.g. a LayerBlobWriter)."""

    def write(self, data: Any, /) -> int: ...

    def uncompressed_digest(self) -> tuple[str, int]: ...


_EMPTY = hashlib.sha256().hexdigest()


def _buffers() -> list[bytearray]:
    return [bytearray(_BUF) for _ in range(_BUFFERS)]


class _ThreadHashing:
    """The hashes on one thread of this process (hashlib drops the GIL for large
    updates). A small layer's last buffer is hashed right there, no thread started.
    Each per-file span costs the thread one GIL hand-over: many small files are
    `_ProcessHashing`'s case."""

    def __init__(self, stream: bool) -> None:
        self._arrays = _buffers()
        self.bufs = [memoryview(b) for b in self._arrays]
        self._stream = hashlib.sha256() if stream else None
        self._files: dict[int, Any] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._busy: list[Future[None] | None] = [None] * _BUFFERS

    def submit(self, n: int, length: int, spans: list[int], last: bool = False) -> None:
        if self._stream is None and not spans:
            return  # the sink hashes the stream itself
        if last and self._pool is None:
            self._hash(n, length, spans)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="layer-digests")
        self._busy[n] = self._pool.submit(self._hash, n, length, spans)

    def _hash(self, n: int, length: int, spans: list[int]) -> None:
        view, files = self.bufs[n], self._files
        for i in range(0, len(spans), 3):
            digest = files.get(spans[i])
            if digest is None:
                digest = files[spans[i]] = hashlib.sha256()
            digest.update(view[spans[i + 1] : spans[i + 2]])
        if self._stream is not None:
            self._stream.update(view[:length])

    def wait(self, n: int) -> None:
        future = self._busy[n]
        if future is not None:
            self._busy[n] = None
            future.result()

    def finish(self, files: int, meanwhile: Callable[[], None]) -> tuple[str | None, list[str]]:
        meanwhile()
        for n in range(_BUFFERS):
            self.wait(n)
        got = self._files
        digests = [got[f].hexdigest() if f in got else _EMPTY for f in range(files)]
        return (None if self._stream is None else self._stream.hexdigest()), digests

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


# The hashing process runs layers/_hashworker.py by path (its docstring has the protocol):
# only stdlib, no lamina import, so `python -I -S` starts in ~20 ms.
_WORKER = os.path.join(os.path.dirname(__file__), "_hashworker.py")


class _ProcessHashing:
    """The hashes in a child process, beside the writer: its own interpreter, so the
    per-file updates of many small files need no hand-over of this process's GIL (one
    per span on a thread: ~10 µs each, 0.5 s of CPU for 50,000 files). The buffers live
    in a memfd both map; each buffer costs one message and one byte back. A layer with
    many entries gets it (`_PROCESS_MIN_ENTRIES`); if it cannot start, the thread does."""

    def __init__(self, stream: bool) -> None:
        size = _BUF * _PROCESS_BUFFERS
        fd = os.memfd_create("lamina-layer-buffers", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", _WORKER, str(fd), str(size),
                 "1" if stream else "0"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                pass_fds=(fd,),
            )  # fmt: skip
        finally:
            os.close(fd)
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._to, self._from = self._proc.stdin.fileno(), self._proc.stdout.fileno()
        whole = memoryview(self._map)
        self.bufs = [whole[n * _BUF : (n + 1) * _BUF] for n in range(_PROCESS_BUFFERS)]
        self._pending: list[int] = []  # buffers handed over, not yet hashed, in order

    def submit(self, n: int, length: int, spans: list[int], last: bool = False) -> None:
        # Spans go as they are, relative to the buffer (the worker slices its own view of
        # it): one C call each way, no per-span work here.
        self._send(HEAD.pack(n * _BUF, length, len(spans) // 3) + array("Q", spans).tobytes())
        self._pending.append(n)

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._to, view) :]
        except BrokenPipeError:
            self._failed()

    def _failed(self) -> None:
        raise LaminaError(
            f"the layer hashing process ended early (exit status {self._proc.wait()})",
            hint="this is a bug in lamina or the machine ran out of memory; try again",
        )

    def wait(self, n: int) -> None:
        while n in self._pending:
            got = os.read(self._from, len(self._pending))
            if not got:
                self._failed()
            del self._pending[: len(got)]

    def finish(self, files: int, meanwhile: Callable[[], None]) -> tuple[str | None, list[str]]:
        # The end goes right after the last buffer: the process answers for the buffers
        # still pending, then with the digests; `meanwhile` runs while it hashes.
        self._send(HEAD.pack(0, END, files))
        meanwhile()
        chunks = []
        while data := os.read(self._from, 1 << 20):
            chunks.append(data)
        answer = b"".join(chunks)
        acks = len(self._pending)
        self._pending.clear()
        lines = answer[acks:].decode("ascii").split("\n")
        if self._proc.wait() != 0 or answer[:acks] != b"k" * acks or len(lines) != files + 1:
            self._failed()
        return lines[0] or None, lines[1:]

    def close(self) -> None:
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                pipe.close()
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for buf in self.bufs:
            buf.release()
        with contextlib.suppress(BufferError):  # a view still held (a traceback's): GC
            self._map.close()


class _Output:
    """Reusable buffers in front of the sink; hashes what it flushes unless the sink does.

    Hashing runs beside the writer (`_ThreadHashing`, or `_ProcessHashing` for a layer of
    many entries whose files are indexed): a flushed buffer is handed over and the next
    one is filled meanwhile; `finish` waits for all. ``copy_file`` can also hand each
    chunk it reads to a copier (a COPY's snapshot), so bytes are read once.
    """

    def __init__(
        self,
        out: BinaryIO | DigestingSink | None,
        record: SplitRecorder | None = None,
        entries: int = 0,
    ) -> None:
        self.out = out
        self.record = record
        stream = out is None or not hasattr(out, "uncompressed_digest")
        self.hashing: _ThreadHashing | _ProcessHashing = _ThreadHashing(stream)
        if entries >= _PROCESS_MIN_ENTRIES:
            with contextlib.suppress(OSError):  # no memfd, no fork: the thread does it
                self.hashing = _ProcessHashing(stream)
        self.current = 0
        self.view = self.hashing.bufs[0]
        self.spans: list[int] = []  # (file number, start, end) in `view`
        self.files = 0  # file numbers handed out
        self.pos = 0
        self.total = 0
        self.stream_digest: str | None = None
        self.file_digests: list[str] = []

    def new_file(self) -> int:
        """A number for a file whose content `copy_file` hashes (its index digest)."""
        self.files += 1
        return self.files - 1

    def flush(self, last: bool = False) -> None:
        if not self.pos:
            return
        chunk = self.view[: self.pos]
        self.hashing.submit(self.current, self.pos, self.spans, last)
        self.spans = []
        if self.out is not None:
            self.out.write(chunk)
        self.total += self.pos
        self.pos = 0
        self.current = (self.current + 1) % len(self.hashing.bufs)
        self.hashing.wait(self.current)  # its bytes are hashed: it may be refilled
        self.view = self.hashing.bufs[self.current]

    def finish(self, meanwhile: Callable[[], None] = lambda: None) -> None:
        """Flush, and wait for every hash to have seen every byte; `meanwhile` runs
        while the last ones are hashed."""
        self.flush(last=True)
        self.stream_digest, self.file_digests = self.hashing.finish(self.files, meanwhile)

    def close(self) -> None:
        self.hashing.close()

    def put(self, data: bytes) -> None:
        if self.record is not None:
            self.record.raw(data)
        end = self.pos + len(data)
        if end <= _BUF:
            self.view[self.pos : end] = data
            self.pos = end
            return
        rest = memoryview(data)
        while rest:  # larger than what is left (a huge PAX header): buffer by buffer
            if self.pos == _BUF:
                self.flush()
            take = min(_BUF - self.pos, len(rest))
            self.view[self.pos : self.pos + take] = rest[:take]
            self.pos += take
            rest = rest[take:]

    def copy_file(
        self,
        fd: int,
        size: int,
        source: str,
        name: str,
        digest: int | None = None,
        copy_to: Callable[[memoryview], None] | None = None,
    ) -> None:
        """Copy `size` bytes of `fd` (the layer path `name`); file number `digest` (from
        `new_file`) gets their sha256 (in `file_digests` once `finish` returns);
        `copy_to` is called with them too."""
        if self.record is not None:
            self.record.file(name, size)
        remaining = size
        while remaining:
            if self.pos >= _CHUNK:
                self.flush()
            want = min(_CHUNK - self.pos, remaining)
            n = os.readv(fd, [self.view[self.pos : self.pos + want]])
            if n == 0:
                raise LaminaError(
                    f"{source}: file shrank while it was written into a layer",
                    hint="do not modify a tree while lamina commits it",
                )
            if digest is not None:
                self.spans += (digest, self.pos, self.pos + n)
            if copy_to is not None:
                copy_to(self.view[self.pos : self.pos + n])
            self.pos += n
            remaining -= n
        pad = -size % _BLOCK
        if pad:
            self.put(bytes(pad))


def _open_nofollow(path: str) -> int:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags | _NOATIME)
    except PermissionError:
        return os.open(path, flags)  # O_NOATIME needs ownership or CAP_FOWNER


_TYPEFLAG = {
    stat.S_IFREG: b"0",
    stat.S_IFDIR: b"5",
    stat.S_IFLNK: b"2",
    stat.S_IFCHR: b"3",
    stat.S_IFBLK: b"4",
    stat.S_IFIFO: b"6",
}


_KIND = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
    stat.S_IFIFO: "fifo",
}


class EntryCopier(Protocol):
    """Writes each entry where ``write_layer`` reads it from (a COPY's snapshot, see
    ``_stagecopy.DirectCopy``): the layer's bytes are read once, hashed and written."""

    def place(
        self, change: Change, st: os.stat_result, xattrs: dict[str, bytes]
    ) -> tuple[int, bool] | None:
        """Make ``change``'s entry (as ``st`` and ``xattrs`` say). For a regular file with
        content: the descriptor to read it from, and whether its bytes go to ``write``
        then ``finish_file``; else None."""
        ...

    def write(self, data: memoryview) -> None:
        """The next bytes of the file placed last."""
        ...

    def finish_file(self, change: Change, st: os.stat_result, xattrs: dict[str, bytes]) -> None:
        """Every byte of the file placed last went to ``write``."""
        ...

    def done(self) -> None:
        """Every entry is written: finish what waits for the last (directory mtimes)."""
        ...


def write_layer(
    changes: Iterable[Change],
    out: BinaryIO | DigestingSink | None,
    *,
    source_date_epoch: int | None = None,
    record: SplitRecorder | None = None,
    collect: EntryCollector | None = None,
    copier: EntryCopier | None = None,
) -> LayerStats:
    """Write ``changes`` (in layer order, see ``sort_changes``) as a tar to ``out``.

    ``out=None`` only hashes (the diff_id of a layer whose snapshot is the changes' own
    directory); ``record`` receives the tar-split record, file content named by
    ``Change.path``, so the tar can be rebuilt from that directory. ``collect`` gets each
    entry as it is written (its file index; file content hashed from the bytes being
    copied, never read twice). ``copier``: each entry is also written to where the
    copier puts it (a COPY's snapshot), file bodies from the same bytes; headers still
    come from the change (its ``st``, xattrs, link). The hashes run beside the writer,
    on a thread or (an indexed layer of many entries) in a child process.
    """
    many = len(changes) if collect is not None and isinstance(changes, Sized) else 0
    sink = _Output(out, record, many)
    try:
        entries = _write_entries(changes, sink, source_date_epoch, collect, copier)
        if copier is not None:
            copier.done()
        sink.put(bytes(2 * _BLOCK))
        # The index's rows become columns while the last buffers are hashed.
        sink.finish(collect.prepare if collect is not None else lambda: None)
    finally:
        sink.close()
    if collect is not None:
        collect.resolve(sink.file_digests)
    if sink.stream_digest is not None:
        diff_id, size = "sha256:" + sink.stream_digest, sink.total
    else:
        diff_id, size = out.uncompressed_digest()  # type: ignore[union-attr]
    return LayerStats(diff_id, size, entries)


def _no_path(path: str) -> str:
    raise AssertionError("no file index is collected")


def _write_entries(
    changes: Iterable[Change],
    sink: _Output,
    source_date_epoch: int | None,
    collect: EntryCollector | None,
    copier: EntryCopier | None,
) -> int:
    entries = 0
    first_path: dict[tuple[int, int], tuple[bytes, int, int]] = {}  # -> path, size, file
    no_xattrs: dict[str, bytes] = {}
    # The file index's rows, plain tuples (`EntryCollector.writer_rows`): the change's
    # path as it is (`prepare` cleans them all at once), a file's digest its number in
    # `sink` until the hashes are done.
    rows = collect.writer_rows() if collect is not None else None
    index_path = _no_path if collect is None else collect.clean_path
    index_text = _no_path if collect is None else collect.text
    for change in changes:
        path = change.path.encode("utf-8", "surrogateescape")
        if path.count(b"/") >= MAX_DEPTH:  # no reader would take it back (Limits.max_depth)
            raise too_deep(change.path)
        if change.kind is not ChangeKind.ADD:
            head, _, base = path.rpartition(b"/")
            marker = (
                _whiteout.OPAQUE_MARKER
                if change.kind is ChangeKind.OPAQUE
                else _whiteout.whiteout_name(base.decode("utf-8", "surrogateescape"))
            ).encode("utf-8", "surrogateescape")
            where = path if change.kind is ChangeKind.OPAQUE else head
            name = where + b"/" + marker if where else marker
            mtime = 0 if source_date_epoch is None else source_date_epoch
            sink.put(build_header(name, b"0", 0o644, 0, 0, 0, mtime))
            entries += 1
            if rows is not None:
                kind = "opaque" if change.kind is ChangeKind.OPAQUE else "whiteout"
                rows.append((change.path, kind, 0, 0, 0, 0, -1, ""))
            continue
        st = change.st if change.st is not None else os.lstat(change.source)
        fmt = stat.S_IFMT(st.st_mode)
        typeflag = _TYPEFLAG.get(fmt)
        if typeflag is None:
            continue  # a socket has no tar form
        mtime = st.st_mtime_ns // 1_000_000_000
        if source_date_epoch is not None and mtime > source_date_epoch:
            mtime = source_date_epoch
        mode = stat.S_IMODE(st.st_mode)
        size = 0
        linkname = b""
        if fmt == stat.S_IFREG:
            size = st.st_size
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                first = first_path.get(key)
                if first is not None:
                    target, target_size, target_file = first
                    if copier is not None:
                        copier.place(change, st, no_xattrs)
                    sink.put(build_header(path, b"1", mode, st.st_uid, st.st_gid, 0, mtime, target))
                    entries += 1
                    if rows is not None:  # the target's size and digest
                        rows.append((change.path, "hardlink", target_size, mode,
                                     st.st_uid, st.st_gid, target_file,
                                     index_path(os.fsdecode(target))))  # fmt: skip
                    continue
                first_path[key] = (path, size, -1 if rows is None else sink.files)
        elif fmt == stat.S_IFDIR:
            path += b"/"
        elif fmt == stat.S_IFLNK:
            linkname = os.fsencode(os.readlink(change.source))
        xattrs = read_xattrs(change.source)
        major = minor = 0
        if fmt in (stat.S_IFCHR, stat.S_IFBLK):
            major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        body = copier.place(change, st, xattrs) if copier is not None else None
        sink.put(build_header(
            path, typeflag, mode, st.st_uid, st.st_gid, size, mtime, linkname,
            major, minor, xattrs,
        ))  # fmt: skip
        entries += 1
        digest = sink.new_file() if rows is not None and fmt == stat.S_IFREG else None
        if size:
            src, copy = body if body is not None else (_open_nofollow(change.source), False)
            try:
                sink.copy_file(
                    src,
                    size,
                    change.source,
                    change.path,
                    digest,
                    copier.write if copy and copier is not None else None,
                )
                if copy and copier is not None:
                    copier.finish_file(change, st, xattrs)
            finally:
                os.close(src)
        if rows is not None:
            rows.append((
                change.path, _KIND[fmt], size, mode, st.st_uid, st.st_gid,
                -1 if digest is None else digest,
                index_text(os.fsdecode(linkname)) if linkname else "",
            ))  # fmt: skip
    return entries
