"""Selecting COPY/ADD sources from a build context, without reading file contents."""

from __future__ import annotations

import os
import posixpath
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
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
    ``source`` is the source as written that selected this entry. ``top`` is True
    for an entry that a source (or a wildcard match) named itself, False for one
    found inside a named directory. ``ctime_ns`` (with ``dev``) completes the stat
    identity: an in-place edit that keeps size and mtime still moves the ctime.
    ``st`` is the stat all of these came from (a COPY describes the entry with it
    instead of asking again).
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
    top: bool = False
    ctime_ns: int = 0
    dev: int = 0
    st: os.stat_result | None = field(default=None, compare=False, repr=False)


def _kind(mode: int) -> Kind:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def _entry(
    abs_path: str, rel: str, dest: str, st: os.stat_result, source: str, top: bool = False
) -> ContextFile:
    link = os.readlink(abs_path) if stat.S_ISLNK(st.st_mode) else None
    return ContextFile(rel, dest, _kind(st.st_mode), st.st_mode, st.st_size, st.st_mtime_ns,
                       st.st_ino, st.st_uid, st.st_gid, link, source, top, st.st_ctime_ns,
                       st.st_dev, st)  # fmt: skip


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

    def select(
        self,
        source: str,
        rel: str,
        out: list[ContextFile],
        wildcard: bool,
        matched: list[tuple[str, bool]] | None = None,
    ) -> None:
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
                out.append(_entry(real, real_rel, name, st, source, top=True))
                if matched is not None:
                    matched.append((rel, False))
            return
        if ignored and not self.ignore.has_exceptions:
            if wildcard:
                return
            raise InvalidInputError(f"COPY source {source!r} is excluded by {self.ignore.source}")
        if matched is not None:
            matched.append((rel, True))
        base = "" if real_rel == "." else real_rel
        self.walk(real, base, source, out)

    def walk(self, top: str, base: str, source: str, out: list[ContextFile]) -> None:
        ignore, excludes = self.ignore, self.excludes
        start_bits = ignore.inherit(base) if base else tuple(False for _ in ignore.patterns)
        # A directory that is left out but may hold an exception (`keep/` then
        # `!keep/k`) is held back: it becomes an entry only when something under
        # it does, so the re-included file has its parents (BuildKit's fsutil).
        held: dict[str, ContextFile] = {}
        stack: list[tuple[str, str, str, tuple[bool, ...], tuple[bool, ...], tuple[str, ...]]] = [
            (top, base, "", start_bits, tuple(False for _ in excludes.patterns), ())
        ]
        while stack:
            abs_dir, rel_dir, dest_dir, ibits, xbits, waiting = stack.pop()
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
                st = entry.stat(follow_symlinks=False)
                if skip:
                    held[rel] = _entry(entry.path, rel, dest, st, source)
                else:
                    out.extend(held.pop(r) for r in waiting if r in held)
                    waiting = ()
                    out.append(_entry(entry.path, rel, dest, st, source))
                if is_dir:
                    stack.append((
                        entry.path, rel, dest,
                        ignore.inherit(rel, ibits) if ignore.patterns else ibits,
                        excludes.inherit(dest, xbits) if excludes.patterns else xbits,
                        (*waiting, rel) if skip else (),
                    ))  # fmt: skip


def select_sources(
    context_dir: str | os.PathLike[str],
    sources: Sequence[str],
    ignore: IgnoreRules | None = None,
    excludes: Sequence[str] = (),
    matched: list[tuple[str, bool]] | None = None,
) -> list[ContextFile]:
    """The exact entries that ``COPY <sources> <dest>`` takes from the context.

    ``sources`` are expanded source words (wildcards allowed, a leading ``/``
    means the context root); ``ignore`` the ``.dockerignore`` rules; ``excludes``
    the ``--exclude`` patterns, matched against the path under the destination.
    Stats entries (``os.scandir``, no symlink followed, no content read).
    ``matched``, when given, receives each path a source named or a wildcard
    matched, and whether it is a directory (whose contents are the entries).
    Raises InvalidInputError for a source outside the context (``../x`` or
    through a symlink that leads out), a missing source, or an explicit source
    excluded by ``.dockerignore``. A wildcard that matches nothing selects
    nothing, as BuildKit allows (its ``testEmptyWildcard``).
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
            for match in selector.expand_wildcards(rel, source):
                selector.select(source, match, out, wildcard=True, matched=matched)
        else:
            selector.select(source, rel, out, wildcard=False, matched=matched)
    return out


def select_parents(
    context_dir: str | os.PathLike[str],
    sources: Sequence[str],
    ignore: IgnoreRules | None = None,
    excludes: Sequence[str] = (),
) -> list[ContextFile]:
    """``COPY --parents``: the entries each source selects, ``dest`` keeping their path.

    A source ``a/./b/c`` pivots at ``/./``: ``b/c`` (and what is under it) lands as
    ``b/c`` under the destination; without a pivot the whole path is kept. Wildcards
    (``**`` included) may stand on either side. The directories on a kept path are
    entries too, with their own metadata. A source without wildcards must exist; a
    wildcard may match nothing (BuildKit's testCopyParents* cases).
    """
    root = os.path.realpath(os.fspath(context_dir))
    selector = _Selector(root, ignore or IgnoreRules(), IgnoreRules(excludes, "--exclude"))
    found: dict[str, ContextFile] = {}
    for source in sources:
        text = source.replace(os.sep, "/")
        parent, sep, pattern = text.partition("/./")
        if not sep:
            parent, pattern = "/", text
        if ".." in posixpath.normpath(text).split("/"):
            raise InvalidInputError(f"COPY source {source!r} is outside the build context")
        parent_rel = posixpath.normpath("/" + parent).lstrip("/") or "."
        pattern = posixpath.normpath("/" + pattern).lstrip("/")
        segments = [s for s in pattern.split("/") if s]
        cut = next((i for i, s in enumerate(segments) if _WILDCARD.search(s)), len(segments))
        literal, rest = "/".join(segments[:cut]), "/".join(segments[cut:])
        required = not _WILDCARD.search(parent_rel) and not rest
        parents = (selector.expand_wildcards(parent_rel, source)
                   if _WILDCARD.search(parent_rel) else [parent_rel])  # fmt: skip
        before = len(found)
        for base in parents:
            _select_parent(selector, source, base, literal, rest, found)
        if required and len(found) == before:
            raise InvalidInputError(f"COPY source {source!r} not found in the build context")
    return [found[k] for k in sorted(found)]


def _select_parent(
    selector: _Selector,
    source: str,
    base: str,
    literal: str,
    rest: str,
    found: dict[str, ContextFile],
) -> None:
    start = posixpath.normpath(posixpath.join(base, literal)) if literal else base
    if not os.path.lexists(os.path.join(selector.root, start)):
        return
    real, real_rel = selector.inside(start, source)
    if real_rel != "." and selector.ignore.ignored(real_rel) and not selector.ignore.has_exceptions:
        return
    st = os.stat(real)
    walked: list[ContextFile] = []
    if stat.S_ISDIR(st.st_mode):
        selector.walk(real, "" if real_rel == "." else real_rel, source, walked)
    chosen: list[ContextFile] = []
    if rest:
        match = IgnoreRules([rest], "--parents")
        by_dest = {f.dest: f for f in walked}
        for f in walked:
            if match.ignored(f.dest):
                chosen.append(f)
                parent = posixpath.dirname(f.dest)
                while parent and parent in by_dest:
                    chosen.append(by_dest[parent])
                    parent = posixpath.dirname(parent)
        if not chosen:
            return
    else:
        chosen = walked
        if literal:
            chosen.append(_entry(real, real_rel, "", st, source, top=False))
    prefix = literal
    for f in chosen:
        dest = posixpath.join(prefix, f.dest) if f.dest else prefix
        if dest:
            found.setdefault(dest, _with_dest(f, dest))
    # The directories on the kept path down to the start, with their own metadata.
    parts = literal.split("/") if literal else []
    for i in range(1, len(parts) + 1):
        rel = posixpath.normpath(posixpath.join(base, *parts[:i]))
        dreal, drel = selector.inside(rel, source)
        dest = "/".join(parts[:i])
        if dest not in found:
            found[dest] = _entry(dreal, drel, dest, os.stat(dreal), source)


def _with_dest(f: ContextFile, dest: str) -> ContextFile:
    from dataclasses import replace

    return replace(f, dest=dest)
