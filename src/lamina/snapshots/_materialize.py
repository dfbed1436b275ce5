"""The copying fallback: what overlayfs shows, built as a plain directory tree.

For machines without overlayfs, and for tests that want the merged view without mounting.
Both trees are walked with directory file descriptors and O_NOFOLLOW, so a symlink an earlier
layer planted is replaced, never written through.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

from lamina.layers import is_overlay_opaque_dir, is_overlay_whiteout, is_overlay_xattr

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def _copy_xattrs(src_fd: int, dst_fd: int) -> None:
    try:
        names = os.listxattr(src_fd)
    except OSError as e:
        if e.errno == errno.ENOTSUP:
            return
        raise
    for name in names:
        if not is_overlay_xattr(name):
            os.setxattr(dst_fd, name, os.getxattr(src_fd, name))


def _copy_data(in_fd: int, out_fd: int) -> None:
    try:
        while os.copy_file_range(in_fd, out_fd, 1 << 30):
            pass
        return
    except OSError as e:
        # Across file systems some kernels refuse; copy by hand from where it stopped.
        if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    while chunk := os.read(in_fd, 1 << 20):
        os.write(out_fd, chunk)


def _remove(name: str, dir_fd: int) -> None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _clear(dir_fd: int) -> None:
    for name in os.listdir(dir_fd):
        _remove(name, dir_fd)


def _set_meta(name: str, st: os.stat_result, dir_fd: int) -> None:
    os.chown(name, st.st_uid, st.st_gid, dir_fd=dir_fd, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=dir_fd)
    os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dir_fd, follow_symlinks=False)


def _copy_entry(
    name: str, st: os.stat_result, src: int, dst: int, links: dict[tuple[int, int], tuple[int, str]]
) -> None:
    mode = st.st_mode
    if stat.S_ISREG(mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            first_dir, first_name = links[key]
            os.link(first_name, name, src_dir_fd=first_dir, dst_dir_fd=dst)
            return
        in_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=src)
        try:
            out_fd = os.open(
                name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dst
            )
            try:
                _copy_data(in_fd, out_fd)
                _copy_xattrs(in_fd, out_fd)
            finally:
                os.close(out_fd)
        finally:
            os.close(in_fd)
        if st.st_nlink > 1:
            links[key] = (os.dup(dst), name)
    elif stat.S_ISLNK(mode):
        os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
        os.mknod(name, mode, st.st_rdev, dir_fd=dst)
    else:
        return  # sockets and the like carry no content a layer could mean
    _set_meta(name, st, dst)


def _merge(src: int, dst: int, bottom: bool, links: dict[tuple[int, int], tuple[int, str]]) -> None:
    dirs: list[tuple[str, os.stat_result]] = []
    for name in sorted(os.listdir(src)):
        st = os.stat(name, dir_fd=src, follow_symlinks=False)
        if is_overlay_whiteout(st):
            if not bottom:
                _remove(name, dst)
            continue
        if stat.S_ISDIR(st.st_mode):
            dirs.append((name, st))
            continue
        _remove(name, dst)
        _copy_entry(name, st, src, dst, links)
    for name, st in dirs:
        try:
            existing = os.stat(name, dir_fd=dst, follow_symlinks=False)
            if not stat.S_ISDIR(existing.st_mode):
                os.unlink(name, dir_fd=dst)
                os.mkdir(name, 0o700, dir_fd=dst)
        except FileNotFoundError:
            os.mkdir(name, 0o700, dir_fd=dst)
        child_src = os.open(name, _DIR_FLAGS, dir_fd=src)
        try:
            child_dst = os.open(name, _DIR_FLAGS, dir_fd=dst)
            try:
                if is_overlay_opaque_dir(child_src):
                    _clear(child_dst)
                _merge(child_src, child_dst, bottom, links)
                _copy_xattrs(child_src, child_dst)
            finally:
                os.close(child_dst)
        finally:
            os.close(child_src)
        _set_meta(name, st, dst)


def materialize(lowerdirs: Sequence[Path], target: Path) -> None:
    """Build in `target` (an existing, normally empty directory) the merged view of
    `lowerdirs` (top first, as for overlay_mount), copying layers bottom-up: a 0:0 character
    device deletes what is below it, an opaque directory hides what was below it."""
    links: dict[tuple[int, int], tuple[int, str]] = {}
    dst = os.open(target, _DIR_FLAGS)
    try:
        for i, lower in enumerate(reversed(lowerdirs)):
            src = os.open(lower, _DIR_FLAGS)
            try:
                _merge(src, dst, i == 0, links)
                st = os.fstat(src)
                os.chown(dst, st.st_uid, st.st_gid)
                os.chmod(dst, stat.S_IMODE(st.st_mode))
            finally:
                os.close(src)
            for fd, _ in links.values():
                os.close(fd)
            links.clear()
    finally:
        os.close(dst)
