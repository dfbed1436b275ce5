"""Unpack a layer tar into a directory, safely.

Two targets: a snapshot in overlay format (whiteouts become 0:0 character devices,
opaque markers the ``trusted.overlay.opaque`` xattr) and a plain directory holding the
layers below (whiteouts delete, an opaque marker empties what the lower layers put in
the directory). Every path goes through :class:`ScopedRoot`: nothing outside the
target is ever created, changed or removed.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import queue
import shutil
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lamina.errors import InvalidInputError, LaminaError
from lamina.layers import _whiteout
from lamina.layers._inodeflags import TOP_DIRECTORY, inode_flags, set_inode_flags
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
    applier = _Applier(os.fspath(target), overlay, limits)
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
        collect.resolve()  # the file thread hashed the files it wrote: all done by now
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


_FAST_MAX = 256 << 10  # a new file up to this size may be written by the file thread
_BATCH = 32  # files handed over at once
_BATCH_BYTES = 1 << 20
_FAST_QUEUE = 16  # batches handed to it and not yet written (about 20 MiB at most)


_Job = tuple[int, str, TarEntry, bytes, bool]
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


class _FileThread:
    """Writes new regular files (create, content, owner, mode, xattrs, mtime) in the order
    given, on a thread of its own, while the applier reads on: the kernel's share of a
    layer of many small files runs beside lamina's. Only files that cannot collide with
    anything are given to it (see ``_Applier._fast``); ``drain()`` waits for all given.
    Files cross in batches (one queue operation per ``_BATCH`` files or MiB); a batch
    holds one duplicate of each parent directory's descriptor (the applier's own may be
    evicted from its cache meanwhile), closed once the batch is written. This thread does
    the syscalls only: creating a file is the dearest step of a load (ext4 spends more on
    it than lamina on parsing its header), so the file index's hash of the content is
    taken on the reading thread, which has time to spare."""

    def __init__(self, applier: _Applier) -> None:
        self._applier = applier
        self._queue: queue.Queue[tuple[list[_Job], list[int]] | None] = queue.Queue(_FAST_QUEUE)
        self._batch: list[_Job] = []
        # this batch's parent duplicates, with the group a new file in each gets
        self._dirs: dict[tuple[str, ...], tuple[int, int]] = {}
        self._batch_bytes = 0
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
        self._thread = threading.Thread(target=self._run, name="layer-files", daemon=True)
        self._thread.start()

    def put(
        self,
        parent: int,
        dir_key: tuple[str, ...],
        name: str,
        entry: TarEntry,
        data: bytes,
    ) -> None:
        fd, group = self._dirs.get(dir_key, (-1, -1))
        if fd < 0:
            fd = os.dup(parent)
            st = os.fstat(fd)
            # A setgid directory gives its group to new files (the applier drains before
            # changing a directory that holds files of this thread: see ``apply``).
            group = st.st_gid if st.st_mode & stat.S_ISGID else self._gid
            self._dirs[dir_key] = (fd, group)
        # Owner and mode as created need no fchown, fchmod: two syscalls of six per file.
        owned = entry.uid == self._uid and entry.gid == group
        exact = (
            self._umask is not None
            and not self._applier.acl
            and not entry.mode & (_SPECIAL | self._umask)
        )
        self._batch.append((fd, name, entry, data, owned and exact))
        self._batch_bytes += len(data)
        if len(self._batch) >= _BATCH or self._batch_bytes >= _BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            self._queue.put((self._batch, [fd for fd, _group in self._dirs.values()]))
            self._batch, self._batch_bytes, self._dirs = [], 0, {}

    def _run(self) -> None:
        write = self._applier._write_data
        while (item := self._queue.get()) is not None:
            batch, dirs = item
            try:
                for parent, name, entry, data, as_created in batch:
                    if self.error is not None:
                        break
                    try:
                        mode = entry.mode if as_created else 0o600
                        write(entry, os.open(name, _FILE_FLAGS, mode, dir_fd=parent), data,
                              as_created)  # fmt: skip
                    except OSError as exc:  # reported by the applier's thread
                        self.error = LaminaError(f"tar entry {entry.name!r}: {exc.strerror or exc}")
                        self.error.__cause__ = exc
                    except BaseException as exc:
                        self.error = exc
            finally:
                for fd in dirs:
                    os.close(fd)
            self._queue.task_done()
        self._queue.task_done()

    def drain(self) -> None:
        self._flush()
        self._queue.join()

    def stop(self) -> None:
        self._flush()
        self._queue.put(None)
        self._thread.join()


class _Applier:
    def __init__(self, target: str, overlay: bool, limits: Limits) -> None:
        self.root = ScopedRoot(target, limits.max_symlink_hops)
        self.overlay = overlay
        self.created: set[tuple[str, ...]] = set()
        self.dir_times: list[tuple[tuple[str, ...], int]] = []
        # A fresh target holds only what this layer made: a file whose name nothing else
        # took yet, in a directory reached without a symlink, can be written on a thread.
        self.files: _FileThread | None = None
        self._fresh = not os.listdir(target)
        self._taken: set[tuple[str, ...]] = set()  # directories, whiteouts: not for it
        self._links: set[tuple[str, ...]] = set()  # symlinks this layer made
        self._plain_dirs: set[tuple[str, ...]] = set()  # reached without a symlink
        self._file_dirs: set[tuple[str, ...]] = set()  # parents of the file thread's files
        self.acl = False  # a directory of this layer has a default ACL: modes by fchmod
        self._topdir = _set_topdir(target) if self._fresh else None

    def close(self) -> None:
        if self.files is not None:
            self.files.stop()
        if self._topdir is not None:
            _restore_flags(*self._topdir)
        self.root.close()

    def raise_deferred(self) -> None:
        """What went wrong on the file thread, raised here (after ``close``)."""
        if self.files is not None and self.files.error is not None:
            self._raise_file_error(self.files.error)

    def _raise_file_error(self, exc: BaseException) -> None:
        raise exc

    def _drain(self) -> None:
        """Wait until every file handed to the file thread is written (before anything
        that may remove, replace or link to one, and before directory times)."""
        if self.files is not None:
            self.files.drain()
            if self.files.error is not None:
                self._raise_file_error(self.files.error)

    def _track(self, parts: list[str]) -> None:
        """Before an entry is applied: the directories on its way are taken (never files
        of the file thread), and once a path of this layer leads through one of its
        symlinks, what it reaches has other names: the file thread is used no more."""
        dir_key = tuple(parts[:-1])
        if dir_key in self._plain_dirs:
            return
        if self._links and any(dir_key[:i] in self._links for i in range(1, len(parts))):
            self._fresh = False
            return
        for i in range(1, len(parts)):
            self._taken.add(dir_key[:i])
        self._plain_dirs.add(dir_key)

    def _can_fast(self, entry: TarEntry, parts: list[str]) -> bool:
        """Whether a new small regular file may go to the file thread: nothing can collide
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
        """Hand the file (see ``_can_fast``) to the file thread; returns its content."""
        key = tuple(parts)
        parent = self.root.parent(parts, entry.name, create=True)
        assert parent is not None
        data = content.read(entry.size)
        if len(data) != entry.size:  # pragma: no cover - the tar reader raises first
            raise InvalidInputError(f"tar entry {entry.name!r}: content ends early")
        if self.files is None:
            self.files = _FileThread(self)
        elif self.files.error is not None:
            self._raise_file_error(self.files.error)
        self.created.add(key)
        self._file_dirs.add(key[:-1])
        self.files.put(parent, key[:-1], parts[-1], entry, data)
        return data

    def apply(
        self, entry: TarEntry, content: EntryReader, collect: EntryCollector | None = None
    ) -> None:
        """Apply one entry; ``collect`` (the file index) is told about it: a file written
        by the file thread is hashed there, any other entry as it is read here."""
        parts, marker, victim = _entry_parts(entry)
        if not parts:
            if entry.type is EntryType.DIR:
                return  # the target root's own metadata belongs to whoever made it
            raise InvalidInputError(f"tar entry {entry.name!r} would replace the target root")
        if self._fresh:
            self._track(parts)
        try:
            if (
                entry.type is EntryType.FILE
                and marker is _whiteout.Marker.NONE
                and self._can_fast(entry, parts)
            ):
                data = self._fast(entry, parts, content)
                if collect is not None:  # hashed here while the file thread writes
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
                self._create(entry, parts, stream)
                if entry.type is EntryType.SYMLINK:
                    self._links.add(key)
                    self._plain_dirs.clear()
                self._taken.add(key)
        except OSError as exc:
            raise LaminaError(f"tar entry {entry.name!r}: {exc.strerror or exc}") from exc
        if collect is not None:
            collect.done()

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

    def _write_file(
        self, entry: TarEntry, fd: int, content: ByteStream, as_created: bool = False
    ) -> None:
        """Content, owner, mode, xattrs and mtime of a new regular file; closes ``fd``.
        ``as_created``: it was created with the entry's owner and mode already."""
        try:
            _copy(content, fd, entry.size)
            self._file_metadata(entry, fd, as_created)
        finally:
            os.close(fd)

    def _write_data(self, entry: TarEntry, fd: int, data: bytes, as_created: bool) -> None:
        """``_write_file`` for content already in memory (the file thread's small files):
        one write, unless it holds a run of zeros that may be a hole; closes ``fd``."""
        try:
            if len(data) >= _HOLE and _ZERO_RUN in data:
                _copy(io.BytesIO(data), fd, len(data))
            elif data:
                _write_all(fd, memoryview(data))
            self._file_metadata(entry, fd, as_created)
        finally:
            os.close(fd)

    def _file_metadata(self, entry: TarEntry, fd: int, as_created: bool) -> None:
        if not as_created:
            self._metadata_fd(entry, fd)
        elif entry.xattrs:
            for xname, value in _settable(entry):
                _setxattr(fd, xname, value, entry)
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
    flags = inode_flags(fd)
    if (
        flags is not None
        and not flags & TOP_DIRECTORY
        and set_inode_flags(fd, flags | TOP_DIRECTORY)
    ):
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
    while remaining:
        data = content.read(min(remaining, _CHUNK))
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
