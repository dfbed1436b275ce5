"""Paths inside a root directory, resolved as if the root were `/`.

Symlinks are followed but never out of the root: an absolute target restarts at the root and
`..` stops there, as umoci's secure join does. Every step is a directory file descriptor opened
with O_NOFOLLOW, so the decision is made on what the kernel found, not on a string.
"""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import dataclass
from pathlib import Path

from lamina.errors import InvalidInputError, NotFoundError

_MAX_LINKS = 40  # the kernel's own MAXSYMLINKS


@dataclass(frozen=True)
class Resolved:
    """Where a path leads inside a root: the existing part (symlinks resolved) and the rest."""

    existing: tuple[str, ...]
    missing: tuple[str, ...]

    def path(self) -> str:
        """The resolved path, `/`-rooted, missing components included."""
        return "/" + "/".join(self.existing + self.missing)


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def resolve_in_root(root: Path, path: str) -> Resolved:
    """Resolve `path` inside `root` without leaving it. A missing component ends the walk: the
    rest is kept lexically (as runc does when it creates a mount point)."""
    pending = _parts(path)
    names: list[str] = []
    fds = [os.open(root, os.O_PATH | os.O_DIRECTORY)]
    links = 0
    try:
        while pending:
            name = pending.pop(0)
            if name == "..":
                if len(fds) > 1:
                    os.close(fds.pop())
                    names.pop()
                continue
            try:
                st = os.stat(name, dir_fd=fds[-1], follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                rest = _parts(posixpath.normpath("/" + "/".join([name, *pending])))
                return Resolved(tuple(names), tuple(rest))
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_LINKS:
                    raise InvalidInputError(f"{path!r} in {root}: too many levels of symlinks")
                target = os.readlink(name, dir_fd=fds[-1])
                if target.startswith("/"):
                    while len(fds) > 1:
                        os.close(fds.pop())
                    names.clear()
                pending = _parts(target) + pending
                continue
            if not pending:
                names.append(name)
                break
            if not stat.S_ISDIR(st.st_mode):
                # A file where a directory should be: nothing below it can exist.
                return Resolved(tuple(names), (name, *pending))
            fds.append(os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fds[-1]))
            names.append(name)
        return Resolved(tuple(names), ())
    finally:
        for fd in fds:
            os.close(fd)


def open_dir_nofollow(root_fd: int, parts: list[str] | tuple[str, ...]) -> int | None:
    """Open the directory `parts` below `root_fd` following no symlink; None if it is not one."""
    fd = os.dup(root_fd)
    try:
        for name in parts:
            if name in ("", ".", ".."):
                raise InvalidInputError(f"path component {name!r} is not a plain name")
            try:
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except (FileNotFoundError, NotADirectoryError, OSError):
                os.close(fd)
                return None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_file_in_root(root: Path, path: str, limit: int) -> bytes | None:
    """The content of `path` inside `root` (symlinks scoped), None when it does not exist.

    Reads at most `limit` bytes: a file inside an image is hostile and may be endless.
    """
    resolved = resolve_in_root(root, path)
    if resolved.missing or not resolved.existing:
        return None
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        dir_fd = open_dir_nofollow(root_fd, resolved.existing[:-1])
    finally:
        os.close(root_fd)
    if dir_fd is None:
        return None
    try:
        fd = os.open(
            resolved.existing[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd
        )
    except FileNotFoundError:
        return None
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise InvalidInputError(f"{path} in {root} is not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise InvalidInputError(f"{path} in {root} is larger than {limit} bytes")
    return data


def require_file_in_root(root: Path, path: str, limit: int) -> bytes:
    """Like read_file_in_root, but a missing file is a NotFoundError."""
    data = read_file_in_root(root, path, limit)
    if data is None:
        raise NotFoundError(f"{path} not found in {root}")
    return data
