"""Selecting COPY/ADD sources from a build context, without reading file contents."""

from __future__ import annotations

import os
import posixpath
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from lamina.errors import InvalidInputError
from lamina.layers import resolve_in_root

from ._ignore import IgnoreRules, _compile

_WILDCARD = re.compile(r"[*?\[]")
Kind = Literal["file", "dir", "symlink", "other"]


@dataclass(frozen=True)
class ContextFile:
    """One entry a COPY source selected.

    ``path`` is relative to the context root (``/``-separated, as read from
    disk), ``dest`` relative to the destination: a file source lands as its
    base name, a directory source's *contents* land under the destination (the
    directory itself is not an entry). ``mode`` is the full ``st_mode``;
    ``link_target`` is set for symlinks, which are copied as symlinks.
    ``source`` is the source as written that selected this entry.
    """

    path: str
    dest: str
    kind: Kind
    mode: int
    size: int
    mtime_ns: int
    inode: int
    uid: int
    gid: int
    link_target: str | None
    source: str


def _kind(mode: int) -> Kind:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def _entry(abs_path: str, rel: str, dest: str, st: os.stat_result, source: str) -> ContextFile:
    link = os.readlink(abs_path) if stat.S_ISLNK(st.st_mode) else None
    return ContextFile(rel, dest, _kind(st.st_mode), st.st_mode, st.st_size, st.st_mtime_ns,
                       st.st_ino, st.st_uid, st.st_gid, link, source)  # fmt: skip


class _Selector:
    def __init__(self, root: str, ignore: IgnoreRules, excludes: IgnoreRules) -> None:
        self.root = root
        self.ignore = ignore
        self.excludes = excludes

    def inside(self, rel: str, source: str) -> tuple[str, str]:
        """The real absolute and root-relative path of ``rel``, symlinks resolved in the root.

        The root is ``/`` for every path in it, as BuildKit has it: an absolute symlink
        leads to the root's own file (an image's, for ``COPY --from``), never the host's,
        and ``..`` stops at the root.
        """
        resolved = resolve_in_root(self.root, rel)
        real_rel = "/".join(resolved.existing + resolved.missing)
        if not real_rel:
            return self.root, "."
        return os.path.join(self.root, real_rel), real_rel

    def expand_wildcards(self, rel: str, source: str) -> list[str]:
        matches = [""]
        for segment in rel.split("/"):
            if not _WILDCARD.search(segment):
                matches = [posixpath.join(m, segment) for m in matches]
                continue
            try:
                regex = _compile(segment)
            except (ValueError, re.error) as exc:
                raise InvalidInputError(f"COPY source {source!r}: bad pattern: {exc}") from None
            found: list[str] = []
            for m in matches:
                real, _ = self.inside(m or ".", source)
                try:
                    names = sorted(e.name for e in os.scandir(real))
                except (NotADirectoryError, FileNotFoundError):
                    continue
                found.extend(posixpath.join(m, n) for n in names if regex.match(n))
            matches = found
        return [m for m in matches if os.path.lexists(os.path.join(self.root, m))]

    def select(self, source: str, rel: str, out: list[ContextFile], wildcard: bool) -> None:
        real, real_rel = self.inside(rel, source)
        try:
            st = os.stat(real, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            raise InvalidInputError(
                f"COPY source {source!r} not found in the build context"
            ) from None
        ignored = real_rel != "." and self.ignore.ignored(real_rel)
        if not stat.S_ISDIR(st.st_mode):
            if ignored:
                if wildcard:
                    return
                raise InvalidInputError(
                    f"COPY source {source!r} is excluded by {self.ignore.source}"
                )
            name = posixpath.basename(rel) or posixpath.basename(real_rel)
            if not self.excludes.ignored(name):
                out.append(_entry(real, real_rel, name, st, source))
            return
        if ignored and not self.ignore.has_exceptions:
            if wildcard:
                return
            raise InvalidInputError(f"COPY source {source!r} is excluded by {self.ignore.source}")
        base = "" if real_rel == "." else real_rel
        self.walk(real, base, source, out)

    def walk(self, top: str, base: str, source: str, out: list[ContextFile]) -> None:
        ignore, excludes = self.ignore, self.excludes
        start_bits = ignore.inherit(base) if base else tuple(False for _ in ignore.patterns)
        stack: list[tuple[str, str, str, tuple[bool, ...], tuple[bool, ...]]] = [
            (top, base, "", start_bits, tuple(False for _ in excludes.patterns))
        ]
        while stack:
            abs_dir, rel_dir, dest_dir, ibits, xbits = stack.pop()
            with os.scandir(abs_dir) as it:
                entries = sorted(it, key=lambda e: e.name)
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                dest = f"{dest_dir}/{entry.name}" if dest_dir else entry.name
                is_dir = entry.is_dir(follow_symlinks=False)
                skip = bool(ignore.patterns) and ignore.ignored(rel, ibits)
                if not skip and excludes.patterns:
                    skip = excludes.ignored(dest, xbits)
                if skip and not (is_dir and (ignore.has_exceptions or excludes.has_exceptions)):
                    continue
                if not skip:
                    st = entry.stat(follow_symlinks=False)
                    out.append(_entry(entry.path, rel, dest, st, source))
                if is_dir:
                    stack.append((
                        entry.path, rel, dest,
                        ignore.inherit(rel, ibits) if ignore.patterns else ibits,
                        excludes.inherit(dest, xbits) if excludes.patterns else xbits,
                    ))  # fmt: skip


def select_sources(
    context_dir: str | os.PathLike[str],
    sources: Sequence[str],
    ignore: IgnoreRules | None = None,
    excludes: Sequence[str] = (),
) -> list[ContextFile]:
    """The exact entries that ``COPY <sources> <dest>`` takes from the context.

    ``sources`` are expanded source words (wildcards allowed, a leading ``/``
    means the context root); ``ignore`` the ``.dockerignore`` rules; ``excludes``
    the ``--exclude`` patterns, matched against the path under the destination.
    Stats entries (``os.scandir``, no symlink followed, no content read).
    Raises InvalidInputError for a source outside the context (``../x`` or
    through a symlink that leads out), a missing source, a wildcard matching
    nothing, or an explicit source excluded by ``.dockerignore``.
    """
    root = os.path.realpath(os.fspath(context_dir))
    if not os.path.isdir(root):
        raise InvalidInputError(f"build context {os.fspath(context_dir)!r} is not a directory")
    selector = _Selector(root, ignore or IgnoreRules(), IgnoreRules(excludes, "--exclude"))
    out: list[ContextFile] = []
    for source in sources:
        rel = posixpath.normpath("/" + source.replace(os.sep, "/")).lstrip("/") or "."
        if source.replace("\\", "/").split("/")[0] == ".." or ".." in posixpath.normpath(
            source
        ).split("/"):
            raise InvalidInputError(f"COPY source {source!r} is outside the build context")
        if _WILDCARD.search(rel):
            matches = selector.expand_wildcards(rel, source)
            if not matches:
                raise InvalidInputError(
                    f"COPY source {source!r} matches no file in the build context"
                )
            for match in matches:
                selector.select(source, match, out, wildcard=True)
        else:
            selector.select(source, rel, out, wildcard=False)
    return out
