"""Paths inside a root directory, resolved as if the root were ``/``: lamina's one resolver.

Every component is opened relative to its parent's file descriptor with ``O_NOFOLLOW``;
a symlink met on the way is read and its target resolved again from the scoped root
(absolute targets restart there, ``..`` stops there), as umoci's SecureJoin and
``openat2(RESOLVE_IN_ROOT)`` do. No decision rests on a path string alone, so an
entry written "through" a symlink an earlier entry planted still lands inside, and an
absolute symlink inside an image leads to that image's own file, never the host's.

Used by the layer applier (``ScopedRoot``), the snapshots (``resolve_in_root``,
``read_file_in_root``), the build context and ``COPY --from`` / ``RUN --mount=from``.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat

from lamina.errors import InvalidInputError, NotFoundError

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    from typing import Literal, NamedTuple

    from lamina._paths import StrPath
else:
    from lamina._frozen import NamedTuple

MAX_SYMLINK_HOPS = 40  # the kernel's own MAXSYMLINKS

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def split_entry_path(name: str) -> list[str]:
    """A tar name as components: leading ``/`` and ``.`` dropped, ``..`` refused."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidInputError(f"tar entry {name!r}: '..' in a layer path is not allowed")
    return parts


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


class _Walk(NamedTuple):
    """Where a walk stopped: ``fd`` (the caller closes it) is the directory ``names``."""

    fd: int
    names: list[str]
    # None: every component resolved to a directory. "leaf": the last one is an existing
    # non-directory (``rest`` is its name). "missing" / "notdir": ``rest`` could not be
    # entered, from its first component on.
    stopped: Literal["leaf", "missing", "notdir"] | None
    rest: list[str]


def _walk(
    root_fd: int, path: list[str], what: str, *, create: bool = False,
    max_hops: int = MAX_SYMLINK_HOPS,
) -> _Walk:  # fmt: skip
    """Resolve ``path`` below ``root_fd``; missing directories are made (0755) if ``create``."""
    stack = [os.dup(root_fd)]
    names: list[str] = []
    pending = list(reversed(path))  # pop from the end
    hops = 0
    try:
        while pending:
            comp = pending.pop()
            if comp in ("", "."):
                continue
            if comp == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                    names.pop()
                continue
            try:
                stack.append(os.open(comp, _DIR_FLAGS, dir_fd=stack[-1]))
                names.append(comp)
                continue
            except FileNotFoundError:
                if not create:
                    return _Walk(stack.pop(), names, "missing", [comp, *reversed(pending)])
                os.mkdir(comp, 0o755, dir_fd=stack[-1])
                stack.append(os.open(comp, _DIR_FLAGS, dir_fd=stack[-1]))
                names.append(comp)
                continue
            except OSError as exc:
                if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
            st = os.stat(comp, dir_fd=stack[-1], follow_symlinks=False)
            if not stat.S_ISLNK(st.st_mode):
                rest = [comp, *reversed(pending)]
                if not pending:
                    return _Walk(stack.pop(), names, "leaf", rest)
                return _Walk(stack.pop(), names, "notdir", rest)
            hops += 1
            if hops > max_hops:
                raise InvalidInputError(f"{what}: too many levels of symbolic links")
            target = os.readlink(comp, dir_fd=stack[-1])
            if target.startswith("/"):
                for fd in stack[1:]:
                    os.close(fd)
                del stack[1:]
                names.clear()
            pending.extend(reversed(target.split("/")))
        return _Walk(stack.pop(), names, None, [])
    finally:
        for fd in stack:
            os.close(fd)


class ScopedRoot:
    """A directory opened once; resolves parents of entries inside it.

    Resolved parent directories are cached (consecutive tar entries share them);
    :meth:`invalidate` must be called whenever a directory or symlink is removed.
    """

    def __init__(self, path: str, max_symlink_hops: int = MAX_SYMLINK_HOPS) -> None:
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
            walk = _walk(
                self.fd, list(key), f"tar entry {entry!r}", create=create, max_hops=self._hops
            )
            if walk.stopped is not None:
                os.close(walk.fd)
                if walk.stopped == "missing":
                    return None
                raise InvalidInputError(
                    f"tar entry {entry!r}: {walk.rest[0]!r} on its path is not a directory"
                )
            fd = walk.fd
            if len(self._cache) >= 64:
                # Evict the least recently used: a caller may still hold the newer ones.
                os.close(self._cache.pop(next(iter(self._cache))))
        self._cache[key] = fd
        return fd


class Resolved(NamedTuple):
    """Where a path leads inside a root: the existing part (symlinks resolved) and the rest."""

    existing: tuple[str, ...]
    missing: tuple[str, ...]

    def path(self) -> str:
        """The resolved path, `/`-rooted, missing components included."""
        return "/" + "/".join(self.existing + self.missing)

    def host_path(self, root: str | os.PathLike[str]) -> str:
        """The resolved path under ``root`` on the host (inside ``root`` by construction)."""
        return os.path.join(os.fspath(root), *self.existing, *self.missing)


def resolve_in_root(root: str | os.PathLike[str], path: str) -> Resolved:
    """Resolve `path` inside `root` without leaving it. A missing component ends the walk: the
    rest is kept lexically (as runc does when it creates a mount point)."""
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        walk = _walk(root_fd, _parts(path), f"{path!r} in {os.fspath(root)}")
    finally:
        os.close(root_fd)
    os.close(walk.fd)
    if walk.stopped is None:
        return Resolved(tuple(walk.names), ())
    if walk.stopped == "leaf":
        return Resolved((*walk.names, walk.rest[0]), ())
    if walk.stopped == "missing":
        rest = _parts(posixpath.normpath("/" + "/".join(walk.rest)))
        return Resolved(tuple(walk.names), tuple(rest))
    # A file where a directory should be: nothing below it can exist.
    return Resolved(tuple(walk.names), tuple(walk.rest))


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


def read_file_in_root(root: StrPath, path: str, limit: int) -> bytes | None:
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
    # Checked before fdopen, which refuses a directory with IsADirectoryError.
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InvalidInputError(f"{path} in {root} is not a regular file")
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise InvalidInputError(f"{path} in {root} is larger than {limit} bytes")
    return data


def require_file_in_root(root: StrPath, path: str, limit: int) -> bytes:
    """Like read_file_in_root, but a missing file is a NotFoundError."""
    data = read_file_in_root(root, path, limit)
    if data is None:
        raise NotFoundError(f"{path} not found in {root}")
    return data
