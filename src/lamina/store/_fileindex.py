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

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

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
        file_bytes = sum(e.size for e in entries if e.kind == "file")
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
                    [(layer, seq, *entry) for seq, entry in enumerate(entries)],
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
        row = self._db.conn().execute(
            "SELECT base_layers, base FROM image_bases WHERE image = ?", (image,)
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))
