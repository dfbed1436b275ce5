"""The deterministic layer writer: a changeset → an OCI layer tar on a binary stream.

Headers are built here rather than through ``tarfile.TarInfo``: ustar whenever the
entry fits (as Go's archive/tar does, so layers match what Docker writes), PAX only
for long or non-ASCII names, big numbers and xattrs. Only numeric owners, the
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
from typing import Any, BinaryIO, Protocol

from lamina.errors import LaminaError
from lamina.layers import _whiteout
from lamina.layers._changes import Change, ChangeKind, read_xattrs
from lamina.layers._tarsplit import SplitRecorder

_BLOCK = 512
_CHUNK = 1 << 20
_MAX_OCTAL = {8: 0o7777777, 12: 0o77777777777}
_PAX_NAME = b"././@PaxHeader"
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


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _split_ustar(name: bytes) -> tuple[bytes, bytes] | None:
    if len(name) <= 100:
        return b"", name
    cut = name.find(b"/", max(0, len(name) - 101))
    if 0 < cut <= 155 and len(name) - cut - 1 <= 100:
        return name[:cut], name[cut + 1 :]
    return None


def _pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def _ustar(
    name: bytes,
    prefix: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    typeflag: bytes,
    linkname: bytes = b"",
    devmajor: int = 0,
    devminor: int = 0,
) -> bytes:
    header = b"".join(
        (
            name.ljust(100, b"\0"),
            _octal(mode, 8),
            _octal(uid, 8),
            _octal(gid, 8),
            _octal(size, 12),
            _octal(mtime, 12),
            b"        ",
            typeflag,
            linkname.ljust(100, b"\0"),
            b"ustar\x0000",
            bytes(64),  # uname, gname: numeric owners only
            _octal(devmajor, 8),
            _octal(devminor, 8),
            prefix.ljust(155, b"\0"),
            bytes(12),
        )
    )
    checksum = b"%06o\0 " % sum(header)
    return header[:148] + checksum + header[156:]


def build_header(
    path: bytes,
    typeflag: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    linkname: bytes = b"",
    devmajor: int = 0,
    devminor: int = 0,
    xattrs: dict[str, bytes] | None = None,
) -> bytes:
    """One entry's header blocks: a PAX extension first only when ustar cannot hold it."""
    pax: list[tuple[bytes, bytes]] = []
    split = _split_ustar(path) if path.isascii() else None
    if split is None:
        pax.append((b"path", path))
        split = (b"", path[:100])
    if len(linkname) > 100 or not linkname.isascii():
        pax.append((b"linkpath", linkname))
        linkname = linkname[:100]
    for key, value, width in ((b"uid", uid, 8), (b"gid", gid, 8), (b"size", size, 12)):
        if value > _MAX_OCTAL[width]:
            pax.append((key, b"%d" % value))
    uid, gid = min(uid, _MAX_OCTAL[8]), min(gid, _MAX_OCTAL[8])
    if mtime < 0 or mtime > _MAX_OCTAL[12]:
        pax.append((b"mtime", b"%d" % mtime))
        mtime = min(max(mtime, 0), _MAX_OCTAL[12])
    for xname, xvalue in sorted((xattrs or {}).items()):
        pax.append((b"SCHILY.xattr." + xname.encode("utf-8", "surrogateescape"), xvalue))
    main = _ustar(
        split[1], split[0], mode, uid, gid, min(size, _MAX_OCTAL[12]), mtime,
        typeflag, linkname, devmajor, devminor,
    )  # fmt: skip
    if not pax:
        return main
    records = b"".join(_pax_record(k, v) for k, v in sorted(pax))
    ext = _ustar(_PAX_NAME, b"", 0o644, 0, 0, len(records), 0, b"x")
    return ext + records + bytes(-len(records) % _BLOCK) + main


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

    def copy_file(self, fd: int, size: int, source: str, name: str) -> None:
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


def write_layer(
    changes: Iterable[Change],
    out: BinaryIO | DigestingSink | None,
    *,
    source_date_epoch: int | None = None,
    record: SplitRecorder | None = None,
) -> LayerStats:
    """Write ``changes`` (in layer order, see ``sort_changes``) as a tar to ``out``.

    ``out=None`` only hashes (the diff_id of a layer whose snapshot is the changes' own
    directory); ``record`` receives the tar-split record, file content named by
    ``Change.path``, so the tar can be rebuilt from that directory.
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
        if size:
            fd = _open_nofollow(change.source)
            try:
                sink.copy_file(fd, size, change.source, change.path)
            finally:
                os.close(fd)
    sink.put(bytes(2 * _BLOCK))
    sink.flush()
    if sink.hash is not None:
        diff_id, size = "sha256:" + sink.hash.hexdigest(), sink.total
    else:
        diff_id, size = out.uncompressed_digest()  # type: ignore[union-attr]
    return LayerStats(diff_id, size, entries)
