"""The per-layer file index: what each layer holds, entry by entry, without reading it.

Lifecycle: a layer is indexed in the same pass that writes or reads its bytes as it
enters the store (build, load, import, commit): a collector (``lamina.layers.EntryCollector``)
gathers one `IndexEntry` per tar entry and `FileIndex.put` records them all with the
layer's `layer_index` row in ONE transaction: a layer is indexed completely or not at
all. Rows are keyed by diff_id; putting an indexed layer again is a no-op. Layers that
entered before the index existed are indexed on first use (`missing` names them).
`lamina.analysis` reads only this.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import compress, count, repeat
from typing import NamedTuple, overload

from lamina.store._db import Database

KINDS = ("file", "dir", "symlink", "hardlink", "char", "block", "fifo", "whiteout", "opaque")
"""An entry's kind. `whiteout`: the entry deletes `path` (and all below it) from the layers
below; `opaque`: the directory `path` hides everything the layers below hold under it."""


class IndexEntry(NamedTuple):
    """One entry of a layer: `path` without a leading `/` (for a whiteout, the deleted path).

    `digest` is the sha256 hex of a regular file's content (a hardlink carries its
    target's, with `size` of the target), else None. `link` is a symlink's target or a
    hardlink's target path.
    """

    path: str
    kind: str
    size: int
    mode: int
    uid: int
    gid: int
    digest: str | None
    link: str


def _ints(text: str) -> list[int]:
    """Comma-separated integers, each distinct one parsed once (a column of modes, owners
    or sizes holds few distinct values)."""
    words = text.split(",")
    values = {word: int(word) for word in set(words)}
    return list(map(values.__getitem__, words))


class _Rows:
    """Where a `LayerColumns` came from: one layer's rows in the metadata db."""

    def __init__(self, db: sqlite3.Connection, layer: int, count: int) -> None:
        self.db, self.layer, self.count = db, layer, count

    def owners(self) -> tuple[list[int], list[int], list[int]]:
        modes, uids, gids = self.db.execute(
            "SELECT group_concat(mode, ','), group_concat(uid, ','), group_concat(gid, ',') "
            "FROM layer_files WHERE layer = ?",
            (self.layer,),
        ).fetchone()
        return _ints(modes), _ints(uids), _ints(gids)


class LayerColumns(Sequence[IndexEntry]):
    """A layer's entries column by column: `paths[i]`, `kinds[i]`, ... describe entry i.

    What analysis reads: 50,000 entries arrive as a few lists (string splits) instead
    of 50,000 row objects. Columns read from the store (`FileIndex.columns`) get their
    `modes`, `uids` and `gids` on first use (most analyses never read them). It is also
    a read-only sequence of `IndexEntry`, made on access, for code that wants whole
    entries.
    """

    __slots__ = ("_owners", "_rows", "digests", "kinds", "links", "paths", "sizes")

    def __init__(
        self, paths: list[str], kinds: list[str], sizes: list[int], modes: list[int],
        uids: list[int], gids: list[int], digests: list[str | None], links: list[str],
        rows: _Rows | None = None,
    ) -> None:  # fmt: skip
        self.paths, self.kinds, self.sizes, self.digests, self.links = (
            paths, kinds, sizes, digests, links
        )  # fmt: skip
        self._owners: tuple[list[int], list[int], list[int]] | None = (
            (modes, uids, gids) if rows is None else None
        )
        self._rows = rows

    def _owner_columns(self) -> tuple[list[int], list[int], list[int]]:
        if self._owners is None:
            assert self._rows is not None
            self._owners = self._rows.owners()
        return self._owners

    @property
    def modes(self) -> list[int]:
        return self._owner_columns()[0]

    @property
    def uids(self) -> list[int]:
        return self._owner_columns()[1]

    @property
    def gids(self) -> list[int]:
        return self._owner_columns()[2]

    @classmethod
    def of(cls, entries: Sequence[IndexEntry]) -> LayerColumns:
        """`entries` as columns (itself when it already is)."""
        if isinstance(entries, LayerColumns):
            return entries
        if not entries:
            return cls([], [], [], [], [], [], [], [])
        paths, kinds, sizes, modes, uids, gids, digests, links = map(
            list, zip(*entries, strict=True)
        )
        return cls(paths, kinds, sizes, modes, uids, gids, digests, links)

    def __len__(self) -> int:
        return len(self.paths)

    @overload
    def __getitem__(self, i: int) -> IndexEntry: ...
    @overload
    def __getitem__(self, i: slice) -> list[IndexEntry]: ...
    def __getitem__(self, i: int | slice) -> IndexEntry | list[IndexEntry]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return IndexEntry(self.paths[i], self.kinds[i], self.sizes[i], self.modes[i],
                          self.uids[i], self.gids[i], self.digests[i], self.links[i])  # fmt: skip

    def __iter__(self) -> Iterator[IndexEntry]:
        return map(IndexEntry, self.paths, self.kinds, self.sizes, self.modes, self.uids,
                   self.gids, self.digests, self.links)  # fmt: skip


@dataclass(frozen=True)
class LayerOrigin:
    """Where lamina built a layer: `Dockerfile:line`, the stage name and the instruction."""

    dockerfile: str
    line: int
    stage: str
    instruction: str

    def where(self) -> str:
        return f"{self.dockerfile}:{self.line}"


_COLUMNS = "path, kind, size, mode, uid, gid, digest, link"


class FileIndex:
    """The index tables of the metadata db (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def put(self, diff_id: str, entries: Sequence[IndexEntry]) -> None:
        """Record the entries of layer `diff_id` (in layer order), unless it is indexed."""
        # Column by column and row by row in C (zip, compress): 50,000 entries cost no
        # Python call each, only SQLite's own insert.
        columns = list(zip(*entries, strict=True)) or [()] * len(IndexEntry._fields)
        kinds, sizes = columns[1], columns[2]
        file_bytes = sum(compress(sizes, map("file".__eq__, kinds)))
        with self._db.write() as db:
            made = db.execute(
                "INSERT INTO layer_index (diff_id, entries, file_bytes, created) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (diff_id) DO NOTHING RETURNING id",
                (diff_id, len(entries), file_bytes, time.time()),
            ).fetchone()
            if made is not None:
                layer = made[0]
                db.executemany(
                    f"INSERT INTO layer_files (layer, seq, {_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    zip(repeat(layer), count(), *columns),
                )

    def has(self, diff_id: str) -> bool:
        row = self._db.conn().execute("SELECT 1 FROM layer_index WHERE diff_id = ?", (diff_id,))
        return row.fetchone() is not None

    def missing(self, diff_ids: Iterable[str]) -> list[str]:
        """Those of `diff_ids` not indexed yet, in the order given, once each."""
        out: list[str] = []
        for diff_id in dict.fromkeys(diff_ids):
            if not self.has(diff_id):
                out.append(diff_id)
        return out

    def entries(self, diff_id: str) -> list[IndexEntry]:
        """The layer's entries in layer order ([] when it is not indexed)."""
        rows = self._db.conn().execute(
            f"SELECT {_COLUMNS} FROM layer_files WHERE layer = "
            "(SELECT id FROM layer_index WHERE diff_id = ?) ORDER BY seq",
            (diff_id,),
        )
        return list(map(IndexEntry._make, rows))

    def columns(self, diff_id: str) -> LayerColumns:
        """The layer's entries as `LayerColumns` (empty when it is not indexed).

        Each column comes back as ONE string (group_concat, in C) that Python splits:
        reading 50,000 rows as row objects costs several times more. The rows are
        aggregated as the primary key's range scan yields them, in (layer, seq) order
        (tests/unit/store pins it). Paths and links are joined by NUL, which no tar name
        holds; if the pieces do not add up to the row count (a NUL after all), the rows
        are read one by one instead. Modes and owners are read when first asked for.
        """
        db = self._db.conn()
        row = db.execute(
            "SELECT count(*), group_concat(path, char(0)), group_concat(kind, ','), "
            "group_concat(size, ','), group_concat(ifnull(digest, ''), ','), "
            "group_concat(link, char(0)), layer FROM layer_files WHERE layer = "
            "(SELECT id FROM layer_index WHERE diff_id = ?)",
            (diff_id,),
        ).fetchone()
        count, layer = row[0], row[6]
        if not count:
            return LayerColumns.of([])
        paths, kinds, digests, links = (
            row[1].split("\0"), row[2].split(","), row[4].split(","), row[5].split("\0")
        )  # fmt: skip
        if not len(paths) == len(links) == len(kinds) == len(digests) == count:
            return LayerColumns.of(self.entries(diff_id))

        nulls = [d or None for d in digests]
        return LayerColumns(paths, kinds, _ints(row[3]), [], [], [], nulls, links,
                            _Rows(db, layer, count))  # fmt: skip

    def indexed(self) -> list[str]:
        """Every indexed diff_id."""
        return [r[0] for r in self._db.conn().execute("SELECT diff_id FROM layer_index")]

    def shared_files(self, min_size: int = 1) -> list[tuple[str, int, int]]:
        """(digest, size, number of layers) for file content stored in more than one layer."""
        rows = self._db.conn().execute(
            "SELECT digest, MAX(size), COUNT(DISTINCT layer) AS n FROM layer_files "
            "WHERE kind = 'file' AND digest IS NOT NULL AND size >= ? "
            "GROUP BY digest HAVING n > 1",
            (min_size,),
        )
        return [(str(d), int(s), int(n)) for d, s, n in rows]

    def forget(self, diff_ids: Iterable[str]) -> None:
        """Drop the index of layers the store no longer holds (prune)."""
        with self._db.write() as db:
            db.executemany("DELETE FROM layer_index WHERE diff_id = ?", [(d,) for d in diff_ids])

    # -- provenance ---------------------------------------------------------------------

    def put_origin(self, diff_id: str, origin: LayerOrigin) -> None:
        """Remember where a build made `diff_id` (the latest build that made it wins)."""
        with self._db.write() as db:
            db.execute(
                "INSERT OR REPLACE INTO layer_origins VALUES (?, ?, ?, ?, ?)",
                (diff_id, origin.dockerfile, origin.line, origin.stage, origin.instruction),
            )

    def origins(self, diff_ids: Iterable[str]) -> dict[str, LayerOrigin]:
        out: dict[str, LayerOrigin] = {}
        db = self._db.conn()
        for diff_id in set(diff_ids):
            row = db.execute(
                "SELECT dockerfile, line, stage, instruction FROM layer_origins WHERE diff_id = ?",
                (diff_id,),
            ).fetchone()
            if row is not None:
                out[diff_id] = LayerOrigin(*row)
        return out

    def put_base(self, image: str, base_layers: int, base: str) -> None:
        """Record that image ID `image` was built FROM `base`, its first `base_layers` layers."""
        with self._db.write() as db:
            db.execute(
                "INSERT OR REPLACE INTO image_bases VALUES (?, ?, ?)", (image, base_layers, base)
            )

    def base(self, image: str) -> tuple[int, str] | None:
        row = (
            self._db.conn()
            .execute("SELECT base_layers, base FROM image_bases WHERE image = ?", (image,))
            .fetchone()
        )
        return None if row is None else (int(row[0]), str(row[1]))
