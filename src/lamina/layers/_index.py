"""An entry collector: a layer's file index gathered while the layer is written or read.

The writer and the readers call it once per entry they already handle; it never reads
a layer on its own. Regular files' content is hashed from the bytes passing through:
the writer hands over its per-file sha256, a reader lets `tar_entry` consume the
entry's content (hashing it) where it would otherwise have been skipped.
"""

from __future__ import annotations

import hashlib

from lamina.layers import _whiteout
from lamina.layers._scoped import split_entry_path
from lamina.layers._tarread import EntryReader, EntryType, TarEntry
from lamina.store import IndexEntry

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


class EntryCollector:
    """Collects one `IndexEntry` per layer entry, in layer order (`entries`)."""

    def __init__(self) -> None:
        self.entries: list[IndexEntry] = []
        self._files: dict[str, tuple[int, str | None]] = {}

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
    ) -> None:
        """One entry; `path` as in the layer (leading `/`, `./` and trailing `/` dropped)."""
        clean = "/".join(split_entry_path(path))
        if kind == "file":
            self._files[clean] = (size, digest)
        elif kind == "hardlink":
            link = "/".join(split_entry_path(link))
            size, digest = self._files.get(link, (0, None))
        self.entries.append(
            IndexEntry(_text(clean), kind, size, mode, uid, gid, digest, _text(link))
        )

    def marker(self, path: str) -> None:
        """A tar entry whose base name may be a whiteout or opaque marker (``.wh.``)."""
        parts = split_entry_path(path)
        marker, victim = _whiteout.classify(parts[-1]) if parts else (_whiteout.Marker.NONE, "")
        if marker is _whiteout.Marker.WHITEOUT:
            self.add("/".join([*parts[:-1], victim]), "whiteout")
        elif marker is _whiteout.Marker.OPAQUE:
            self.add("/".join(parts[:-1]), "opaque")

    def tar_entry(self, entry: TarEntry, content: EntryReader) -> None:
        """An entry a reader is passing by; a regular file's content is read here and hashed."""
        parts = split_entry_path(entry.name)
        if not parts:
            return  # the layer root's own entry: it changes nothing a user can see
        if parts[-1].startswith(_whiteout.WHITEOUT_PREFIX):
            self.marker(entry.name)
            return
        digest = None
        if entry.type is EntryType.FILE:
            h = hashlib.sha256()
            while data := content.read(_CHUNK):
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
