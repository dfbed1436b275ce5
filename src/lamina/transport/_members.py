"""Where an archive's files live: a tar indexed once, or a directory opened without links.

Both answer the same questions (`find`, `open_slice`, `read_small`) so the formats above
never know which they read. Every path they are asked for comes from hostile JSON, so it
must be a clean relative path inside the archive: `clean_path` refuses the rest.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import posixpath
import stat
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from lamina.errors import InvalidInputError, NotFoundError
from lamina.layers import EntryType, Limits, TarReader
from lamina.store import VerifiedBlob

_CHUNK = 1 << 20
_MAX_READ = 4 << 20
_MAX_LINK_HOPS = 16
# An archive holds a few files per layer; a million entries is already hostile.
OUTER_LIMITS = Limits(max_entries=200_000, max_total_bytes=1 << 44, max_entry_bytes=1 << 42)


def clean_path(name: object, what: str) -> str:
    """`name` as a normalised relative path inside the archive, or InvalidInputError."""
    if not isinstance(name, str) or not name or "\0" in name or len(name) > 4096:
        raise InvalidInputError(f"{what}: {str(name)[:100]!r} is not a path inside the archive")
    if name.startswith("/"):
        raise InvalidInputError(f"{what}: {name[:100]!r} is an absolute path, not a member")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise InvalidInputError(f"{what}: {name[:100]!r} points outside the archive")
    return "/".join(parts)


@dataclass(frozen=True)
class Slice:
    """`size` bytes at `offset` of file descriptor `fd`; `label` names them for messages."""

    fd: int
    offset: int
    size: int
    label: str
    owned: bool  # whether whoever reads the slice closes `fd`


class Files(Protocol):
    """The files of an archive, by clean relative path."""

    description: str

    def exists(self, name: str) -> bool: ...

    def open_slice(self, name: str, what: str) -> Slice: ...

    def close(self) -> None: ...


def read_small(files: Files, name: str, what: str, max_bytes: int) -> bytes:
    """The whole content of a small member (a JSON document), bounded before reading."""
    piece = files.open_slice(name, what)
    try:
        if piece.size > max_bytes:
            raise InvalidInputError(
                f"{what}: {name} in {files.description} is {piece.size} bytes,"
                f" more than the {max_bytes} allowed"
            )
        data = os.pread(piece.fd, piece.size, piece.offset)
        if len(data) != piece.size:
            raise InvalidInputError(f"{what}: {piece.label} is truncated")
        return data
    finally:
        if piece.owned:
            os.close(piece.fd)


@dataclass(frozen=True)
class Member:
    """One indexed tar member: where its content starts and how long it is."""

    name: str
    offset: int
    size: int
    kind: EntryType
    linkname: str


def index_tar(stream: BinaryIO, description: str) -> dict[str, Member]:
    """Read a tar's headers once with lamina's bounded reader: clean name → member.

    Members whose names escape the archive are never reachable by a clean lookup,
    so they are left out; two members with one name are refused, since which one a
    tool takes is ambiguous (tar says the last, some readers take the first).
    """
    reader = TarReader(stream, OUTER_LIMITS, digest=False)  # content is skipped by seeking
    try:
        return _index(reader, description)
    except InvalidInputError as e:
        if type(e) is not InvalidInputError or e.message.startswith(description):
            raise
        # The reader's own words ("tar stream truncated …") say what, not which archive.
        raise InvalidInputError(f"{description}: {e.message}", e.hint) from None


def _index(reader: TarReader, description: str) -> dict[str, Member]:
    members: dict[str, Member] = {}
    for entry, _content in reader.entries():
        if entry.type == EntryType.DIR:
            continue
        raw = entry.name
        parts = [p for p in raw.split("/") if p not in ("", ".")]
        if raw.startswith("/") or not parts or ".." in parts:
            continue
        name = "/".join(parts)
        if name in members:
            raise InvalidInputError(
                f"{description}: member {name!r} appears twice",
                hint="an archive with duplicate members is ambiguous; re-create it",
            )
        members[name] = Member(name, reader.size, entry.size, entry.type, entry.linkname)
    return members


class TarFiles:
    """A tar file indexed once; members are read as slices of the file, never extracted."""

    def __init__(self, path: str, name: str | None = None) -> None:
        # `name`: what the user gave, where `path` is not it (stdin, a decompressed copy).
        self.description = f"archive {name or path}"
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            with open(os.dup(self._fd), "rb", buffering=_CHUNK) as stream:
                self._members = index_tar(stream, self.description)
        except BaseException:
            os.close(self._fd)
            raise

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def exists(self, name: str) -> bool:
        return name in self._members

    def names(self) -> list[str]:
        return sorted(self._members)

    def _resolve(self, name: str, what: str) -> Member:
        for _ in range(_MAX_LINK_HOPS):
            member = self._members.get(name)
            if member is None:
                raise NotFoundError(f"{what}: {self.description} has no member {name!r}")
            if member.kind == EntryType.FILE:
                return member
            if member.kind == EntryType.SYMLINK:
                # docker save links a repeated layer to its first copy: ../<id>/layer.tar
                target = member.linkname
                joined = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
                if target.startswith("/") or joined == ".." or joined.startswith("../"):
                    raise InvalidInputError(
                        f"{what}: member {name!r} links to {target[:100]!r}, outside the archive"
                    )
                name = clean_path(joined, what)
            elif member.kind == EntryType.HARDLINK:
                name = clean_path(member.linkname, f"{what} (hard link {name!r})")
            else:
                raise InvalidInputError(
                    f"{what}: member {name!r} is a {member.kind.value}, not a regular file"
                )
        raise InvalidInputError(f"{what}: member {name!r}: too many levels of links")

    def open_slice(self, name: str, what: str) -> Slice:
        member = self._resolve(clean_path(name, what), what)
        label = f"member {member.name!r} of {self.description}"
        return Slice(self._fd, member.offset, member.size, label, owned=False)


class DirFiles:
    """A directory read component by component with O_NOFOLLOW: no link leads out of it."""

    def __init__(self, path: str) -> None:
        self.description = f"directory {path}"
        self._root = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        if self._root >= 0:
            os.close(self._root)
            self._root = -1

    def exists(self, name: str) -> bool:
        try:
            os.stat(clean_path(name, name), dir_fd=self._root, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def open_slice(self, name: str, what: str) -> Slice:
        parts = clean_path(name, what).split("/")
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = self._root
        try:
            for n, part in enumerate(parts):
                last = n == len(parts) - 1
                # O_NONBLOCK: a FIFO planted as a blob must fail the S_ISREG check, not hang.
                extra = os.O_NONBLOCK if last else os.O_DIRECTORY
                try:
                    child = os.open(part, flags | extra, dir_fd=fd)
                except OSError as exc:
                    raise self._error(exc, name, what) from None
                if fd != self._root:
                    os.close(fd)
                fd = child
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise InvalidInputError(f"{what}: {name!r} in {self.description} is not a file")
        except BaseException:
            if fd != self._root:
                os.close(fd)
            raise
        return Slice(fd, 0, info.st_size, f"file {name!r} of {self.description}", owned=True)

    def _error(self, exc: OSError, name: str, what: str) -> Exception:
        if exc.errno == errno.ENOENT:
            return NotFoundError(f"{what}: {self.description} has no {name!r}")
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return InvalidInputError(
                f"{what}: {name!r} in {self.description} goes through a symlink or non-directory",
                hint="lamina does not follow links inside an OCI layout",
            )
        return InvalidInputError(f"{what}: cannot open {name!r} in {self.description}: {exc}")


def hash_member(files: Files, name: str, what: str) -> tuple[str, int, bytes]:
    """sha256, size and first bytes (for magic numbers) of a member, read once."""
    piece = files.open_slice(name, what)
    try:
        digest = hashlib.sha256()
        head = b""
        position, remaining = piece.offset, piece.size
        while remaining:
            data = os.pread(piece.fd, min(remaining, _CHUNK), position)
            if not data:
                raise InvalidInputError(f"{what}: {piece.label} is truncated")
            if not head:
                head = data[:16]
            digest.update(data)
            position += len(data)
            remaining -= len(data)
        return "sha256:" + digest.hexdigest(), piece.size, head
    finally:
        if piece.owned:
            os.close(piece.fd)


def peek_member(files: Files, name: str, what: str) -> tuple[int, bytes]:
    """Size and first bytes (for magic numbers) of a member, without reading it all."""
    piece = files.open_slice(name, what)
    try:
        return piece.size, os.pread(piece.fd, min(piece.size, 16), piece.offset)
    finally:
        if piece.owned:
            os.close(piece.fd)


_AHEAD = 32 << 20  # asked of the kernel ahead of the reader (posix_fadvise WILLNEED)


class _PlainSlice(io.RawIOBase):
    """``size`` bytes of ``fd`` from ``offset``, read as they are (``verify=False``: the
    caller checks the digest itself): one ``pread`` per read, no copy on the way. The
    kernel is asked to read ``_AHEAD`` bytes ahead in the background, so a reader that
    parses what it reads (a layer unpacked on the way) seldom waits for the disk."""

    def __init__(self, piece: Slice, offset: int, size: int, what: str) -> None:
        super().__init__()
        self._piece = piece
        self._position = piece.offset + offset
        self._remaining = size
        self._what = what
        self._advised = self._position  # read ahead up to here

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1, /) -> bytes:
        if n is None or n < 0:
            return self.readall()
        n = min(n, self._remaining, _MAX_READ)
        if n <= 0:
            return b""
        if self._position + n > self._advised - _AHEAD // 2:
            end = self._position + min(self._remaining, 2 * _AHEAD)
            if end > self._advised:
                with contextlib.suppress(OSError):  # a hint: a pipe, say, takes none
                    os.posix_fadvise(
                        self._piece.fd, self._advised, end - self._advised,
                        os.POSIX_FADV_WILLNEED,
                    )  # fmt: skip
                self._advised = end
        data = os.pread(self._piece.fd, n, self._position)
        if not data:
            raise InvalidInputError(
                f"{self._what}: {self._piece.label} ends {self._remaining} bytes early"
            )
        self._position += len(data)
        self._remaining -= len(data)
        return data

    def readall(self) -> bytes:
        return b"".join(iter(lambda: self.read(_MAX_READ), b""))

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed and self._piece.owned:
            os.close(self._piece.fd)
        super().close()


def verified_slice(
    piece: Slice, digest: str, size: int, what: str, *, verify: bool = True, offset: int = 0
) -> VerifiedBlob | _PlainSlice:
    """A blob of an archive from `offset` on, checked against its descriptor's size, then
    (read from 0 and `verify`) its digest."""
    if piece.size != size or not 0 <= offset <= size:
        if piece.owned:
            os.close(piece.fd)
        if piece.size != size:
            raise InvalidInputError(
                f"{what}: {piece.label} holds {piece.size} bytes, its descriptor says {size}"
            )
        raise InvalidInputError(f"{what}: offset {offset} is outside its {size} bytes")
    if not verify:
        return _PlainSlice(piece, offset, size - offset, what)
    return VerifiedBlob(
        piece.fd, piece.offset + offset, size - offset, digest, what, piece.label,
        owned=piece.owned, verify=verify and offset == 0,
    )  # fmt: skip
