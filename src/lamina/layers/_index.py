"""An entry collector: a layer's file index gathered while the layer is written or read.

The writer and the readers call it once per entry they already handle; it never reads
a layer on its own. Regular files' content is hashed from the bytes passing through:
the writer hands over its per-file sha256, a reader that skips content lets `tar_entry`
consume it (hashing it), and a reader that consumes it (the applier) reads through
`watch(entry, content)` and calls `done()` after.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from lamina.layers import _whiteout
from lamina.layers._scoped import split_entry_path
from lamina.layers._tarread import EntryReader, EntryType, TarEntry
from lamina.store import IndexEntry, LayerColumns

_CHUNK = 1 << 20


def _text(name: str) -> str:
    """A name SQLite can store: undecodable bytes (surrogate escapes) shown as \\xNN."""
    if name.isascii():
        return name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return name


def _clean(path: str) -> str:
    """`path` as in the layer, leading `/`, `./` and trailing `/` dropped."""
    if path.startswith(("/", ".")) or path.endswith("/") or "//" in path or "/." in path:
        return "/".join(split_entry_path(path))
    return path  # already clean, as every path a writer's changeset holds


def _clean_all(paths: Sequence[str]) -> Sequence[str]:
    """`[_text(_clean(p)) for p in paths]`, checked on all of them at once: a writer's
    paths are clean ASCII (the usual case) when their NUL-joined text is ASCII and holds
    no `//`, `/.`, and no name that starts with `/` or `.` or ends with `/` (no tar or
    file name holds a NUL). Then `paths` itself is the answer; else each is cleaned."""
    joined = "\0".join(paths)
    if (
        joined.isascii()
        and not joined.startswith(("/", "."))
        and not joined.endswith("/")
        and not any(bad in joined for bad in ("//", "/.", "\0/", "\0.", "/\0"))
    ):
        return paths
    return [_text(_clean(p)) for p in paths]


class _HashingReader:
    """An entry's content reader that hashes every byte read through it."""

    def __init__(self, content: EntryReader) -> None:
        self._content = content
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._content.read(n)
        self.hash.update(data)
        return data

    def read1(self, n: int = 1 << 20) -> bytes:
        data = self._content.read1(n)
        self.hash.update(data)
        return data


# A row as the layer writer gathers it: an IndexEntry whose digest is the number the
# writer gave the file's content (-1: none) until `resolve` has the digests.
WriterRow = tuple[str, str, int, int, int, int, int, str]


class EntryCollector:
    """Collects one `IndexEntry` per layer entry, in layer order (`entries`)."""

    @staticmethod
    def clean_path(path: str) -> str:
        """A path as the index holds it (see `add`)."""
        return _text(_clean(path))

    text = staticmethod(_text)

    def __init__(self) -> None:
        self._entries: list[IndexEntry] = []
        self._rows: list[WriterRow] = []
        self._prepared: tuple[Any, ...] | None = None
        self._columns: LayerColumns | None = None
        self._files: dict[str, tuple[int, str | None, Any]] = {}
        self._pending: list[tuple[int, Any]] = []  # (entry number, hasher not yet done)
        self._watched: tuple[TarEntry, _HashingReader]

    @property
    def entries(self) -> list[IndexEntry]:
        """One `IndexEntry` per entry, in layer order."""
        if self._columns is not None:
            self._entries[:0] = self._columns
            self._columns = None
        return self._entries

    def add(
        self,
        path: str,
        kind: str,
        *,
        size: int = 0,
        mode: int = 0,
        uid: int = 0,
        gid: int = 0,
        digest: str | None = None,
        link: str = "",
        hasher: Any = None,
    ) -> None:
        """One entry; `path` as in the layer (leading `/`, `./` and trailing `/` dropped).

        `hasher`: a hashlib object still being fed the file's content (by another
        thread); its digest is taken when `resolve()` is called, once it has seen all."""
        clean = _clean(path)
        if kind == "file":
            self._files[clean] = (size, digest, hasher)
        elif kind == "hardlink":
            link = "/".join(split_entry_path(link))
            size, digest, hasher = self._files.get(link, (0, None, None))
        if hasher is not None:
            self._pending.append((len(self.entries), hasher))
        self.entries.append(
            IndexEntry(_text(clean), kind, size, mode, uid, gid, digest, _text(link))
        )

    def writer_rows(self) -> list[WriterRow]:
        """The layer writer's fast path (`write_layer`): it appends one `WriterRow` per
        entry, its path as the change has it (`prepare` cleans them all at once, as
        `clean_path` would), a link target as `clean_path` or `text` makes it, calls
        `prepare()` while its hashes finish, then `resolve(digests)`: a plain tuple per
        entry, no keyword call, hasher object or `_replace` per file."""
        return self._rows

    def prepare(self) -> None:
        """Turn the writer's rows into columns, all but the digests (which `resolve`
        fills in): work the writer does while it waits for its hashes."""
        if self._rows:
            # Column by column, in C (zip): no Python call per entry.
            paths, kinds, sizes, modes, uids, gids, numbers, links = zip(*self._rows, strict=True)
            self._prepared = (list(_clean_all(paths)), list(kinds), list(sizes), list(modes),
                              list(uids), list(gids), numbers, list(links))  # fmt: skip
            self._rows = []

    def resolve(self, digests: Sequence[str] = ()) -> None:
        """Fill in the digests of entries added with a `hasher` (all bytes seen by now)
        and of the writer's rows (`digests[n]`: the content digest of its file n)."""
        self.prepare()
        if self._prepared is not None:
            paths, kinds, sizes, modes, uids, gids, numbers, links = self._prepared
            self._prepared = None
            # A file number of -1 (no content digest) picks the None appended.
            files = [*digests, None]
            written = LayerColumns(paths, kinds, sizes, modes, uids, gids,
                                   list(map(files.__getitem__, numbers)), links)  # fmt: skip
            if self._entries or self._columns is not None:  # after other entries
                self.entries.extend(written)
            else:
                self._columns = written
        done: dict[int, str] = {}
        for n, hasher in self._pending:
            digest = done.setdefault(id(hasher), hasher.hexdigest())
            self.entries[n] = self.entries[n]._replace(digest=digest)
        self._pending.clear()

    def columns(self) -> Sequence[IndexEntry]:
        """The entries, for `FileIndex.put`: as `LayerColumns` when the layer writer
        gathered them (no `IndexEntry` made per entry), else `entries`."""
        return self._columns if self._columns is not None else self.entries

    def marker(self, path: str) -> None:
        """A tar entry whose base name may be a whiteout or opaque marker (``.wh.``)."""
        parts = split_entry_path(path)
        marker, victim = _whiteout.classify(parts[-1]) if parts else (_whiteout.Marker.NONE, "")
        if marker is _whiteout.Marker.WHITEOUT:
            self.add("/".join([*parts[:-1], victim]), "whiteout")
        elif marker is _whiteout.Marker.OPAQUE:
            self.add("/".join(parts[:-1]), "opaque")

    def watch(self, entry: TarEntry, content: EntryReader) -> _HashingReader:
        """A reader of `entry`'s content for a consumer that reads it anyway (the applier):
        it hashes what passes; `done()` then records the entry."""
        self._watched = (entry, _HashingReader(content))
        return self._watched[1]

    def done(self) -> None:
        """Record the entry last watched, hashing whatever its consumer left unread."""
        entry, reader = self._watched
        self.tar_entry(entry, reader)

    def tar_entry(self, entry: TarEntry, content: EntryReader | _HashingReader) -> None:
        """An entry a reader is passing by; a regular file's content is read here and hashed."""
        parts = split_entry_path(entry.name)
        if not parts:
            return  # the layer root's own entry: it changes nothing a user can see
        if parts[-1].startswith(_whiteout.WHITEOUT_PREFIX):
            self.marker(entry.name)
            return
        digest = None
        if entry.type is EntryType.FILE:
            h = content.hash if isinstance(content, _HashingReader) else hashlib.sha256()
            while data := content.read(_CHUNK):
                if not isinstance(content, _HashingReader):
                    h.update(data)
            digest = h.hexdigest()
        self.add(
            entry.name,
            entry.type.value,
            size=entry.size,
            mode=entry.mode,
            uid=entry.uid,
            gid=entry.gid,
            digest=digest,
            link=entry.linkname if entry.type in (EntryType.SYMLINK, EntryType.HARDLINK) else "",
        )
