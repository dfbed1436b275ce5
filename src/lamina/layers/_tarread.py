"""A streaming tar reader whose every size and count is bounded.

Python 3.11.7's ``tarfile`` can be made to loop or backtrack by crafted headers, so
lamina parses ustar, GNU (longname/longlink) and PAX headers itself. The input is read
strictly forward (it may be a socket or a decompressor); each entry's content is a
file object that cannot read past the entry.
"""

from __future__ import annotations

import base64
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol
from urllib.parse import unquote_to_bytes

from lamina.errors import InvalidInputError
from lamina.layers._tarsplit import SplitRecorder, ThreadedSha256

BLOCK = 512
_OCTAL_DIGITS = b"01234567"
_ZERO_BLOCK = bytes(BLOCK)
_MAX_META_HEADERS = 8  # consecutive PAX/GNU headers before one real entry


class ByteStream(Protocol):
    """Anything readable forward: a file, a socket's file object, a LayerBlobReader."""

    def read(self, n: int = -1, /) -> bytes: ...


# Directories in one path: the store's tree walks (Python 3.11's os.walk, rmtree) recurse
# once per level, and past ~900 a snapshot could be neither walked nor removed.
MAX_DEPTH = 512


def too_deep(path: str) -> InvalidInputError:
    """The error for a layer path of more than ``MAX_DEPTH`` components."""
    return InvalidInputError(
        f"{path[:200]}...: a path of more than {MAX_DEPTH} components",
        hint="a layer keeps paths at most this deep; flatten the tree",
    )


@dataclass(frozen=True)
class Limits:
    """Bounds applied while reading or applying an untrusted layer."""

    max_entries: int = 1_000_000
    max_total_bytes: int = 64 << 30  # uncompressed tar bytes
    max_entry_bytes: int = 32 << 30
    max_name_bytes: int = 4096  # a path or link target
    max_pax_bytes: int = 1 << 20  # one PAX header's records
    max_xattr_bytes: int = 64 << 10  # one xattr value
    max_symlink_hops: int = 40  # per path resolution, as Linux' ELOOP
    max_depth: int = MAX_DEPTH  # components of one path


class EntryType(Enum):
    """The kinds of tar entry a layer may hold."""

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"


_TYPEFLAGS = {
    b"0": EntryType.FILE,
    b"\0": EntryType.FILE,
    b"7": EntryType.FILE,  # contiguous file: a regular file everywhere that matters
    b"1": EntryType.HARDLINK,
    b"2": EntryType.SYMLINK,
    b"3": EntryType.CHAR,
    b"4": EntryType.BLOCK,
    b"5": EntryType.DIR,
    b"6": EntryType.FIFO,
}

ENTRY_TYPE_BITS = {
    EntryType.FILE: stat.S_IFREG,
    EntryType.DIR: stat.S_IFDIR,
    EntryType.SYMLINK: stat.S_IFLNK,
    EntryType.HARDLINK: stat.S_IFREG,
    EntryType.CHAR: stat.S_IFCHR,
    EntryType.BLOCK: stat.S_IFBLK,
    EntryType.FIFO: stat.S_IFIFO,
}


@dataclass
class TarEntry:
    """One entry of a tar stream; ``name`` is as stored, with ``/`` separators."""

    name: str
    type: EntryType
    mode: int  # permission bits incl. setuid/setgid/sticky
    uid: int
    gid: int
    size: int
    mtime: int  # seconds
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _cstr(field_bytes: bytes) -> bytes:
    end = field_bytes.find(b"\0")
    return field_bytes if end < 0 else field_bytes[:end]


def _number(raw: bytes, what: str, entry: str) -> int:
    head = raw[:-1]
    if raw[-1:] in (b"\0", b" ") and head.isdigit():  # the usual shape: digits, then NUL
        try:
            return int(head, 8)  # isdigit: no sign, space, "_" or "0o" reaches int()
        except ValueError:
            pass  # an 8 or 9: the careful path below says so
    if raw and raw[0] & 0x80:  # GNU base-256
        if raw[0] == 0xFF:
            raise InvalidInputError(f"tar entry {entry!r}: negative {what}")
        return int.from_bytes(bytes([raw[0] & 0x7F]) + raw[1:], "big")
    text = _cstr(raw).strip(b" \0")
    if not text:
        return 0
    if text.strip(_OCTAL_DIGITS):
        raise InvalidInputError(f"tar entry {entry!r}: {what} field is not octal: {text!r}")
    return int(text, 8)


def _checksum_ok(block: bytes) -> bool:
    stored = _cstr(block[148:156]).strip(b" \0")
    if not stored or stored.strip(_OCTAL_DIGITS):
        return False
    value = int(stored, 8)
    unsigned = sum(block) - sum(block[148:156]) + 256  # the checksum field as spaces
    if value == unsigned:
        return True
    signed = sum(b - 256 if b > 127 else b for b in block[:148] + block[156:]) + 256
    return value == signed


_READ = 1 << 20  # bytes asked of the stream at a time: headers are served from them


class _Input:
    """The raw stream: counts, hashes and bounds every byte it reads.

    The stream is read ahead in large pieces (one call per MiB, not one per header);
    ``count`` is what the tar reader consumed of them. Never more than the size limit is
    read ahead, so the limit is this reader's to report."""

    def __init__(
        self,
        stream: ByteStream,
        limits: Limits,
        digest: bool = True,
        record: SplitRecorder | None = None,
    ) -> None:
        self._stream = stream
        self._limits = limits
        self.hash = ThreadedSha256() if digest else None
        self.count = 0  # consumed
        self._filled = 0  # read from the stream
        self._buf = b""
        self._pos = 0
        # tar-split: every byte that is not a file's content read by the consumer
        self.record = record
        seekable = getattr(stream, "seekable", None)
        try:
            self._seekable = bool(seekable()) if callable(seekable) else False
        except (OSError, ValueError):
            self._seekable = False

    def _too_big(self) -> InvalidInputError:
        return InvalidInputError(
            f"tar stream exceeds {self._limits.max_total_bytes} bytes, the layer size limit",
            hint="raise the layer size limit (--max-layer-size, LAMINA_MAX_LAYER_SIZE) "
            "if the layer is genuine",
        )

    def _pull(self, n: int) -> bytes:
        """Up to ``n`` (> 0) new bytes from the stream, hashed; b"" at its end."""
        n = min(n, self._limits.max_total_bytes - self._filled + 1)
        data = self._stream.read(n) if n > 0 else b""
        if data:
            self._filled += len(data)
            if self._filled > self._limits.max_total_bytes:
                raise self._too_big()
            if self.hash is not None:
                self.hash.update(data)
        return data

    def read(self, n: int, what: str, content: bool = False) -> bytes:
        """Exactly ``n`` bytes, or InvalidInputError naming ``what`` if the stream ends."""
        data = self.read_some(n, content)
        if len(data) == n:
            return data
        parts = [data]
        got = len(data)
        while got < n:
            more = self.read_some(n - got, content)
            if not more:
                raise InvalidInputError(f"tar stream truncated in {what}")
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def read_some(self, n: int, content: bool = False) -> bytes:
        # Bounded by what is read, not by what is asked: a drain's 1 MiB request at the
        # end of a layer just under the limit must not refuse it. One byte past the
        # limit is asked for, so a stream that has it is refused.
        room = self._limits.max_total_bytes - self.count
        if n > room:
            if room < 0:
                raise self._too_big()
            n = room + 1
        left = len(self._buf) - self._pos
        if not left:
            if n >= _READ:  # a large piece of content: straight from the stream
                data = self._pull(n)
                self._consumed(data, content)
                return data
            self._buf = self._pull(_READ)
            self._pos = 0
            left = len(self._buf)
            if not left:
                return b""
        data = self._buf[self._pos : self._pos + n]  # the whole buffer: no copy
        self._pos += len(data)
        if self._pos >= len(self._buf):
            self._buf, self._pos = b"", 0
        self._consumed(data, content)
        if self.count > self._limits.max_total_bytes:
            raise self._too_big()
        return data

    def _consumed(self, data: bytes, content: bool) -> None:
        self.count += len(data)
        if self.record is not None and not content and data:
            self.record.raw(data)

    def skip(self, n: int, what: str) -> None:
        """Consume ``n`` bytes nobody needs; by seeking when nothing hashes or records
        them and the stream can (an archive's index)."""
        if self.hash is None and self.record is None and self._seekable:
            take = min(n, len(self._buf) - self._pos)
            if take:
                self.read(take, what)
                n -= take
            if n:
                if self.count + n > self._limits.max_total_bytes:
                    raise self._too_big()
                self._stream.seek(n, 1)  # type: ignore[attr-defined]
                self.count += n
                self._filled += n
            return
        while n:
            k = min(n, _READ)
            self.read(k, what)
            n -= k

    def drain(self) -> None:
        while self.read_some(_READ):
            pass

    def close(self) -> None:
        if self.hash is not None:
            self.hash.stop()


class EntryReader:
    """The content of one entry: reads stop at its end."""

    def __init__(self, source: _Input, size: int, name: str) -> None:
        self._source = source
        self._remaining = size
        self._padding = -size % BLOCK
        self._name = name

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self._remaining:
            n = self._remaining
        if n == 0:
            return b""
        record = self._source.record
        data = self._source.read(n, f"content of {self._name!r}", content=record is not None)
        self._remaining -= len(data)
        if record is not None:
            record.file(self._name, len(data))
        return data

    def read1(self, n: int = _READ) -> bytes:
        """Up to ``n`` bytes of the content (at least one before its end), as the stream's
        buffer holds them: unlike ``read``, no join of two pieces into one (a copy of the
        content) when a read crosses the buffer's end. For consumers that take any size."""
        n = min(n, self._remaining)
        if n <= 0:
            return b""
        record = self._source.record
        data = self._source.read_some(n, content=record is not None)
        if not data:
            raise InvalidInputError(f"tar stream truncated in content of {self._name!r}")
        self._remaining -= len(data)
        if record is not None:
            record.file(self._name, len(data))
        return data

    def readinto(self, buf: memoryview | bytearray) -> int:
        data = self.read(min(len(buf), 1 << 20))
        buf[: len(data)] = data
        return len(data)

    def skip(self) -> None:
        """Consume what is left of the content and its padding."""
        if self._remaining:
            # Content nobody read is not in any file: a tar-split record keeps it as is.
            self._source.skip(self._remaining, f"content of {self._name!r}")
            self._remaining = 0
        if self._padding:
            self._source.read(self._padding, f"padding of {self._name!r}")
            self._padding = 0


def _parse_pax(data: bytes, limits: Limits, entry: str) -> dict[str, bytes]:
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # trailing NULs pad some writers' records
            break
        space = data.find(b" ", pos, pos + 20)
        digits = data[pos:space] if space > 0 else b""
        if not digits or not digits.isdigit():
            raise InvalidInputError(f"tar entry {entry!r}: malformed PAX record length")
        length = int(digits)
        end = pos + length
        if length <= len(digits) + 1 or end > len(data) or data[end - 1] != 0x0A:
            raise InvalidInputError(f"tar entry {entry!r}: PAX record overruns its header")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq:
            raise InvalidInputError(f"tar entry {entry!r}: PAX record without '='")
        records[_decode(key)] = value
        pos = end
    return records


def _pax_int(records: dict[str, bytes], key: str, entry: str) -> int | None:
    raw = records.get(key)
    if raw is None:
        return None
    text = raw.split(b".", 1)[0] if key == "mtime" else raw
    if len(text) > 20 or not text.lstrip(b"-").isdigit():
        raise InvalidInputError(f"tar entry {entry!r}: PAX {key} is not a number: {raw[:40]!r}")
    value = int(text)
    if value < 0 and key != "mtime":
        raise InvalidInputError(f"tar entry {entry!r}: negative PAX {key}")
    return value


def _pax_xattrs(records: dict[str, bytes], limits: Limits, entry: str) -> dict[str, bytes]:
    xattrs: dict[str, bytes] = {}
    for key, value in records.items():
        if key.startswith("SCHILY.xattr."):
            name, data = key[len("SCHILY.xattr.") :], value
        elif key.startswith("LIBARCHIVE.xattr."):
            name = _decode(unquote_to_bytes(key[len("LIBARCHIVE.xattr.") :]))
            try:
                data = base64.b64decode(value + b"=" * (-len(value) % 4), validate=True)
            except ValueError as exc:
                raise InvalidInputError(f"tar entry {entry!r}: bad base64 xattr {name!r}") from exc
        else:
            continue
        if not name or "\0" in name or len(data) > limits.max_xattr_bytes:
            raise InvalidInputError(f"tar entry {entry!r}: unacceptable xattr {name[:80]!r}")
        xattrs[name] = data
    return xattrs


DEFAULT_LIMITS = Limits()


_U32 = 1 << 32


_NO_ID = _U32 - 1  # (uid_t) -1: chown's "leave it as it is", so no owner an entry can have


def _check_ranges(entry: TarEntry) -> None:
    if (
        entry.uid < _NO_ID
        and entry.gid < _NO_ID
        and entry.devmajor < _U32
        and entry.devminor < _U32
        and abs(entry.mtime) < 1 << 40
    ):
        return  # every entry of an ordinary layer: one test, no tuples
    for what, value, bound in (
        ("uid", entry.uid, _NO_ID),
        ("gid", entry.gid, _NO_ID),
        ("device major", entry.devmajor, 1 << 32),
        ("device minor", entry.devminor, 1 << 32),
        ("mtime", abs(entry.mtime), 1 << 40),
    ):
        if value >= bound:
            raise InvalidInputError(f"tar entry {entry.name!r}: {what} {value} is out of range")


def read_entries(
    stream: ByteStream, limits: Limits = DEFAULT_LIMITS
) -> Iterator[tuple[TarEntry, EntryReader]]:
    """Yield each entry with a reader for its content; see :class:`TarReader`."""
    return TarReader(stream, limits).entries()


class TarReader:
    """Iterate a tar stream's entries; afterwards ``diff_id`` and ``size`` describe it.

    Reading an entry's content is optional: the next step of the iteration skips what
    is left. Sparse files, multi-volume archives and unknown entry types are refused.
    """

    def __init__(
        self,
        stream: ByteStream,
        limits: Limits = DEFAULT_LIMITS,
        *,
        digest: bool = True,
        record: SplitRecorder | None = None,
    ) -> None:
        # digest=False skips hashing when the caller already knows the diff_id (an
        # uncompressed blob whose digest is checked as it is stored). `record` receives
        # the stream's exact bytes minus the file content the consumer reads (tar-split).
        self._input = _Input(stream, limits, digest, record)
        self._limits = limits
        self.entry_count = 0
        self.finished = False

    @property
    def diff_id(self) -> str:
        """``sha256:<hex>`` of every byte read so far (all of them once finished)."""
        if self._input.hash is None:
            raise InvalidInputError("this TarReader was made with digest=False")
        return "sha256:" + self._input.hash.hexdigest()

    @property
    def size(self) -> int:
        return self._input.count

    def entries(self) -> Iterator[tuple[TarEntry, EntryReader]]:
        try:
            yield from self._entries()
        finally:
            self._input.close()  # the hashing thread, if any, ends with the iteration

    def _entries(self) -> Iterator[tuple[TarEntry, EntryReader]]:
        limits = self._limits
        pax: dict[str, bytes] = {}
        long_name: bytes | None = None
        long_link: bytes | None = None
        meta_headers = 0
        previous: EntryReader | None = None
        while True:
            if previous is not None:
                previous.skip()
                previous = None
            block = self._input.read_some(BLOCK)
            if len(block) < BLOCK:
                block += self._input.read(BLOCK - len(block), "a tar header") if block else b""
                if not block:
                    raise InvalidInputError("tar stream truncated: no end-of-archive marker")
            if block == _ZERO_BLOCK:
                self._input.drain()  # the trailing zeros are part of the diff_id
                self.finished = True
                return
            raw_name = _cstr(block[0:100])
            label = _decode(raw_name[:200])
            if not _checksum_ok(block):
                raise InvalidInputError(f"tar header for {label!r}: bad checksum")
            typeflag = block[156:157]
            size = _number(block[124:136], "size", label)
            magic = block[257:265]
            if magic[:6] == b"ustar\0" and block[345] != 0:  # POSIX prefix field
                raw_name = _cstr(block[345:500]) + b"/" + raw_name
            if typeflag in (b"x", b"g", b"L", b"K"):
                meta_headers += 1
                if meta_headers > _MAX_META_HEADERS:
                    raise InvalidInputError(f"tar entry {label!r}: too many extension headers")
                bound = limits.max_pax_bytes if typeflag in (b"x", b"g") else limits.max_name_bytes
                if size > bound:
                    raise InvalidInputError(
                        f"tar entry {label!r}: extension header of {size} bytes exceeds {bound}"
                    )
                data = self._input.read(size + (-size % BLOCK), f"extension header of {label!r}")
                data = data[:size]
                if typeflag == b"x":
                    pax.update(_parse_pax(data, limits, label))
                elif typeflag == b"g":
                    _parse_pax(data, limits, label)  # validated; global defaults are not used
                elif typeflag == b"L":
                    long_name = _cstr(data)
                else:
                    long_link = _cstr(data)
                continue
            meta_headers = 0
            etype = _TYPEFLAGS.get(typeflag)
            if etype is None:
                what = "sparse file" if typeflag == b"S" else f"entry type {typeflag!r}"
                raise InvalidInputError(f"tar entry {label!r}: {what} is not supported")
            if any(key.startswith("GNU.sparse.") for key in pax):
                raise InvalidInputError(f"tar entry {label!r}: sparse file is not supported")
            name_b = pax.get("path", long_name or raw_name)
            link_b = pax.get("linkpath", long_link or _cstr(block[157:257]))
            for what, value in (("name", name_b), ("link target", link_b)):
                if len(value) > limits.max_name_bytes or b"\0" in value:
                    raise InvalidInputError(
                        f"tar entry {label!r}: {what} longer than {limits.max_name_bytes} bytes"
                        " or holding NUL"
                    )
            name = _decode(name_b)
            if name.count("/") >= limits.max_depth and (
                len([p for p in name.split("/") if p not in ("", ".")]) > limits.max_depth
            ):
                raise InvalidInputError(
                    f"tar entry {label!r}: a path of more than {limits.max_depth} components"
                )
            pax_size = _pax_int(pax, "size", name)
            if pax_size is not None:
                size = pax_size
            if etype is not EntryType.FILE:
                size = 0  # header-only types carry no content, whatever the header claims
            if size > limits.max_entry_bytes:
                raise InvalidInputError(
                    f"tar entry {name!r}: size {size} exceeds {limits.max_entry_bytes} bytes"
                )
            self.entry_count += 1
            if self.entry_count > limits.max_entries:
                raise InvalidInputError(
                    f"tar entry {name!r}: more than {limits.max_entries} entries in the layer"
                )
            mode = _number(block[100:108], "mode", name)
            device = etype is EntryType.CHAR or etype is EntryType.BLOCK
            uid = _pax_int(pax, "uid", name)
            gid = _pax_int(pax, "gid", name)
            mtime = _pax_int(pax, "mtime", name)
            entry = TarEntry(
                name=name,
                type=etype,
                mode=mode & 0o7777,
                uid=uid if uid is not None else _number(block[108:116], "uid", name),
                gid=gid if gid is not None else _number(block[116:124], "gid", name),
                size=size,
                mtime=mtime if mtime is not None else _number(block[136:148], "mtime", name),
                linkname=_decode(link_b),
                # Only a device has a number: other entries' fields are not read.
                devmajor=_number(block[329:337], "devmajor", name) if device else 0,
                devminor=_number(block[337:345], "devminor", name) if device else 0,
                xattrs=_pax_xattrs(pax, limits, name),
            )
            _check_ranges(entry)
            pax, long_name, long_link = {}, None, None
            previous = EntryReader(self._input, size, name)
            yield entry, previous
