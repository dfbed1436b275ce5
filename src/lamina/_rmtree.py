"""Removing a directory tree of any depth, never following a symlink.

Python 3.11's ``shutil.rmtree`` and ``os.walk`` recurse once per level: a tree deeper than
the recursion limit (a RUN step can make one with ``mkdir`` in a loop) cannot be removed
by them, and a store whose scratch dir cannot be removed is stuck. This walks one
directory descriptor at a time, down by name and back up by ``..``, never recursing, and
imports nothing heavy (``lamina run`` removes its container with it).
"""

from __future__ import annotations

import os

from lamina import _lightctx as contextlib

_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_dir(path: str) -> None:
    """Remove the directory ``path`` and all it holds, making read-only directories
    writable on the way; what cannot be removed is left, as
    ``shutil.rmtree(ignore_errors=True)`` leaves it."""
    try:
        fd = os.open(path, _FLAGS)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o700)
        fd = _empty(fd)
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.rmdir(path)


def _empty(fd: int) -> int:
    """Remove what the directory ``fd`` holds; returns the descriptor of that directory
    (the walk moves down and back up, closing each one it leaves)."""
    names: list[str] = []  # the way down from the top
    kept: list[set[str]] = [set()]  # per level: entries that could not be removed
    while True:
        child = None
        with os.scandir(fd) as entries:
            for entry in entries:
                if entry.name in kept[-1]:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    child = entry.name
                    break
                try:
                    os.unlink(entry.name, dir_fd=fd)
                except FileNotFoundError:
                    pass
                except OSError:
                    kept[-1].add(entry.name)
        if child is not None:
            try:
                below = os.open(child, _FLAGS, dir_fd=fd)
            except OSError:
                kept[-1].add(child)
                continue
            with contextlib.suppress(OSError):
                os.fchmod(below, 0o700)
            os.close(fd)
            fd = below
            names.append(child)
            kept.append(set())
            continue
        if not names:
            return fd
        above = os.open("..", _FLAGS, dir_fd=fd)
        os.close(fd)
        fd = above
        name = names.pop()
        kept.pop()
        try:
            os.rmdir(name, dir_fd=fd)
        except FileNotFoundError:
            pass
        except OSError:
            kept[-1].add(name)
