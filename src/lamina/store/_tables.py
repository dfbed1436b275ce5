"""Snapshot, build-cache, stat-cache and container records in the metadata db."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lamina.errors import NotFoundError
from lamina.oci import check_digest
from lamina.store import _rows
from lamina.store._content import ContentStore
from lamina.store._db import Database
from lamina.store._layout import snapshot_path
from lamina.store._records import CacheRecord, FileIdentity, SnapshotRecord
from lamina.store._rows import ContainerRecord

_MAX_ROWS_PER_QUERY = 100_000


class TablesMixin:
    """Snapshots, cache records, the stat cache and containers."""

    _db: Database
    content: ContentStore
    snapshots_dir: Path

    # --- snapshots -------------------------------------------------------

    def snapshot_path(self, diff_id: str) -> Path:
        """Where the unpacked layer with this diff_id lives (or will)."""
        return snapshot_path(self.snapshots_dir, diff_id)

    def put_snapshot(self, diff_id: str, size: int, state: str = "committed") -> None:
        """Record a snapshot directory that the snapshots package has finished writing."""
        check_digest(diff_id, "diff_id")
        if not self.snapshot_path(diff_id).is_dir():
            raise NotFoundError(f"snapshot {diff_id}: {self.snapshot_path(diff_id)} does not exist")
        with self._db.write() as db:
            db.execute(
                "INSERT INTO snapshots VALUES (?, ?, ?, ?) ON CONFLICT(diff_id) "
                "DO UPDATE SET state = excluded.state, size = excluded.size",
                (diff_id, state, size, time.time()),
            )

    def get_snapshot(self, diff_id: str) -> SnapshotRecord | None:
        """The snapshot's record, or None."""
        row = (
            self._db.conn()
            .execute(
                "SELECT diff_id, state, size, created FROM snapshots WHERE diff_id = ?", (diff_id,)
            )
            .fetchone()
        )
        return SnapshotRecord(*row) if row else None

    def list_snapshots(self) -> list[SnapshotRecord]:
        """Every recorded snapshot (the snapshots package checks their content)."""
        rows = self._db.conn().execute(
            "SELECT diff_id, state, size, created FROM snapshots ORDER BY diff_id"
        )
        return [SnapshotRecord(*row) for row in rows]

    # --- build cache -----------------------------------------------------

    def put_cache(
        self,
        key: str,
        value: Any,
        *,
        blobs: Sequence[str] = (),
        snapshots: Sequence[str] = (),
    ) -> None:
        """Record (or replace) a cache entry that keeps `blobs` and `snapshots` alive.

        NotFoundError, nothing written, if a blob is not committed or a snapshot not recorded.
        """
        text = json.dumps(value, sort_keys=True)
        with self._db.write() as db:
            for digest in blobs:
                if not self.content.has(check_digest(digest, "cache blob")):
                    raise NotFoundError(f"cache {key}: blob {digest} is not in the content store")
            for diff_id in snapshots:
                # Recorded, or lazy: a registry holds it (fetched when its bytes are needed).
                if (
                    db.execute(
                        "SELECT 1 FROM snapshots WHERE diff_id = ?1"
                        " UNION ALL SELECT 1 FROM remote_layers WHERE diff_id = ?1",
                        (diff_id,),
                    ).fetchone()
                    is None
                ):
                    raise NotFoundError(f"cache {key}: snapshot {diff_id} is not recorded")
            now = time.time()
            db.execute("DELETE FROM cache WHERE key = ?", (key,))
            db.execute("INSERT INTO cache VALUES (?, ?, ?, ?)", (key, text, now, now))
            db.executemany(
                "INSERT OR IGNORE INTO cache_refs VALUES (?, ?, ?)",
                [(key, "blob", d) for d in blobs] + [(key, "snapshot", s) for s in snapshots],
            )

    def get_cache(self, key: str) -> CacheRecord | None:
        """The cache entry (its last_used becomes now), or None."""
        now = time.time()
        with self._db.write(gc_shared=False) as db:
            row = db.execute(
                "UPDATE cache SET last_used = ? WHERE key = ? RETURNING value, created", (now, key)
            ).fetchone()
            if row is None:
                return None
            refs = db.execute(
                "SELECT kind, ref FROM cache_refs WHERE key = ? ORDER BY ref", (key,)
            ).fetchall()
        return CacheRecord(
            key,
            json.loads(row[0]),
            blobs=tuple(r for k, r in refs if k == "blob"),
            snapshots=tuple(r for k, r in refs if k == "snapshot"),
            created=row[1],
            last_used=now,
        )

    def remove_cache(
        self, keys: Iterable[str] | None = None, *, unused_since: float | None = None
    ) -> int:
        """Drop cache entries: these keys, or those unused since a time, or (no argument) all."""
        with self._db.write(gc_shared=False) as db:
            if keys is not None:
                return db.executemany(
                    "DELETE FROM cache WHERE key = ?", [(k,) for k in keys]
                ).rowcount
            if unused_since is not None:
                return db.execute("DELETE FROM cache WHERE last_used < ?", (unused_since,)).rowcount
            return db.execute("DELETE FROM cache").rowcount

    # --- stat cache ------------------------------------------------------

    def stat_cache_get(self, files: Sequence[FileIdentity]) -> dict[str, str]:
        """path → sha256 for each file whose recorded identity equals the given one (one query)."""
        if len(files) > _MAX_ROWS_PER_QUERY:
            found: dict[str, str] = {}
            for start in range(0, len(files), _MAX_ROWS_PER_QUERY):
                found.update(self.stat_cache_get(files[start : start + _MAX_ROWS_PER_QUERY]))
            return found
        wanted = json.dumps([[f.path, f.size, f.mtime_ns, f.inode, f.mode, f.ctime_ns, f.dev,
                              f.uid, f.gid] for f in files])  # fmt: skip
        rows = self._db.conn().execute(
            "SELECT s.path, s.digest FROM json_each(?) j JOIN stat_cache s "
            "ON s.path = j.value ->> 0 AND s.size = j.value ->> 1 AND s.mtime_ns = j.value ->> 2 "
            "AND s.inode = j.value ->> 3 AND s.mode = j.value ->> 4 "
            "AND s.ctime_ns = j.value ->> 5 AND s.dev = j.value ->> 6 "
            "AND s.uid = j.value ->> 7 AND s.gid = j.value ->> 8",
            (wanted,),
        )
        return dict(rows.fetchall())

    def stat_cache_put(self, entries: Iterable[tuple[FileIdentity, str]]) -> None:
        """Remember the sha256 of each file identity (replacing what a path had)."""
        rows = [(f.path, f.size, f.mtime_ns, f.inode, f.mode, digest, f.ctime_ns, f.dev, f.uid,
                 f.gid) for f, digest in entries]  # fmt: skip
        with self._db.write(gc_shared=False) as db:
            db.executemany(
                "INSERT OR REPLACE INTO stat_cache (path, size, mtime_ns, inode, mode, digest, "
                "ctime_ns, dev, uid, gid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def stat_cache_clear(self, prefix: str | None = None) -> int:
        """Forget the stat cache, or the entries under a directory prefix."""
        with self._db.write(gc_shared=False) as db:
            if prefix is None:
                return db.execute("DELETE FROM stat_cache").rowcount
            return db.execute(
                "DELETE FROM stat_cache WHERE substr(path, 1, ?) = ?", (len(prefix), prefix)
            ).rowcount

    # --- containers (the rows are `_rows`'s: `lamina run` writes them without a Store) ---

    def add_container(
        self, id: str, name: str, image: str, state: Any, durable: bool = True
    ) -> ContainerRecord:
        """Record a container, which keeps its image from prune; AlreadyExistsError if taken.
        (`durable` False: not synced to disk before it returns; see `Database.write`.)"""
        return _rows.add_container(self._db, id, name, image, state, durable)

    def get_container(self, id_or_name: str) -> ContainerRecord:
        """By id, name or unique id prefix; NotFoundError otherwise."""
        return _rows.get_container(self._db, id_or_name)

    def list_containers(self) -> list[ContainerRecord]:
        """Every container, oldest first."""
        return _rows.list_containers(self._db)

    def set_container_state(self, id: str, state: Any) -> None:
        """Replace a container's JSON state."""
        _rows.set_container_state(self._db, id, state)

    def remove_container(self, id: str) -> None:
        """Forget a container record (its directories are the runtime's)."""
        _rows.remove_container(self._db, id)

    def rename_container(self, id: str, name: str) -> None:
        """Give a container another name; AlreadyExistsError if another has it."""
        _rows.rename_container(self._db, id, name)
