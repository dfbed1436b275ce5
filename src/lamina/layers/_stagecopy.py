"""Changes whose sources live elsewhere (a COPY from the build context) copied straight
into a layer's snapshot directory, one entry at a time, in layer order.

``stage_changes`` yields each change once its entry exists under the snapshot directory,
so ``write_layer(..., content_root=directory)`` hashes the tar from the fresh copy (page
cache warm) right behind the copier: the layer is never written as a tar and parsed back.
Headers still come from each change's own ``st``, source xattrs and link target, so the
tar (and its diff_id) is the one ``write_layer`` gives for the same changes read from
their sources. The snapshot gets what the applier would give from that tar: owner, mode,
xattrs, and the tar's mtime (whole seconds, clamped to ``source_date_epoch``).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Iterator

from lamina.errors import InvalidInputError, LaminaError
from lamina.layers import _whiteout
from lamina.layers._changes import Change, ChangeKind, read_xattrs

_NOATIME = getattr(os, "O_NOATIME", 0)
_BIG = 1 << 30


def header_mtime(st: os.stat_result, source_date_epoch: int | None) -> int:
    """The mtime a tar header records: whole seconds, clamped to ``source_date_epoch``."""
    mtime = st.st_mtime_ns // 1_000_000_000
    if source_date_epoch is not None and mtime > source_date_epoch:
        mtime = source_date_epoch
    return mtime


def stage_changes(
    changes: Iterable[Change], directory: str, *, source_date_epoch: int | None
) -> Iterator[Change]:
    """Copy each ADD change (file, dir, symlink; in layer order) to ``directory/path`` and
    yield it. Entries whose source already is that path are only given their metadata.
    Directory mtimes are set when the iteration ends (children change them)."""
    links: dict[tuple[int, int], str] = {}
    dir_times: list[tuple[str, int]] = []
    for change in changes:
        if change.kind is not ChangeKind.ADD:
            raise InvalidInputError(f"{change.path}: only additions can be copied into a layer")
        st = change.st if change.st is not None else os.lstat(change.source)
        target = os.path.join(directory, change.path)
        fmt = stat.S_IFMT(st.st_mode)
        mode = stat.S_IMODE(st.st_mode)
        mtime = header_mtime(st, source_date_epoch)
        in_place = os.path.abspath(change.source) == os.path.abspath(target)
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
                _copy_xattrs(change.source, target, change.path)
            dir_times.append((target, mtime))
        elif fmt == stat.S_IFLNK:
            if not in_place:
                os.symlink(os.readlink(change.source), target)
                _copy_xattrs(change.source, target, change.path)
            os.chown(target, st.st_uid, st.st_gid, follow_symlinks=False)
            os.utime(target, ns=(mtime * 10**9,) * 2, follow_symlinks=False)
        elif fmt == stat.S_IFREG:
            key = (st.st_dev, st.st_ino)
            first = links.get(key) if st.st_nlink > 1 else None
            if first is not None:
                os.link(first, target, follow_symlinks=False)  # the tar says: hardlink
            elif not in_place:
                _copy_file(change.source, target, st.st_size, st.st_uid, st.st_gid, mode, mtime)
                _copy_xattrs(change.source, target, change.path)
                if st.st_nlink > 1:
                    links[key] = target
        else:
            raise InvalidInputError(
                f"{change.path}: only files, directories and symlinks are copied this way"
            )
        yield change
    for path, mtime in sorted(dir_times, key=lambda item: -len(item[0])):
        os.utime(path, ns=(mtime * 10**9,) * 2, follow_symlinks=False)


def _copy_file(
    source: str, target: str, size: int, uid: int, gid: int, mode: int, mtime: int
) -> None:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        src = os.open(source, flags | _NOATIME)
    except PermissionError:
        src = os.open(source, flags)
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                      | os.O_CLOEXEC, 0o600)  # fmt: skip
        try:
            copy_range(src, dst, size, source)
            os.fchown(dst, uid, gid)
            os.fchmod(dst, mode)  # after chown, which clears setuid/setgid
            os.utime(dst, ns=(mtime * 10**9,) * 2)
        finally:
            os.close(dst)
    finally:
        os.close(src)


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


def _copy_xattrs(source: str, target: str, name: str) -> None:
    """The source's xattrs (those a tar carries) on the copy; as the applier does, a
    file system or kernel refusing one (ENOTSUP, EPERM) is not an error."""
    for xname, value in sorted(read_xattrs(source).items()):
        if _whiteout.is_overlay_xattr(xname):
            continue
        try:
            os.setxattr(target, xname, value, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EPERM):
                raise InvalidInputError(
                    f"{name}: cannot set xattr {xname!r}: {exc.strerror}"
                ) from exc
