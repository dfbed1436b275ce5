"""Path resolution inside a directory as if it were ``/``.

Every component is opened relative to its parent's file descriptor with ``O_NOFOLLOW``;
a symlink met on the way is read and its target resolved again from the scoped root
(absolute targets restart there, ``..`` stops there), as umoci's SecureJoin and
``openat2(RESOLVE_IN_ROOT)`` do. No decision rests on a path string alone, so an
entry written "through" a symlink an earlier entry planted still lands inside.
"""

from __future__ import annotations

import errno
import os
import stat

from lamina.errors import InvalidInputError

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def split_entry_path(name: str) -> list[str]:
    """A tar name as components: leading ``/`` and ``.`` dropped, ``..`` refused."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidInputError(f"tar entry {name!r}: '..' in a layer path is not allowed")
    return parts


class ScopedRoot:
    """A directory opened once; resolves parents of entries inside it.

    Resolved parent directories are cached (consecutive tar entries share them);
    :meth:`invalidate` must be called whenever a directory or symlink is removed.
    """

    def __init__(self, path: str, max_symlink_hops: int = 40) -> None:
        self.fd = os.open(path, _DIR_FLAGS)
        self._hops = max_symlink_hops
        self._cache: dict[tuple[str, ...], int] = {}

    def close(self) -> None:
        self.invalidate()
        os.close(self.fd)

    def invalidate(self) -> None:
        for fd in self._cache.values():
            os.close(fd)
        self._cache.clear()

    def parent(self, parts: list[str], entry: str, *, create: bool) -> int | None:
        """An fd (owned by the cache) for the directory holding ``parts[-1]``.

        Missing directories are created (0755, root-owned) when ``create``; otherwise
        None is returned for a missing one.
        """
        key = tuple(parts[:-1])
        fd = self._cache.pop(key, None)
        if fd is None:
            fd = self._walk(list(key), entry, create)
            if fd is None:
                return None
            if len(self._cache) >= 64:
                # Evict the least recently used: a caller may still hold the newer ones.
                os.close(self._cache.pop(next(iter(self._cache))))
        self._cache[key] = fd
        return fd

    def _walk(self, pending: list[str], entry: str, create: bool) -> int | None:
        stack = [os.dup(self.fd)]
        pending.reverse()  # pop from the end
        hops = 0
        try:
            while pending:
                comp = pending.pop()
                if comp in ("", "."):
                    continue
                if comp == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                    continue
                try:
                    stack.append(os.open(comp, _DIR_FLAGS, dir_fd=stack[-1]))
                    continue
                except FileNotFoundError:
                    if not create:
                        return None
                    os.mkdir(comp, 0o755, dir_fd=stack[-1])
                    stack.append(os.open(comp, _DIR_FLAGS, dir_fd=stack[-1]))
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                        raise
                st = os.stat(comp, dir_fd=stack[-1], follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    raise InvalidInputError(
                        f"tar entry {entry!r}: {comp!r} on its path is not a directory"
                    )
                hops += 1
                if hops > self._hops:
                    raise InvalidInputError(
                        f"tar entry {entry!r}: too many levels of symbolic links"
                    )
                target = os.readlink(comp, dir_fd=stack[-1])
                if target.startswith("/"):
                    for fd in stack[1:]:
                        os.close(fd)
                    del stack[1:]
                pending.extend(reversed(target.split("/")))
            result = stack.pop()
            return result
        finally:
            for fd in stack:
                os.close(fd)
