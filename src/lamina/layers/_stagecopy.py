"""Changes whose sources live elsewhere (a COPY from the build context) copied straight
into a layer's snapshot directory, one entry at a time, in layer order.

``DirectCopy(directory, changes)`` is the copier ``write_layer(..., copier=...)`` calls
for each entry as it writes the tar: it makes the entry under ``directory`` and, for a
regular file, opens the source, so the writer reads each body once into its buffer,
hashes it and hands the same bytes to the copy: the layer is never written as a tar and
parsed back, and no byte is read twice. Two threads help: one asks the kernel to read
the sources ahead (``posix_fadvise(WILLNEED)``), so a cold context's reads overlap
instead of waiting one file at a time; one creates the small files' copies (a bounded
queue behind the reader), so creating inodes overlaps reading and hashing. Headers
still come from each change's own ``st``, source xattrs and link target, so the tar
(and its diff_id) is the one ``write_layer`` gives for the same changes read from their
sources. The snapshot gets what the applier would give from that tar: owner, mode,
xattrs, and the tar's mtime (whole seconds, clamped to ``source_date_epoch``). A sparse
source is copied in the kernel, holes kept, and its body read from the copy.

``previous`` (layer path → that path in an earlier, committed snapshot of the same COPY,
whose content the caller knows to be the source's): such a file is hardlinked from there
instead of written again, when the old inode's type, size, mode, owner, mtime and xattrs
are exactly what this entry's header says; its body is then read from the link to be
hashed. No inode is made and no byte written; the tar (made from the change's own
``st``) is the one a fresh copy gives, and the two snapshots share an inode nothing ever
writes (overlayfs copies a lower file up before changing it).
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from lamina.errors import InvalidInputError, LaminaError
from lamina.layers import _whiteout
from lamina.layers._changes import Change, ChangeKind

_NOATIME = getattr(os, "O_NOATIME", 0)
_BIG = 1 << 30
_READ_AHEAD = 128 << 20  # bytes the prefetcher may run ahead of the copy
_WRITE_BEHIND = 16 << 20  # bytes of small files queued for the writer thread
_WRITE_BEHIND_FILE = 1 << 20  # a bigger file is written as it is read, not queued
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def header_mtime(st: os.stat_result, source_date_epoch: int | None) -> int:
    """The mtime a tar header records: whole seconds, clamped to ``source_date_epoch``."""
    mtime = st.st_mtime_ns // 1_000_000_000
    if source_date_epoch is not None and mtime > source_date_epoch:
        mtime = source_date_epoch
    return mtime


def _open_source(path: str) -> int:
    try:
        return os.open(path, _READ | _NOATIME)
    except PermissionError:
        return os.open(path, _READ)  # O_NOATIME needs ownership or CAP_FOWNER


class _Prefetch:
    """Asks the kernel to read the files' pages ahead of the copy, at most `_READ_AHEAD`
    bytes ahead of what the copy has taken (``took``), in a thread of its own."""

    def __init__(self, files: list[tuple[str, int]]) -> None:
        self._files = files
        self.taken = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asked = 0
        for path, size in self._files:
            while asked - self.taken > _READ_AHEAD and not self._stop:
                time.sleep(0.002)
            if self._stop:
                return
            try:
                fd = _open_source(path)
            except OSError:
                continue  # the copy reports it
            try:
                os.posix_fadvise(fd, 0, size, os.POSIX_FADV_WILLNEED)
            except OSError:
                pass
            finally:
                os.close(fd)
            asked += size

    def stop(self) -> None:
        self._stop = True
        self._thread.join()


class DirectCopy:
    """Makes each ADD change (file, dir, symlink; in layer order) at ``directory/path``
    as ``write_layer`` passes it (see the module docstring). Entries whose source already
    is that path only get their metadata. ``done()`` (``write_layer`` calls it after the
    last entry) sets directory mtimes (children change them); ``close()`` stops the
    prefetcher: use it as a context manager."""

    def __init__(
        self,
        directory: str,
        changes: Sequence[Change],
        *,
        source_date_epoch: int | None,
        previous: Mapping[str, str] | None = None,
    ) -> None:
        self.directory = directory
        self._previous = previous or {}
        self.reused = 0  # files hardlinked from `previous`
        self._root = os.path.abspath(directory)
        self.source_date_epoch = source_date_epoch
        self._links: dict[tuple[int, int], str] = {}
        self._dir_times: list[tuple[str, int]] = []
        self._file: int | None = None  # a big file being written as it is read
        self._chunks: list[bytes] = []  # a small file's body, written behind
        self._writer: ThreadPoolExecutor | None = None
        self._queued: deque[tuple[Future[None], int]] = deque()
        self._queued_bytes = 0
        ahead = [
            (self._previous.get(c.path, c.source), c.st.st_size) for c in changes
            if c.st is not None and stat.S_ISREG(c.st.st_mode) and c.st.st_size
            and not self._in_place(c)
        ]  # fmt: skip
        self._prefetch = _Prefetch(ahead) if ahead else None

    def _target(self, change: Change) -> str:
        return os.path.join(self.directory, change.path)

    def _in_place(self, change: Change) -> bool:
        source = change.source
        if not source.startswith(self._root) and os.path.isabs(source):
            return False  # a context file: not under the directory (the common case)
        return os.path.abspath(source) == os.path.abspath(self._target(change))

    def place(
        self, change: Change, st: os.stat_result, xattrs: dict[str, bytes]
    ) -> tuple[int, bool] | None:
        if change.kind is not ChangeKind.ADD:
            raise InvalidInputError(f"{change.path}: only additions can be copied into a layer")
        target = self._target(change)
        fmt = stat.S_IFMT(st.st_mode)
        mode = stat.S_IMODE(st.st_mode)
        mtime = header_mtime(st, self.source_date_epoch)
        in_place = self._in_place(change)
        if fmt == stat.S_IFDIR:
            if not in_place:
                try:
                    os.mkdir(target, 0o700)
                except FileExistsError:
                    if not stat.S_ISDIR(os.lstat(target).st_mode):
                        raise
            os.chown(target, st.st_uid, st.st_gid, follow_symlinks=False)
            os.chmod(target, mode)
            if not in_place:
                _set_xattrs(target, xattrs, change.path)
            self._dir_times.append((target, mtime))
            return None
        if fmt == stat.S_IFLNK:
            if not in_place:
                os.symlink(os.readlink(change.source), target)
                _set_xattrs(target, xattrs, change.path)
            os.chown(target, st.st_uid, st.st_gid, follow_symlinks=False)
            os.utime(target, ns=(mtime * 10**9,) * 2, follow_symlinks=False)
            return None
        if fmt != stat.S_IFREG:
            raise InvalidInputError(
                f"{change.path}: only files, directories and symlinks are copied this way"
            )
        key = (st.st_dev, st.st_ino)
        first = self._links.get(key) if st.st_nlink > 1 else None
        if first is not None:  # the tar says: hardlink (once the first is written)
            self._behind(_link, 0, first, target)
            return None
        if in_place:
            return (_open_source(target), False) if st.st_size else None
        if st.st_nlink > 1:
            self._links[key] = target
        if self._prefetch is not None:
            self._prefetch.taken += st.st_size
        old = self._previous.get(change.path) if st.st_nlink == 1 else None
        if old is not None and self._reuse(old, target, st, xattrs, mtime):
            return (_open_source(target), False) if st.st_size else None
        src = _open_source(change.source)
        if st.st_size and st.st_blocks * 512 >= st.st_size:
            if st.st_size > _WRITE_BEHIND_FILE:
                try:
                    self._file = os.open(target, _CREATE, 0o600)  # written as it is read
                except BaseException:
                    os.close(src)
                    raise
            self._chunks = []
            return src, True  # write_layer hands the body to `write`, then `finish_file`
        try:  # empty, or sparse: copied in the kernel, holes kept; the body is read back
            dst = os.open(target, _CREATE, 0o600)
            try:
                copy_range(src, dst, st.st_size, change.source)
                _set_metadata(dst, st, xattrs, header_mtime(st, self.source_date_epoch),
                              change.path)  # fmt: skip
            finally:
                os.close(dst)
        finally:
            os.close(src)
        return (_open_source(target), False) if st.st_size else None

    def _reuse(
        self, old: str, target: str, st: os.stat_result, xattrs: dict[str, bytes], mtime: int
    ) -> bool:
        """Hardlink `old` (a committed snapshot's file) as `target` if it is exactly the file
        this entry's header describes; False (nothing done) if not, or if the link fails."""
        try:
            was = os.lstat(old)
            if not (
                stat.S_ISREG(was.st_mode)
                and was.st_size == st.st_size
                and was.st_mode == st.st_mode
                and was.st_uid == st.st_uid
                and was.st_gid == st.st_gid
                and was.st_mtime_ns == mtime * 10**9
                and _xattrs_of(old) == _kept(xattrs)
            ):
                return False
            # Missing (pruned meanwhile), too many links, another file system: copy instead.
            os.link(old, target, follow_symlinks=False)
        except OSError:
            return False
        self.reused += 1
        return True

    def write(self, data: memoryview) -> None:
        if self._file is not None:
            _write_all(self._file, data)
        else:
            self._chunks.append(bytes(data))

    def finish_file(self, change: Change, st: os.stat_result, xattrs: dict[str, bytes]) -> None:
        mtime = header_mtime(st, self.source_date_epoch)
        if self._file is not None:
            fd, self._file = self._file, None
            try:
                _set_metadata(fd, st, xattrs, mtime, change.path)
            finally:
                os.close(fd)
            return
        chunks, self._chunks = self._chunks, []
        self._behind(_create_file, st.st_size, self._target(change), chunks, st, xattrs, mtime,
                     change.path)  # fmt: skip

    def _behind(self, job: Callable[..., None], size: int, *args: Any) -> None:
        """Run `job(*args)` in the writer thread, after what was queued before."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="copy-writer")
        while self._queued and self._queued_bytes + size > _WRITE_BEHIND:
            done, n = self._queued.popleft()
            self._queued_bytes -= n
            done.result()
        self._queued.append((self._writer.submit(job, *args), size))
        self._queued_bytes += size

    def _drain(self) -> None:
        while self._queued:
            done, n = self._queued.popleft()
            self._queued_bytes -= n
            done.result()

    def done(self) -> None:
        self._drain()
        self.close()
        for path, mtime in sorted(self._dir_times, key=lambda item: -len(item[0])):
            os.utime(path, ns=(mtime * 10**9,) * 2, follow_symlinks=False)
        self._dir_times.clear()

    def close(self) -> None:
        if self._prefetch is not None:
            self._prefetch.stop()
            self._prefetch = None
        if self._file is not None:
            os.close(self._file)
            self._file = None
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    def __enter__(self) -> DirectCopy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kept(xattrs: dict[str, bytes]) -> dict[str, bytes]:
    """The xattrs a copy gets (overlay's own are never set on a snapshot's file)."""
    return {k: v for k, v in xattrs.items() if not _whiteout.is_overlay_xattr(k)}


def _xattrs_of(path: str) -> dict[str, bytes]:
    names = os.listxattr(path, follow_symlinks=False)
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in names}


def _set_metadata(
    fd: int, st: os.stat_result, xattrs: dict[str, bytes], mtime: int, name: str
) -> None:
    os.fchown(fd, st.st_uid, st.st_gid)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))  # after chown, which clears setuid/setgid
    _set_xattrs(fd, xattrs, name)
    os.utime(fd, ns=(mtime * 10**9,) * 2)


def _create_file(
    target: str,
    chunks: list[bytes],
    st: os.stat_result,
    xattrs: dict[str, bytes],
    mtime: int,
    name: str,
) -> None:
    """A small file's copy, made in the writer thread from the bytes write_layer read."""
    fd = os.open(target, _CREATE, 0o600)
    try:
        for chunk in chunks:
            _write_all(fd, memoryview(chunk))
        _set_metadata(fd, st, xattrs, mtime, name)
    finally:
        os.close(fd)


def _link(first: str, target: str) -> None:
    os.link(first, target, follow_symlinks=False)


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


def copy_range(src: int, dst: int, size: int, name: str) -> None:
    """Exactly ``size`` bytes of ``src`` into ``dst``, in the kernel (copy_file_range,
    else sendfile); holes of a sparse source stay holes."""
    st = os.fstat(src)
    if st.st_blocks * 512 < st.st_size:  # sparse: copy its data extents only
        offset = 0
        while offset < size:
            try:
                start = os.lseek(src, offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                break  # only a hole remains
            if start >= size:
                break
            end = min(os.lseek(src, start, os.SEEK_HOLE), size)
            os.lseek(src, start, os.SEEK_SET)
            os.lseek(dst, start, os.SEEK_SET)
            _copy_run(src, dst, end - start, name)
            offset = end
        os.ftruncate(dst, size)
        return
    _copy_run(src, dst, size, name)


def _copy_run(src: int, dst: int, count: int, name: str) -> None:
    in_kernel = True
    while count > 0:
        if in_kernel:
            try:
                n = os.copy_file_range(src, dst, min(count, _BIG))
            except OSError as exc:
                # Across file systems older kernels refuse.
                if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
                in_kernel = False
                continue
        else:
            n = os.sendfile(dst, src, None, min(count, _BIG))
        if n == 0:
            raise LaminaError(
                f"{name}: file shrank while it was copied into a layer",
                hint="do not modify the build context while lamina builds from it",
            )
        count -= n


def _set_xattrs(target: str | int, xattrs: dict[str, bytes], name: str) -> None:
    """The source's xattrs (those a tar carries) on the copy (a path, not followed, or a
    descriptor); as the applier does, a file system or kernel refusing one (ENOTSUP,
    EPERM) is not an error."""
    for xname, value in sorted(xattrs.items()):
        if _whiteout.is_overlay_xattr(xname):
            continue
        try:
            os.setxattr(target, xname, value, follow_symlinks=isinstance(target, int))
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EPERM):
                raise InvalidInputError(
                    f"{name}: cannot set xattr {xname!r}: {exc.strerror}"
                ) from exc
