"""The deterministic layer writer: a changeset → an OCI layer tar on a binary stream.

Headers come from ``_tarheader.build_header`` (ustar whenever the entry fits, PAX only
when it must; the one encoder, which transport's archive writer uses too). Only numeric owners, the
modification time (seconds, clamped to ``source_date_epoch``) and no atime/ctime are
recorded, so the same tree gives the same bytes anywhere. File bodies are read with
``readv`` into one reusable buffer that is flushed in large chunks.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from lamina.errors import LaminaError
from lamina.layers import _whiteout
from lamina.layers._changes import Change, ChangeKind, read_xattrs
from lamina.layers._tarheader import build_header
from lamina.layers._tarsplit import SplitRecorder

if TYPE_CHECKING:
    from lamina.layers._index import EntryCollector

_BLOCK = 512
_CHUNK = 1 << 20
_BUFFERS = 3  # one being filled, up to two being hashed
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


class _Hasher:
    """sha256 work done beside the writer, on another core (hashlib drops the GIL for
    large updates): each flushed buffer's file spans (the index's digests), then the
    buffer itself (the tar stream's digest), in one thread, in order. A buffer handed
    over is not written again until its future is done."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None

    def submit(
        self, stream: Any, chunk: Any, spans: list[tuple[Any, int, int]], view: memoryview
    ) -> Future[None]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="layer-digests")
        return self._pool.submit(_hash_buffer, stream, chunk, spans, view)

    def idle(self) -> bool:
        """Nothing was ever handed over (so nothing can be pending)."""
        return self._pool is None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _hash_buffer(
    stream: Any, chunk: Any, spans: list[tuple[Any, int, int]], view: memoryview
) -> None:
    for digest, start, end in spans:
        digest.update(view[start:end])
    if stream is not None:
        stream.update(chunk)


class _Output:
    """Reusable buffers in front of the sink; hashes what it flushes unless the sink does.

    Hashing runs beside the writer (`_Hasher`): a flushed buffer goes to the hash thread
    and the next one is filled meanwhile; `finish` waits for it (a layer that fits one
    buffer is hashed right there, no thread started). ``copy_file`` can also hand each
    chunk it reads to a copier (a COPY's snapshot), so bytes are read once.
    """

    def __init__(
        self, out: BinaryIO | DigestingSink | None, record: SplitRecorder | None = None
    ) -> None:
        self.out = out
        self.record = record
        self.hash = None if hasattr(out, "uncompressed_digest") else hashlib.sha256()
        if out is None:
            self.hash = hashlib.sha256()
        self.bufs = [bytearray(_CHUNK + 4 * _BLOCK) for _ in range(_BUFFERS)]
        self.busy: list[Future[None] | None] = [None] * _BUFFERS
        self.current = 0
        self.buf = self.bufs[0]
        self.view = memoryview(self.buf)
        self.spans: list[tuple[Any, int, int]] = []  # (file digest, start, end) in `buf`
        self.hasher = _Hasher()
        self.pos = 0
        self.total = 0

    def flush(self, last: bool = False) -> None:
        if not self.pos:
            return
        chunk = self.view[: self.pos]
        if last and self.hasher.idle():
            _hash_buffer(self.hash, chunk, self.spans, self.view)
            self.spans = []
        elif self.hash is not None or self.spans:
            self.busy[self.current] = self.hasher.submit(self.hash, chunk, self.spans, self.view)
            self.spans = []
        if self.out is not None:
            self.out.write(chunk)
        self.total += self.pos
        self.pos = 0
        self.current = (self.current + 1) % _BUFFERS
        self._wait(self.current)  # its bytes are hashed: it may be refilled
        self.buf = self.bufs[self.current]
        self.view = memoryview(self.buf)

    def finish(self) -> None:
        """Flush, and wait for every hash to have seen every byte."""
        self.flush(last=True)
        for n in range(_BUFFERS):
            self._wait(n)

    def _wait(self, n: int) -> None:
        future = self.busy[n]
        if future is not None:
            self.busy[n] = None
            future.result()

    def close(self) -> None:
        self.hasher.close()

    def put(self, data: bytes) -> None:
        if self.record is not None:
            self.record.raw(data)
        if len(data) > len(self.buf) - self.pos:
            self.flush()
            if len(data) > len(self.buf):
                if self.hash is not None:  # in order, behind what the thread has
                    self.hasher.submit(self.hash, data, [], self.view).result()
                if self.out is not None:
                    self.out.write(data)
                self.total += len(data)
                return
        self.buf[self.pos : self.pos + len(data)] = data
        self.pos += len(data)

    def copy_file(
        self,
        fd: int,
        size: int,
        source: str,
        name: str,
        digest: Any = None,
        copy_to: Callable[[memoryview], None] | None = None,
    ) -> None:
        """Copy `size` bytes of `fd` (the layer path `name`); `digest` (a hashlib object)
        sees them (once `finish` returns); `copy_to` is called with them too."""
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
                self.spans.append((digest, self.pos, self.pos + n))
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
    come from the change (its ``st``, xattrs, link). The hashes run on other threads.
    """
    sink = _Output(out, record)
    try:
        entries = _write_entries(changes, sink, source_date_epoch, collect, copier)
        if copier is not None:
            copier.done()
        sink.put(bytes(2 * _BLOCK))
        sink.finish()
    finally:
        sink.close()
    if collect is not None:
        collect.resolve()
    if sink.hash is not None:
        diff_id, size = "sha256:" + sink.hash.hexdigest(), sink.total
    else:
        diff_id, size = out.uncompressed_digest()  # type: ignore[union-attr]
    return LayerStats(diff_id, size, entries)


def _write_entries(
    changes: Iterable[Change],
    sink: _Output,
    source_date_epoch: int | None,
    collect: EntryCollector | None,
    copier: EntryCopier | None,
) -> int:
    entries = 0
    first_path: dict[tuple[int, int], bytes] = {}
    no_xattrs: dict[str, bytes] = {}
    for change in changes:
        path = change.path.encode("utf-8", "surrogateescape")
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
            if collect is not None:
                collect.marker(name.decode("utf-8", "surrogateescape"))
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
                target = first_path.get(key)
                if target is not None:
                    if copier is not None:
                        copier.place(change, st, no_xattrs)
                    sink.put(build_header(path, b"1", mode, st.st_uid, st.st_gid, 0, mtime, target))
                    entries += 1
                    if collect is not None:
                        collect.add(change.path, "hardlink", mode=mode, uid=st.st_uid,
                                    gid=st.st_gid, link=os.fsdecode(target))  # fmt: skip
                    continue
                first_path[key] = path
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
        digest = hashlib.sha256() if collect is not None and fmt == stat.S_IFREG else None
        if size:
            src, copy = body if body is not None else (_open_nofollow(change.source), False)
            try:
                sink.copy_file(src, size, change.source, change.path, digest,
                               copier.write if copy and copier is not None else None)
                if copy and copier is not None:
                    copier.finish_file(change, st, xattrs)
            finally:
                os.close(src)
        if collect is not None:
            collect.add(
                change.path, _KIND[fmt], size=size, mode=mode, uid=st.st_uid, gid=st.st_gid,
                hasher=digest, link=os.fsdecode(linkname),
            )  # fmt: skip
    return entries
