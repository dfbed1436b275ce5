"""Changesets: what a layer adds, changes and deletes, computed from directories.

A :class:`Change` names a path inside the layer (relative, ``/``-separated) and, for an
addition, the host file that holds its content and metadata. Three sources exist: a
plain tree (everything is added), an overlayfs upper dir (its whiteouts and opaque
dirs become deletions and opaque markers) and the difference between two trees.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

from lamina.layers import _whiteout
from lamina.layers._tarread import MAX_DEPTH, too_deep


class ChangeKind(Enum):
    """What a change does to the layers below."""

    ADD = "add"  # added or replaced: the source's type, metadata and content
    DELETE = "delete"  # a whiteout
    OPAQUE = "opaque"  # the directory at ``path`` hides everything below it


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of a changeset; ``source`` is the host path of an ADD."""

    path: str
    kind: ChangeKind
    source: str = ""
    st: os.stat_result | None = None


def _sort_key(change: Change) -> tuple[bytes, ...]:
    parts = tuple(p.encode("utf-8", "surrogateescape") for p in change.path.split("/"))
    # An opaque marker comes right after its directory, before the directory's children.
    return (*parts, b"") if change.kind is ChangeKind.OPAQUE else parts


def sort_changes(changes: list[Change]) -> list[Change]:
    """Sort into layer order: by path components, parents before children."""
    return sorted(changes, key=_sort_key)


def read_xattrs(path: str) -> dict[str, bytes]:
    """A file's xattrs (not following symlinks), without overlayfs' private ones."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    result: dict[str, bytes] = {}
    for name in names:
        if _whiteout.is_overlay_xattr(name):
            continue
        try:
            result[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return result


def _listdir(path: str) -> list[os.DirEntry[str]]:
    with os.scandir(path) as it:
        return sorted(it, key=lambda e: e.name.encode("utf-8", "surrogateescape"))


def _walk(
    root: str, prefix: str, depth: int = 1
) -> Iterator[tuple[str, os.DirEntry[str], os.stat_result]]:
    for entry in _listdir(root):
        st = entry.stat(follow_symlinks=False)
        rel = prefix + entry.name
        yield rel, entry, st
        if stat.S_ISDIR(st.st_mode):
            if depth >= MAX_DEPTH:  # a layer no reader would take (see Limits.max_depth)
                raise too_deep(rel)
            yield from _walk(entry.path, rel + "/", depth + 1)


def changes_from_dir(root: str | os.PathLike[str]) -> list[Change]:
    """Every entry under ``root`` as an addition (a rootfs, a COPY result). Sockets are
    skipped: they cannot live in a tar."""
    return [
        Change(rel, ChangeKind.ADD, entry.path, st)
        for rel, entry, st in _walk(os.fspath(root), "")
        if not stat.S_ISSOCK(st.st_mode)
    ]


def changes_from_overlay_upper(upper: str | os.PathLike[str]) -> list[Change]:
    """An overlayfs upper dir as a changeset: 0:0 character devices become whiteouts,
    opaque directories become an addition plus an opaque marker."""
    changes: list[Change] = []
    for rel, entry, st in _walk(os.fspath(upper), ""):
        if stat.S_ISSOCK(st.st_mode):
            continue
        if _whiteout.is_overlay_whiteout(st):
            changes.append(Change(rel, ChangeKind.DELETE))
            continue
        changes.append(Change(rel, ChangeKind.ADD, entry.path, st))
        if stat.S_ISDIR(st.st_mode) and _opaque(entry.path):
            changes.append(Change(rel, ChangeKind.OPAQUE))
    # Already in layer order: `_walk` goes depth first, parents before children, names
    # sorted as `_sort_key` sorts them, an opaque marker right after its directory.
    return changes


def _opaque(path: str) -> bool:
    values: dict[str, bytes] = {}
    for name in _whiteout.OVERLAY_OPAQUE_XATTRS:
        try:
            values[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return _whiteout.is_overlay_opaque(values)


def _same_content(a: str, b: str) -> bool:
    with open(a, "rb", buffering=0) as fa, open(b, "rb", buffering=0) as fb:
        while True:
            da, db = fa.read(1 << 20), fb.read(1 << 20)
            if da != db:
                return False
            if not da:
                return True


def _same_time(a_ns: int, b_ns: int) -> bool:
    # A tree unpacked from a tar has whole-second mtimes: equal seconds with no
    # sub-second part on one side is the same time (Docker's sameFsTime does the same).
    if a_ns == b_ns:
        return True
    a_sec, a_frac = divmod(a_ns, 1_000_000_000)
    b_sec, b_frac = divmod(b_ns, 1_000_000_000)
    return a_sec == b_sec and (a_frac == 0 or b_frac == 0)


def _same(a: os.DirEntry[str], sa: os.stat_result, b: os.DirEntry[str], sb: os.stat_result) -> bool:
    if (sa.st_mode, sa.st_uid, sa.st_gid) != (sb.st_mode, sb.st_uid, sb.st_gid):
        return False
    if not _same_time(sa.st_mtime_ns, sb.st_mtime_ns):
        return False
    fmt = stat.S_IFMT(sb.st_mode)
    if fmt != stat.S_IFDIR and sa.st_size != sb.st_size:
        return False
    if fmt in (stat.S_IFCHR, stat.S_IFBLK) and sa.st_rdev != sb.st_rdev:
        return False
    if fmt == stat.S_IFLNK and os.readlink(a.path) != os.readlink(b.path):
        return False
    if read_xattrs(a.path) != read_xattrs(b.path):
        return False
    if fmt == stat.S_IFREG and (sa.st_dev, sa.st_ino) != (sb.st_dev, sb.st_ino):
        return _same_content(a.path, b.path)
    return True


def diff_trees(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> list[Change]:
    """The changeset that turns tree ``a`` into tree ``b``.

    An entry is changed when its type, mode, owner, size, mtime_ns, symlink target,
    device number, xattrs or content differ; a deleted entry becomes a whiteout (its
    children need none); a directory holding changes is carried too, so that whoever
    applies the layer onto an empty snapshot gets its metadata.
    """
    changes: list[Change] = []
    _diff_dir(os.fspath(a), os.fspath(b), "", changes)
    return sort_changes(changes)


def _diff_dir(a: str, b: str, prefix: str, out: list[Change]) -> bool:
    before = len(out)
    lower = {e.name: e for e in _listdir(a)}
    for entry in _listdir(b):
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISSOCK(st.st_mode):
            continue
        rel = prefix + entry.name
        old = lower.pop(entry.name, None)
        old_st = old.stat(follow_symlinks=False) if old is not None else None
        is_dir = stat.S_ISDIR(st.st_mode)
        if old is None or old_st is None or (stat.S_ISDIR(old_st.st_mode) != is_dir):
            out.append(Change(rel, ChangeKind.ADD, entry.path, st))
            if is_dir:
                out.extend(
                    Change(rel + "/" + r, ChangeKind.ADD, e.path, s)
                    for r, e, s in _walk(entry.path, "")
                    if not stat.S_ISSOCK(s.st_mode)
                )
            continue
        if is_dir:
            mark = len(out)
            children_changed = _diff_dir(old.path, entry.path, rel + "/", out)
            if children_changed or not _same(old, old_st, entry, st):
                out.insert(mark, Change(rel, ChangeKind.ADD, entry.path, st))
        elif not _same(old, old_st, entry, st):
            out.append(Change(rel, ChangeKind.ADD, entry.path, st))
    out.extend(Change(prefix + name, ChangeKind.DELETE) for name in lower)
    return len(out) > before
