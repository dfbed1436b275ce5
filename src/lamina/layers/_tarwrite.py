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
from collections.abc import Iterable
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


class _Output:
    """A reusable buffer in front of the sink; hashes what it flushes unless the sink does."""

    def __init__(
        self, out: BinaryIO | DigestingSink | None, record: SplitRecorder | None = None
    ) -> None:
        self.out = out
        self.record = record
        self.hash = None if hasattr(out, "uncompressed_digest") else hashlib.sha256()
        if out is None:
            self.hash = hashlib.sha256()
        self.buf = bytearray(_CHUNK + 4 * _BLOCK)
        self.view = memoryview(self.buf)
        self.pos = 0
        self.total = 0

    def flush(self) -> None:
        if self.pos:
            chunk = self.view[: self.pos]
            if self.hash is not None:
                self.hash.update(chunk)
            if self.out is not None:
                self.out.write(chunk)
            self.total += self.pos
            self.pos = 0

    def put(self, data: bytes) -> None:
        if self.record is not None:
            self.record.raw(data)
        if len(data) > len(self.buf) - self.pos:
            self.flush()
            if len(data) > len(self.buf):
                if self.hash is not None:
                    self.hash.update(data)
                if self.out is not None:
                    self.out.write(data)
                self.total += len(data)
                return
        self.buf[self.pos : self.pos + len(data)] = data
        self.pos += len(data)

    def copy_file(
        self, fd: int, size: int, source: str, name: str, digest: Any = None
    ) -> None:
        """Copy `size` bytes of `fd` (the layer path `name`); `digest` (a hashlib object)
        sees them on the way."""
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
                digest.update(self.view[self.pos : self.pos + n])
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


def write_layer(
    changes: Iterable[Change],
    out: BinaryIO | DigestingSink | None,
    *,
    source_date_epoch: int | None = None,
    record: SplitRecorder | None = None,
    collect: EntryCollector | None = None,
    content_root: str | None = None,
) -> LayerStats:
    """Write ``changes`` (in layer order, see ``sort_changes``) as a tar to ``out``.

    ``out=None`` only hashes (the diff_id of a layer whose snapshot is the changes' own
    directory); ``record`` receives the tar-split record, file content named by
    ``Change.path``, so the tar can be rebuilt from that directory. ``collect`` gets each
    entry as it is written (its file index; file content hashed from the bytes being
    copied, never read twice). ``content_root``: file bodies are read from
    ``content_root/<Change.path>`` (a copy just made there, see ``stage_changes``) instead
    of ``Change.source``; headers still come from the change (its ``st``, xattrs, link).
    """
    sink = _Output(out, record)
    entries = 0
    first_path: dict[tuple[int, int], bytes] = {}
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
        sink.put(build_header(
            path, typeflag, mode, st.st_uid, st.st_gid, size, mtime, linkname,
            major, minor, xattrs,
        ))  # fmt: skip
        entries += 1
        digest = hashlib.sha256() if collect is not None and fmt == stat.S_IFREG else None
        if size:
            body = (
                change.source if content_root is None
                else os.path.join(content_root, change.path)
            )  # fmt: skip
            fd = _open_nofollow(body)
            try:
                sink.copy_file(fd, size, body, change.path, digest)
            finally:
                os.close(fd)
        if collect is not None:
            collect.add(
                change.path, _KIND[fmt], size=size, mode=mode, uid=st.st_uid, gid=st.st_gid,
                digest=digest.hexdigest() if digest is not None else None,
                link=os.fsdecode(linkname),
            )  # fmt: skip
    sink.put(bytes(2 * _BLOCK))
    sink.flush()
    if sink.hash is not None:
        diff_id, size = "sha256:" + sink.hash.hexdigest(), sink.total
    else:
        diff_id, size = out.uncompressed_digest()  # type: ignore[union-attr]
    return LayerStats(diff_id, size, entries)
