"""`remove_tree`: a directory and everything in it, however deep, best effort.

`shutil.rmtree` (and a recursive walk of directory fds) recurses once per level: a tree
deeper than Python's recursion limit, which a container or a layer can make with one
`mkdir -p`, raised RecursionError half-way and left the rest. This walks with a stack of
names instead, holding one directory fd at a time (a chain of thousands of open fds would
run into the fd limit), climbing back up through `..`: what it removes is private to lamina
(a container's trash directory, a snapshot nothing uses), nothing renames it meanwhile.
Symlinks are removed, never followed; a directory it may not change is made writable
first (a layer's read-only directories, for a user who is not root).
"""

from __future__ import annotations

import os
import stat

from lamina import _lightctx as contextlib  # (`contextlib` costs `lamina run` its import)

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    from collections.abc import Callable

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(where: str | os.PathLike[str]) -> None:
    """Remove `where` (a directory, a file or a symlink) and all it holds; errors are
    ignored (whatever could not be removed stays)."""
    path = os.fspath(where)
    try:
        fd = _open_dir(path, None)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)  # a file or a symlink (or nothing there)
        return
    # One entry per level below `path`: (this directory's name in its parent, the names
    # of its subdirectories not yet removed).
    stack: list[tuple[str, list[str]]] = []
    try:
        subdirs = _clear_files(fd)
        while True:
            if subdirs:
                name = subdirs.pop()
                try:
                    sub = _open_dir(name, fd)
                except OSError:
                    _unlink_quietly(name, fd)  # not a directory after all, or gone
                    continue
                stack.append((name, subdirs))
                os.close(fd)
                fd = sub
                subdirs = _clear_files(fd)
                continue
            if not stack:
                break
            name, subdirs = stack.pop()
            parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent
            _rmdir_quietly(name, fd)
    except OSError:
        pass
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.rmdir(path)


def _open_dir(name: str, parent: int | None) -> int:
    """The directory `name` (in `parent`, else as a path) opened, made readable first if it
    is not (for a user who is not root)."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except PermissionError:
        os.chmod(name, stat.S_IRWXU, dir_fd=parent)  # (a directory: scandir said so)
        return os.open(name, _DIR_FLAGS, dir_fd=parent)


def _clear_files(fd: int) -> list[str]:
    """Unlink every non-directory in the directory `fd`; the names of its directories."""
    try:
        listed = _listing(fd)
    except PermissionError:
        os.fchmod(fd, stat.S_IRWXU)
        listed = _listing(fd)
    dirs = []
    for name, is_dir in listed:
        if is_dir:
            dirs.append(name)
        else:
            _unlink_quietly(name, fd)
    return dirs


def _listing(fd: int) -> list[tuple[str, bool]]:
    """(name, is a directory) of each entry of the directory `fd`."""
    with os.scandir(fd) as entries:
        return [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]


def _unlink_quietly(name: str, fd: int) -> None:
    _quietly(os.unlink, name, fd)


def _rmdir_quietly(name: str, fd: int) -> None:
    _quietly(os.rmdir, name, fd)


def _quietly(remove: Callable[..., None], name: str, fd: int) -> None:
    """`remove(name, dir_fd=fd)`, the directory made writable first if it must be; errors
    ignored."""
    try:
        remove(name, dir_fd=fd)
    except PermissionError:
        with contextlib.suppress(OSError):
            os.fchmod(fd, stat.S_IRWXU)
            remove(name, dir_fd=fd)
    except OSError:
        pass
