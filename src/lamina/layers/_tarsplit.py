"""The exact tar stream of a layer, kept beside its snapshot (as containers/storage's tar-split).

A snapshot holds a layer's files; the tar they came from also had headers, padding, an
end-of-archive marker and an order. The *record* keeps exactly those bytes, and for each
regular file only its name and how many content bytes it had. Rebuilding the tar is then
the record's bytes interleaved with the files' content read from the snapshot, byte for
byte the stream whose sha256 is the layer's diff_id.

Record format (zlib-compressed): ``MAGIC``, then frames::

    b"R" <u32 length> <bytes>             raw tar bytes (headers, padding, trailer)
    b"F" <u64 size> <u16 n> <name[n]>     `size` content bytes of the file `name`

The record trusts nothing it reads back: the rebuilt stream (layers/_rebuild) is hashed
and compared with the diff_id, so a snapshot changed behind lamina's back is found, never
served.
"""

from __future__ import annotations

import hashlib
import os
import queue
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from lamina.errors import InvalidInputError
from lamina.layers._scoped import split_entry_path

if TYPE_CHECKING:
    from lamina.layers._tarread import TarEntry

MAGIC = b"lamina-tar-split\x001\n"
_RAW_FLUSH = 1 << 20
_CHUNK = 1 << 20
_ZEROS = bytes(_CHUNK)


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


@dataclass(slots=True)
class RawOp:
    data: bytes


@dataclass(slots=True)
class FileOp:
    name: str
    size: int


def read_record(record: BinaryIO) -> Iterator[RawOp | FileOp]:
    """The frames of a record, in order, decompressed a MiB at a time as they are asked
    for (a rebuild starts reading files after the first frames, not after all of a 20 MB
    record); InvalidInputError if it is damaged, raised when the damage is reached."""
    compressed = record.read()
    z = zlib.decompressobj()

    def more() -> bytes:
        nonlocal compressed
        try:
            out = z.decompress(compressed, _CHUNK)
        except zlib.error as exc:
            raise InvalidInputError(f"tar-split record is corrupt: {exc}") from exc
        compressed = z.unconsumed_tail
        return out

    data = b""
    while len(data) < len(MAGIC) and (chunk := more()):
        data += chunk
    if data[: len(MAGIC)] != MAGIC:
        raise InvalidInputError("not a lamina tar-split record")
    pos, base = len(MAGIC), 0  # base: where ``data`` starts in the whole record
    unpack_raw, unpack_file = struct.Struct(">I").unpack_from, struct.Struct(">QH").unpack_from
    while True:
        end = len(data)
        while pos < end:
            kind = data[pos]
            if kind == 0x52:  # R
                if pos + 5 > end:
                    break
                (n,) = unpack_raw(data, pos + 1)
                if pos + 5 + n > end:
                    break
                yield RawOp(data[pos + 5 : pos + 5 + n])
                pos += 5 + n
            elif kind == 0x46:  # F
                if pos + 11 > end:
                    break
                size, n = unpack_file(data, pos + 1)
                if pos + 11 + n > end:
                    break
                yield FileOp(data[pos + 11 : pos + 11 + n].decode("utf-8", "surrogateescape"), size)
                pos += 11 + n
            else:
                raise InvalidInputError(f"tar-split record: bad frame at {base + pos}")
        chunk = more()
        if not chunk:
            break
        data = data[pos:] + chunk  # a frame cut in two by the MiB: joined, then read
        base += pos
        pos = 0
    if pos != len(data) or not z.eof:
        raise InvalidInputError("tar-split record is truncated")


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


def _xattr_drift(parent: int, name: str, spec: TarEntry) -> list[str]:
    """xattrs ``name`` (in the directory ``parent``, not followed) has that its header
    ``spec`` does not give it, or gives another value (a setcap behind lamina's back);
    overlayfs' own are not a layer's, and an ACL may come from its directory's default
    one. One the header has and the file lacks is not reported: the applier skips those
    the file system refuses (a user.* on a symlink)."""
    from lamina.layers import _whiteout

    path = f"/proc/self/fd/{parent}/{name}"  # the resolved directory, never a symlink
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return []  # a file system without xattrs
    wrong = []
    for xname in sorted(names):
        if _whiteout.is_overlay_xattr(xname):
            continue
        try:
            value = os.getxattr(path, xname, follow_symlinks=False)
        except OSError:
            continue
        if xname not in spec.xattrs:
            if not xname.startswith("system.posix_acl_"):  # inherited from a default ACL
                wrong.append(f"xattr {xname} added")
        elif spec.xattrs[xname] != value:
            wrong.append(f"xattr {xname} changed")
    return wrong


def snapshot_drift(
    snapshot: str | os.PathLike[str], record_path: str | os.PathLike[str]
) -> list[str]:
    """Entries whose metadata in ``snapshot`` is not what the layer's tar says (a chmod,
    chown, a changed type or device, a retargeted symlink, an added xattr, a hardlink
    that is not its target's inode behind lamina's back), as ``path (what)``.

    The rebuilt tar takes its headers from the record, so it cannot see these; a
    container would be served them. Mtimes are not compared: a RUN layer's snapshot is
    its upper directory, whose times its tar may clamp (SOURCE_DATE_EPOCH). Paths are
    resolved inside the snapshot (ScopedRoot)."""
    import stat

    from lamina.layers import _whiteout
    from lamina.layers._scoped import ScopedRoot  # the one path resolver
    from lamina.layers._tarread import EntryType

    kinds = {
        EntryType.FILE: stat.S_ISREG,
        EntryType.DIR: stat.S_ISDIR, EntryType.SYMLINK: stat.S_ISLNK,
        EntryType.CHAR: stat.S_ISCHR, EntryType.BLOCK: stat.S_ISBLK,
        EntryType.FIFO: stat.S_ISFIFO,
    }  # fmt: skip
    # The last entry of a path is the one applied (a tar may name a path twice). Every
    # entry but a hardlink gives its path an inode of its own (the applier removes what
    # was there); a hardlink shares its target's, as it was when the link was made.
    last: dict[str, TarEntry] = {}
    inode: dict[str, int] = {}  # path → the ordinal of the entry that made its inode
    made: dict[int, TarEntry] = {}  # that ordinal → that entry, whose metadata it has
    for n, entry in enumerate(record_entries(record_path)):
        parts = split_entry_path(entry.name)
        if not parts or _whiteout.classify(parts[-1])[0] is not _whiteout.Marker.NONE:
            continue
        name = "/".join(parts)
        last[name] = entry
        if entry.type is EntryType.HARDLINK:
            inode[name] = inode.get("/".join(split_entry_path(entry.linkname)), -1)
        else:
            inode[name] = n
            made[n] = entry
    drift: list[str] = []
    seen: dict[int, tuple[int, int, str]] = {}  # inode's maker → (st_dev, st_ino, a path)
    root = ScopedRoot(os.fspath(snapshot))
    try:
        # A hardlink is compared with its target's inode, which is looked at first.
        ordered = sorted(last.items(), key=lambda item: item[1].type is EntryType.HARDLINK)
        for name, entry in ordered:
            parts = name.split("/")
            try:
                parent = root.parent(parts, entry.name, create=False)
                st = None if parent is None else os.lstat(parts[-1], dir_fd=parent)
            except (OSError, InvalidInputError):
                st = None
            if st is None or parent is None:
                # Gone: a later entry may have replaced a directory above it. Not
                # reported here: the rebuild reads only regular files (a missing one
                # fails it); any other missing entry changes the snapshot's entry
                # count, which fsck compares when the store remembers it.
                continue
            wrong = []
            # The header whose metadata this inode has: a hardlink's is its target's
            # (the applier links any non-directory: moby hardlinks symlinks, devices).
            spec = made.get(inode[name])
            first = seen.setdefault(inode[name], (st.st_dev, st.st_ino, name))
            if spec is None:
                wrong.append(f"hardlink target {entry.linkname} not in the layer")
            elif first[:2] != (st.st_dev, st.st_ino):
                wrong.append(f"not a hardlink of {first[2]}")
            elif not kinds[spec.type](st.st_mode):
                wrong.append("type")
            elif first[2] != name:
                pass  # another path of this inode is checked (a hardlink's target)
            elif spec.type is EntryType.SYMLINK:
                if os.readlink(parts[-1], dir_fd=parent) != spec.linkname:
                    wrong.append("symlink target")
                if (st.st_uid, st.st_gid) != (spec.uid, spec.gid):  # lchown'd
                    wrong.append(f"owner {st.st_uid}:{st.st_gid}, not {spec.uid}:{spec.gid}")
            else:
                # Whatever its link count (anyone can `ln` a snapshot's file elsewhere):
                # the applier gives each header but a hardlink a fresh inode, a hardlink
                # changes no metadata, and a COPY reuses an inode only when its mode and
                # owner are the header's. So an inode has the metadata of the header
                # that made it; a hardlink's is checked here only if no path of that
                # header is left (else it is that path's, checked there).
                if stat.S_IMODE(st.st_mode) != spec.mode & 0o7777:
                    wrong.append(f"mode {stat.S_IMODE(st.st_mode):o}, not {spec.mode & 0o7777:o}")
                if (st.st_uid, st.st_gid) != (spec.uid, spec.gid):
                    wrong.append(f"owner {st.st_uid}:{st.st_gid}, not {spec.uid}:{spec.gid}")
                if spec.type in (EntryType.CHAR, EntryType.BLOCK) and st.st_rdev != (
                    os.makedev(spec.devmajor, spec.devminor)
                ):
                    wrong.append(
                        f"device {os.major(st.st_rdev)},{os.minor(st.st_rdev)},"
                        f" not {spec.devmajor},{spec.devminor}"
                    )
            if spec is not None and not wrong and first[2] == name:
                wrong.extend(_xattr_drift(parent, parts[-1], spec))
            if wrong:
                drift.append(f"{name} ({', '.join(wrong)})")
    finally:
        root.close()
    return drift
