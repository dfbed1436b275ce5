"""Unpack a layer tar into a directory, safely.

Two targets: a snapshot in overlay format (whiteouts become 0:0 character devices,
opaque markers the ``trusted.overlay.opaque`` xattr) and a plain directory holding the
layers below (whiteouts delete, an opaque marker empties what the lower layers put in
the directory). Every path goes through :class:`ScopedRoot`: nothing outside the
target is ever created, changed or removed.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import hashlib
import io
import os
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lamina.errors import InvalidInputError, LaminaError
from lamina.layers import _whiteout
from lamina.layers._fileworker import BATCH, FAIL, FILE, MAX_DIRS
from lamina.layers._inodeflags import TOP_DIRECTORY, mark_top_directory, set_inode_flags
from lamina.layers._scoped import ScopedRoot, split_entry_path
from lamina.layers._tarread import ByteStream, EntryReader, EntryType, Limits, TarEntry, TarReader
from lamina.layers._tarsplit import SplitRecorder

if TYPE_CHECKING:
    from lamina.layers._index import EntryCollector

_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ApplyStats:
    """What was applied: ``diff_id`` is computed from the bytes read; compare it with
    the one expected before trusting the result."""

    diff_id: str
    size: int
    entries: int


DEFAULT_LIMITS = Limits()


EntryHook = Callable[[TarEntry], None]
"""Called with each entry as the one pass over a layer meets it (a per-layer file index
hooks in here); it must not read the content."""


def apply_layer(
    stream: ByteStream,
    target: str | os.PathLike[str],
    *,
    overlay: bool,
    limits: Limits = DEFAULT_LIMITS,
    record: SplitRecorder | None = None,
    on_entry: EntryHook | None = None,
    collect: EntryCollector | None = None,
) -> ApplyStats:
    """Apply the uncompressed layer tar ``stream`` onto the directory ``target``.

    ``record`` (a tar-split recorder) receives what is needed to rebuild the exact tar from
    ``target`` afterwards; ``on_entry`` sees every entry in order; ``collect`` gathers the
    layer's file index from the same pass. Runs of zero blocks in a file are written as
    holes, so a sparse file costs only its data on disk.
    """
    reader = TarReader(stream, limits, record=record)
    applier = _Applier(os.fspath(target), overlay, limits, once=record is not None)
    try:
        for entry, content in reader.entries():
            if on_entry is not None:
                on_entry(entry)
            applier.apply(entry, content, collect)
        applier.finish()
    finally:
        applier.close()
    applier.raise_deferred()
    if collect is not None:
        collect.resolve()  # digests of entries added with a hasher: all read by now
    return ApplyStats(reader.diff_id, reader.size, reader.entry_count)


def scan_layer(
    stream: ByteStream,
    *,
    limits: Limits = DEFAULT_LIMITS,
    digest: bool = True,
    collect: EntryCollector | None = None,
) -> ScanStats:
    """Read a whole layer and check each entry's name as ``apply_layer`` would, writing
    nothing: a layer that would be refused on unpack is refused when it is loaded.

    Returns the diff_id it hashed (None with ``digest=False``) and the size.
    ``collect`` gets every entry as it passes (the layer's file index).
    """
    reader = TarReader(stream, limits, digest=digest)
    for entry, _content in reader.entries():
        parts, _marker, _victim = _entry_parts(entry)
        if entry.type is EntryType.HARDLINK:
            target = split_entry_path(entry.linkname)
            if not target:
                raise InvalidInputError(f"tar entry {entry.name!r}: hardlink to the layer root")
        elif not parts and entry.type is not EntryType.DIR:
            raise InvalidInputError(f"tar entry {entry.name!r} would replace the target root")
        if collect is not None and parts:
            collect.tar_entry(entry, _content)
    return ScanStats(reader.diff_id if digest else None, reader.size, reader.entry_count)


@dataclass(frozen=True)
class ScanStats:
    """What a scan read: the diff_id (when hashed), the tar's size and its entry count."""

    diff_id: str | None
    size: int
    entries: int


def _entry_parts(entry: TarEntry) -> tuple[list[str], _whiteout.Marker, str]:
    """The entry's path components and what its last one marks, after the checks every
    use of a name needs (no `..`, no malformed whiteout)."""
    parts = split_entry_path(entry.name)
    if not parts:
        return parts, _whiteout.Marker.NONE, ""
    try:
        marker, victim = _whiteout.classify(parts[-1])
    except InvalidInputError as exc:
        raise InvalidInputError(f"tar entry {entry.name!r}: {exc.message}") from exc
    return parts, marker, victim


_FAST_MAX = 256 << 10  # a new file up to this size may be written by the file writer
_WRITER_AFTER = 64  # small files a layer writes itself before it starts the writer
_BATCH = 32  # files handed over at once
_BATCH_BYTES = 1 << 20
_SOCKET_BUFFER = 4 << 20  # bytes in flight to the writer (the kernel may cap it lower)

# The writer runs layers/_fileworker.py by path (its docstring has the protocol): only
# stdlib, no lamina import, so `python -I -S` starts in ~20 ms.
_WORKER = os.path.join(os.path.dirname(__file__), "_fileworker.py")
_SPECIAL = 0o7000  # setuid, setgid, sticky: always set by fchmod, after fchown


def _umask() -> int | None:
    """The process's umask, read without changing it (None: unknown)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _has_default_acl(path: str | int) -> bool:
    try:
        os.getxattr(path, _DEFAULT_ACL)
    except OSError as exc:
        return exc.errno not in (errno.ENODATA, errno.ENOTSUP)
    return True


_DEFAULT_ACL = "system.posix_acl_default"


class _FileWriter:
    """Writes new regular files (create, content, owner, mode, mtime) in the order given,
    in a process of its own (layers/_fileworker.py), while the applier reads on: the
    kernel's share of a layer of many small files runs beside lamina's, and the four
    syscalls per file need no hand-over of this process's GIL (with a thread, the reading
    thread waited for it once per syscall). Only files that cannot collide with anything
    are given to it (see ``_Applier._fast``); ``drain()`` waits for all given, ``stop()``
    for the process to end, so nothing is written in the target after the applier
    returns. Files cross in batches (``_BATCH`` files or a MiB); a batch carries one
    duplicate of each parent directory's descriptor, resolved here inside the target."""

    def __init__(self, applier: _Applier) -> None:
        self._applier = applier
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(OSError):
                ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER)
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", _WORKER, str(theirs.fileno())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, pass_fds=(theirs.fileno(),),
            )  # fmt: skip
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._sock = ours
        self._pieces: list[bytes] = []
        self._names: list[str] = []  # the batch's entries, for error messages
        self._bytes = 0
        # this batch's parent duplicates: (descriptor, group new files get, number)
        self._dirs: dict[tuple[str, ...], tuple[int, int, int]] = {}
        self._sent: collections.deque[list[str]] = collections.deque()  # not answered yet
        self._uid, self._gid = os.geteuid(), os.getegid()
        umask = _umask()
        # A new file's mode is given to open() when the umask cannot change it: no fchmod
        # (a default ACL in the target would: then always fchmod, as before).
        self._umask = (
            umask
            if umask is not None and not _has_default_acl(f"/proc/self/fd/{applier.root.fd}")
            else None
        )
        self.error: BaseException | None = None

    def put(
        self, parent: int, dir_key: tuple[str, ...], name: str, entry: TarEntry, data: bytes
    ) -> None:
        known = self._dirs.get(dir_key)
        if known is None:
            if len(self._dirs) >= MAX_DIRS:
                self._flush()
            fd = os.dup(parent)
            st = os.fstat(fd)
            # A setgid directory gives its group to new files (the applier drains before
            # changing a directory that holds files of the writer: see ``apply``).
            group = st.st_gid if st.st_mode & stat.S_ISGID else self._gid
            known = self._dirs[dir_key] = (fd, group, len(self._dirs))
        _fd, group, number = known
        # Owner and mode as created need no fchown, fchmod: two syscalls of six per file.
        as_created = (
            entry.uid == self._uid
            and entry.gid == group
            and self._umask is not None
            and not self._applier.acl
            and not entry.mode & (_SPECIAL | self._umask)
        )
        raw = name.encode("utf-8", "surrogateescape")
        self._pieces += (
            FILE.pack(number, as_created, entry.mode, entry.uid, entry.gid, entry.mtime,
                      len(data), len(raw)),
            raw,
            data,
        )  # fmt: skip
        self._names.append(entry.name)
        self._bytes += len(data)
        if len(self._names) >= _BATCH or self._bytes >= _BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._names:
            return
        payload = b"".join(self._pieces)
        fds = [fd for fd, _group, _n in self._dirs.values()]
        try:
            head = BATCH.pack(len(self._names), len(payload))
            sent = socket.send_fds(self._sock, [head], fds)
            self._sock.sendall(head[sent:] + payload)
        except OSError:
            self._ended()
        finally:
            for fd in fds:
                os.close(fd)  # the message holds its own duplicates
            self._sent.append(self._names)
            self._pieces, self._names, self._bytes, self._dirs = [], [], 0, {}
        self._answers(wait=False)

    def _answers(self, *, wait: bool) -> None:
        """Read the writer's answers: all that are there, or (``wait``) one per batch sent."""
        while self._sent:
            try:
                tag = self._sock.recv(1, 0 if wait else socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            if not tag:
                self._ended()
            names = self._sent.popleft()
            if tag == b"e":
                number, code, length = FAIL.unpack(self._exact(FAIL.size))
                message = self._exact(length).decode("utf-8", "replace")
                if self.error is None:
                    self.error = LaminaError(f"tar entry {names[number]!r}: {message}")
                    self.error.__cause__ = OSError(code, message)

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            more = self._sock.recv(n - len(data))
            if not more:
                self._ended()
            data += more
        return data

    def _ended(self) -> None:
        raise LaminaError(
            f"the layer's file-writing process ended early (exit status {self._proc.wait()})",
            hint="this is a bug in lamina or the machine ran out of memory; try again",
        )

    def drain(self) -> None:
        self._flush()
        self._answers(wait=True)

    def stop(self) -> None:
        """Hand over what is left, wait for every answer and for the process to end."""
        try:
            if self.error is None:
                self.drain()
        except LaminaError as exc:
            self.error = self.error or exc
        finally:
            for fd, _group, _n in self._dirs.values():
                os.close(fd)
            self._dirs = {}
            self._sock.close()  # EOF: the writer ends once it has written what it read
            self._proc.wait()


class _Applier:
    def __init__(self, target: str, overlay: bool, limits: Limits, *, once: bool = False) -> None:
        self.root = ScopedRoot(target, limits.max_symlink_hops)
        # With a tar-split record the snapshot must give the tar back: a path keeps one
        # kind of entry, and nothing is reached through a symlink.
        self._once: dict[tuple[str, ...], EntryType] | None = {} if once else None
        self.overlay = overlay
        self.created: set[tuple[str, ...]] = set()
        self.dir_times: list[tuple[tuple[str, ...], int]] = []
        # A fresh target holds only what this layer made: a file whose name nothing else
        # took yet, in a directory reached without a symlink, can be written on a thread.
        self.files: _FileWriter | None = None
        self._inline = _WRITER_AFTER  # small files still to write here before it starts
        self._fresh = not os.listdir(target)
        self._taken: set[tuple[str, ...]] = set()  # directories, whiteouts: not for it
        self._links: set[tuple[str, ...]] = set()  # symlinks this layer made
        self._plain_dirs: set[tuple[str, ...]] = set()  # reached without a symlink
        self._file_dirs: set[tuple[str, ...]] = set()  # parents of the file writer's files
        self.acl = False  # a directory of this layer has a default ACL: modes by fchmod
        self._topdir = _set_topdir(target) if self._fresh else None

    def close(self) -> None:
        if self.files is not None:
            self.files.stop()
        if self._topdir is not None:
            _restore_flags(*self._topdir)
        self.root.close()

    def raise_deferred(self) -> None:
        """What went wrong in the file writer, raised here (after ``close``)."""
        if self.files is not None and self.files.error is not None:
            self._raise_file_error(self.files.error)

    def _raise_file_error(self, exc: BaseException) -> None:
        raise exc

    def _drain(self) -> None:
        """Wait until every file handed to the file writer is written (before anything
        that may remove, replace or link to one, and before directory times)."""
        if self.files is not None:
            self.files.drain()
            if self.files.error is not None:
                self._raise_file_error(self.files.error)

    def _track(self, parts: list[str]) -> None:
        """Before an entry is applied: the directories on its way are taken (never files
        of the file writer), and once a path of this layer leads through one of its
        symlinks, what it reaches has other names: the file writer is used no more."""
        dir_key = tuple(parts[:-1])
        if dir_key in self._plain_dirs:
            return
        if self._links and any(dir_key[:i] in self._links for i in range(1, len(parts))):
            self._fresh = False
            return
        for i in range(1, len(parts)):
            self._taken.add(dir_key[:i])
        self._plain_dirs.add(dir_key)

    def _keep_once(self, entry: TarEntry, parts: list[str], marker: _whiteout.Marker) -> bool:
        """Refuse an entry the snapshot could not hold beside the others (see ``_once``):
        a second entry of another kind for a path (a file, then a directory) would remove
        the first, and a path (or a hardlink's target) through this layer's own symlink
        would put a file where its tar name is not. The same kind twice is kept (the last
        header applies); True for a regular file given again, whose content must then be
        the first one's (the snapshot keeps one body: see ``_same_body``)."""
        assert self._once is not None
        if self._links:
            paths = [("its path", parts)]
            if entry.type is EntryType.HARDLINK:  # its target too: the link is made there
                paths.append((f"its hardlink target {entry.linkname!r}",
                              split_entry_path(entry.linkname)))  # fmt: skip
            for what, path in paths:
                for i in range(1, len(path)):
                    if tuple(path[:i]) in self._links:
                        raise InvalidInputError(
                            f"tar entry {entry.name!r}: {what} goes through "
                            f"{'/'.join(path[:i])!r}, a symlink of this same layer"
                        )
        if marker is not _whiteout.Marker.NONE:
            return False
        key = tuple(parts)
        was = self._once.get(key)
        if was is not None and was is not entry.type:
            raise InvalidInputError(
                f"tar entry {entry.name!r}: a second entry for a path this layer already "
                f"holds as a {was.name.lower()} (a stored layer keeps one kind per path)"
            )
        self._once[key] = entry.type
        return was is EntryType.FILE

    def _can_fast(self, entry: TarEntry, parts: list[str]) -> bool:
        """Whether a new small regular file may go to the file writer: nothing can collide
        with it (the target was empty, no entry of this layer took its name as a file, a
        directory or a whiteout, and no symlink lies on its way)."""
        key = tuple(parts)
        return (
            self._fresh
            and entry.size <= _FAST_MAX
            and key not in self.created
            and key not in self._taken
        )

    def _fast(
        self,
        entry: TarEntry,
        parts: list[str],
        content: ByteStream,
    ) -> bytes:
        """Hand the file (see ``_can_fast``) to the file writer; returns its content."""
        key = tuple(parts)
        parent = self.root.parent(parts, entry.name, create=True)
        assert parent is not None
        data = content.read(entry.size)
        if len(data) != entry.size:  # pragma: no cover - the tar reader raises first
            raise InvalidInputError(f"tar entry {entry.name!r}: content ends early")
        self.created.add(key)
        self._file_dirs.add(key[:-1])
        if self.files is None and self._inline <= 0:
            try:
                self.files = _FileWriter(self)
            except OSError:
                self._inline = 1 << 62  # no process to be had: every file is written here
        if (
            self.files is None
            or entry.xattrs
            or (len(data) >= _HOLE and _ZERO_RUN in data)  # may hold a hole: see _copy
        ):
            # Written here and now (a small layer's first files, before a writer pays off).
            self._inline -= 1
            self._write_data(entry, os.open(parts[-1], _FILE_FLAGS, 0o600, dir_fd=parent),
                             data)  # fmt: skip
            return data
        if self.files.error is not None:
            self._raise_file_error(self.files.error)
        self.files.put(parent, key[:-1], parts[-1], entry, data)
        return data

    def apply(
        self, entry: TarEntry, content: EntryReader, collect: EntryCollector | None = None
    ) -> None:
        """Apply one entry; ``collect`` (the file index) is told about it: a file written
        by the file writer is hashed there, any other entry as it is read here."""
        parts, marker, victim = _entry_parts(entry)
        if not parts:
            if entry.type is EntryType.DIR:
                return  # the target root's own metadata belongs to whoever made it
            raise InvalidInputError(f"tar entry {entry.name!r} would replace the target root")
        again = self._once is not None and self._keep_once(entry, parts, marker)
        if self._fresh:
            self._track(parts)
        try:
            if (
                entry.type is EntryType.FILE
                and marker is _whiteout.Marker.NONE
                and self._can_fast(entry, parts)
            ):
                data = self._fast(entry, parts, content)
                if collect is not None:  # hashed here while the file writer writes
                    digest = hashlib.sha256(data).hexdigest()
                    collect.add(entry.name, "file", size=entry.size, mode=entry.mode,
                                uid=entry.uid, gid=entry.gid, digest=digest)  # fmt: skip
                return
            stream: ByteStream = content if collect is None else collect.watch(entry, content)
            if entry.type is EntryType.DIR and (
                tuple(parts) in self._file_dirs or _DEFAULT_ACL in entry.xattrs
            ):
                # Its owner, mode or ACL changes what new files in it get: the file
                # thread's files in it are written first, and later ones see it.
                self._drain()
                self.acl = self.acl or _DEFAULT_ACL in entry.xattrs
            if marker is _whiteout.Marker.WHITEOUT:
                self._taken.add((*parts[:-1], victim))
                self._whiteout(entry, [*parts[:-1], victim])
            elif marker is _whiteout.Marker.OPAQUE:
                self._opaque(entry, parts[:-1])
            else:
                key = tuple(parts)
                if key in self.created or entry.type is EntryType.HARDLINK:
                    self._drain()  # it may replace, or link to, a file not written yet
                before = self._body_digest(entry, parts) if again else None
                self._create(entry, parts, stream)
                if before is not None and self._body_digest(entry, parts) != before:
                    raise InvalidInputError(
                        f"tar entry {entry.name!r}: a second entry for a file this layer "
                        "already holds, with other content (a stored layer keeps one body "
                        "per path)"
                    )
                if entry.type is EntryType.SYMLINK:
                    self._links.add(key)
                    self._plain_dirs.clear()
                self._taken.add(key)
        except OSError as exc:
            raise LaminaError(f"tar entry {entry.name!r}: {exc.strerror or exc}") from exc
        if collect is not None:
            collect.done()

    def _body_digest(self, entry: TarEntry, parts: list[str]) -> str | None:
        """The sha256 of the regular file at ``parts`` (None if there is none)."""
        parent = self.root.parent(parts, entry.name, create=False)
        if parent is None:
            return None
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            digest = hashlib.sha256()
            while chunk := os.read(fd, 1 << 20):
                digest.update(chunk)
            return digest.hexdigest()
        finally:
            os.close(fd)

    # -- deletions -------------------------------------------------------------

    def _whiteout(self, entry: TarEntry, parts: list[str]) -> None:
        key = tuple(parts)
        if key in self.created:
            return  # a whiteout hides lower layers only, never its own layer's entries
        parent = self.root.parent(parts, entry.name, create=self.overlay)
        if parent is None:
            return
        if self.overlay:
            if not _exists(parts[-1], parent):
                _whiteout.make_overlay_whiteout(parts[-1], parent)
            return
        self._remove(parts[-1], parent)

    def _opaque(self, entry: TarEntry, parts: list[str]) -> None:
        if self.overlay:
            parent = self.root.parent([*parts, "x"], entry.name, create=True)
            assert parent is not None
            _whiteout.make_overlay_opaque(parent)
            return
        parent = self.root.parent([*parts, "x"], entry.name, create=False)
        if parent is not None:
            self._clear_lower(parent, tuple(parts))

    def _clear_lower(self, dir_fd: int, key: tuple[str, ...]) -> None:
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            with os.scandir(fd) as it:
                children = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
            for name, is_dir in children:
                child = (*key, name)
                if child not in self.created:
                    self._remove(name, fd)
                elif is_dir:
                    sub = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                    try:
                        self._clear_lower(sub, child)
                    finally:
                        os.close(sub)
        finally:
            os.close(fd)

    def _remove(self, name: str, parent: int) -> None:
        self._drain()  # nothing is removed under a file still being written
        self._plain_dirs.clear()
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=parent)  # fd-based: never follows a symlink
            self.root.invalidate()
        else:
            os.unlink(name, dir_fd=parent)
            if stat.S_ISLNK(st.st_mode):
                self.root.invalidate()

    # -- additions -------------------------------------------------------------

    def _create(self, entry: TarEntry, parts: list[str], content: ByteStream) -> None:
        parent = self.root.parent(parts, entry.name, create=True)
        assert parent is not None
        name = parts[-1]
        key = tuple(parts)
        if entry.type is EntryType.FILE and key not in self.created:
            # The common case, a new file: O_EXCL says whether anything is there already.
            try:
                fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=parent)
            except FileExistsError:
                pass
            else:
                self.created.add(key)
                self._write_file(entry, fd, content)
                return
        try:
            existing = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if entry.type is EntryType.HARDLINK:
            self._hardlink(entry, parts, existing)
            self.created.add(key)
            return
        if existing is not None and not (
            entry.type is EntryType.DIR and stat.S_ISDIR(existing.st_mode)
        ):
            self._remove(name, parent)
            existing = None
            parent = self.root.parent(parts, entry.name, create=True)  # removal may evict it
            assert parent is not None
        self.created.add(key)
        if entry.type is EntryType.FILE:
            self._write_file(entry, os.open(name, _FILE_FLAGS, 0o600, dir_fd=parent), content)
        elif entry.type is EntryType.DIR:
            if existing is None:
                os.mkdir(name, 0o700, dir_fd=parent)
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=parent)  # fmt: skip
            try:
                self._metadata_fd(entry, fd)
            finally:
                os.close(fd)
            self.dir_times.append((key, entry.mtime))
        elif entry.type is EntryType.SYMLINK:
            os.symlink(entry.linkname, name, dir_fd=parent)
            os.chown(name, entry.uid, entry.gid, dir_fd=parent, follow_symlinks=False)
            for xname, value in _settable(entry):
                _setxattr(f"/proc/self/fd/{parent}/{name}", xname, value, entry)
            _utime(name, parent, entry.mtime)
        else:
            kind = {EntryType.CHAR: stat.S_IFCHR, EntryType.BLOCK: stat.S_IFBLK}.get(
                entry.type, stat.S_IFIFO
            )
            device = os.makedev(entry.devmajor, entry.devminor) if kind != stat.S_IFIFO else 0
            os.mknod(name, kind | 0o600, device, dir_fd=parent)
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            try:
                self._metadata_path(entry, f"/proc/self/fd/{fd}")
            finally:
                os.close(fd)
            _utime(name, parent, entry.mtime)

    def _write_file(self, entry: TarEntry, fd: int, content: ByteStream) -> None:
        """Content, owner, mode, xattrs and mtime of a new regular file; closes ``fd``."""
        try:
            _copy(content, fd, entry.size)
            self._file_metadata(entry, fd)
        finally:
            os.close(fd)

    def _write_data(self, entry: TarEntry, fd: int, data: bytes) -> None:
        """``_write_file`` for content already in memory (the file writer's small files):
        one write, unless it holds a run of zeros that may be a hole; closes ``fd``."""
        try:
            if len(data) >= _HOLE and _ZERO_RUN in data:
                _copy(io.BytesIO(data), fd, len(data))
            elif data:
                _write_all(fd, memoryview(data))
            self._file_metadata(entry, fd)
        finally:
            os.close(fd)

    def _file_metadata(self, entry: TarEntry, fd: int) -> None:
        self._metadata_fd(entry, fd)
        ns = entry.mtime * 1_000_000_000
        os.utime(fd, ns=(ns, ns))

    def _hardlink(self, entry: TarEntry, parts: list[str], existing: os.stat_result | None) -> None:
        target = split_entry_path(entry.linkname)
        if not target:
            raise InvalidInputError(f"tar entry {entry.name!r}: hardlink to the target root")
        src_parent = self.root.parent(target, entry.name, create=False)
        try:
            if src_parent is None:
                raise FileNotFoundError
            src = os.stat(target[-1], dir_fd=src_parent, follow_symlinks=False)
        except FileNotFoundError:
            raise InvalidInputError(
                f"tar entry {entry.name!r}: hardlink target {entry.linkname!r} does not exist"
            ) from None
        if stat.S_ISDIR(src.st_mode):
            raise InvalidInputError(
                f"tar entry {entry.name!r}: hardlink target {entry.linkname!r} is a directory"
            )
        if existing is not None:
            if (existing.st_dev, existing.st_ino) == (src.st_dev, src.st_ino):
                return
            parent = self.root.parent(parts, entry.name, create=True)
            assert parent is not None
            self._remove(parts[-1], parent)
        src_parent = self.root.parent(target, entry.name, create=False)  # removal may evict it
        parent = self.root.parent(parts, entry.name, create=True)
        assert src_parent is not None and parent is not None
        os.link(target[-1], parts[-1], src_dir_fd=src_parent, dst_dir_fd=parent,
                follow_symlinks=False)  # fmt: skip

    def _metadata_fd(self, entry: TarEntry, fd: int) -> None:
        os.fchown(fd, entry.uid, entry.gid)
        os.fchmod(fd, entry.mode)  # after chown, which clears setuid/setgid
        for xname, value in _settable(entry):
            _setxattr(fd, xname, value, entry)

    def _metadata_path(self, entry: TarEntry, path: str) -> None:
        os.chown(path, entry.uid, entry.gid)
        os.chmod(path, entry.mode)
        for xname, value in _settable(entry):
            _setxattr(path, xname, value, entry)

    def finish(self) -> None:
        """Directory mtimes last, deepest first: creating children changed them."""
        self._drain()
        for key, mtime in sorted(self.dir_times, key=lambda item: -len(item[0])):
            parts = list(key)
            parent = self.root.parent(parts, "/".join(parts), create=False)
            if parent is not None and _exists(parts[-1], parent):
                _utime(parts[-1], parent, mtime)


def _set_topdir(target: str) -> tuple[int, int] | None:
    """Mark a fresh target as the top of a directory hierarchy (``chattr +T``) while it is
    filled, so its subdirectories, and so their files, spread over block groups with few
    directories (see layers/_inodeflags). Returns (fd, old flags) for ``_restore_flags``."""
    try:
        fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    flags = mark_top_directory(fd)
    if flags is not None and not flags & TOP_DIRECTORY:
        return fd, flags
    os.close(fd)
    return None


def _restore_flags(fd: int, flags: int) -> None:
    """The target's inode flags as they were before ``_set_topdir``."""
    try:
        set_inode_flags(fd, flags)
    finally:
        os.close(fd)


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _utime(name: str, dir_fd: int, mtime: int) -> None:
    ns = mtime * 10**9
    os.utime(name, ns=(ns, ns), dir_fd=dir_fd, follow_symlinks=False)


def _settable(entry: TarEntry) -> list[tuple[str, bytes]]:
    # overlayfs' own xattrs (opaque, redirect, metacopy) would change what a mount shows.
    return [(k, v) for k, v in sorted(entry.xattrs.items()) if not _whiteout.is_overlay_xattr(k)]


def _setxattr(path: str | int, name: str, value: bytes, entry: TarEntry) -> None:
    try:
        if isinstance(path, int):
            os.setxattr(path, name, value)
        else:
            os.setxattr(path, name, value, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.ENOTSUP, errno.EPERM):
            raise InvalidInputError(
                f"tar entry {entry.name!r}: cannot set xattr {name!r}: {exc.strerror}"
            ) from exc


_HOLE = 4096  # a file system block: the unit a hole can replace
_ZERO_BLOCK = bytes(_HOLE)
_ZERO_RUN = bytes(256)
_ZERO_CHUNK = bytes(_CHUNK)


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _copy(content: ByteStream, fd: int, size: int) -> None:
    """Write ``size`` bytes of content; whole blocks of zeros become holes (as
    ``cp --sparse`` does), so reading the file back still gives every zero."""
    remaining = size
    pos = 0
    holes = False
    # Pieces as the tar reader holds them (`read1`: no join of two buffers' pieces, a copy
    # of the content), each ending at the next _CHUNK boundary of the file or before.
    # A piece that ends inside a block of zeros is completed to that boundary: a block of
    # zeros split between two pieces would be written, not left a hole.
    read1 = getattr(content, "read1", content.read)
    while remaining:
        want = min(remaining, _CHUNK - pos % _CHUNK)
        data = read1(want)
        n = len(data)
        tail = (pos + n) % _HOLE
        if 0 < n < want and tail and data.endswith(_ZERO_BLOCK[:tail]):
            data += content.read(want - n)
            n = len(data)
        if n == _CHUNK and pos % _HOLE == 0 and data == _ZERO_CHUNK:
            os.lseek(fd, n, os.SEEK_CUR)
            holes = True
        elif n >= _HOLE and _ZERO_RUN in data:  # cheap: only a run of zeros can hold a hole
            view = memoryview(data)
            start = 0  # of the pending run of data
            lead = -pos % _HOLE
            i = lead
            while i + _HOLE <= n:
                if view[i : i + _HOLE] == _ZERO_BLOCK:
                    _write_all(fd, view[start:i])
                    j = i + _HOLE
                    while j + _HOLE <= n and view[j : j + _HOLE] == _ZERO_BLOCK:
                        j += _HOLE
                    os.lseek(fd, j - i, os.SEEK_CUR)
                    holes = True
                    start = i = j
                else:
                    i += _HOLE
            _write_all(fd, view[start:])
        else:
            _write_all(fd, memoryview(data))
        pos += n
        remaining -= n
    if holes:
        os.ftruncate(fd, size)  # a hole at the end has no write to set the length
