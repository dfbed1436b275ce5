"""Layers by diff_id: a snapshot plus its tar-split record is the one copy of a layer.

Compressed blobs of a layer are a cache (`layer_blobs`: diff_id + compression → digest),
made when bytes leave the machine and kept so the same layer goes out as the same blob.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from lamina.errors import NotFoundError
from lamina.oci import check_digest
from lamina.store._content import BlobInfo, ContentStore
from lamina.store._db import Database
from lamina.store._layout import record_path, snapshot_path
from lamina.store._leases import Lease
from lamina.store._records import LayerRecord
from lamina.store._registry import RegistryRecords

RemoteFetcher = Callable[[Sequence[LayerRecord], Lease], None]
"""Brings layers whose blobs only a registry holds into their snapshots (`lamina.api`)."""


class LeanLayersMixin:
    """Which layers the store holds (as snapshots), and the compressed-blob cache."""

    _db: Database
    content: ContentStore
    snapshots_dir: Path
    registry: RegistryRecords
    remote_fetcher: RemoteFetcher | None = None

    def record_path(self, diff_id: str) -> Path:
        """Where the tar-split record of a snapshot lives (beside it, not in it: the
        snapshot directory is an overlayfs lowerdir and must hold only the layer)."""
        return record_path(self.snapshots_dir, diff_id)

    def has_layer(self, diff_id: str) -> bool:
        """Whether the layer's content is here: its snapshot is recorded and on disk with its
        tar-split record, so its exact tar can be rebuilt."""
        row = (
            self._db.conn()
            .execute("SELECT 1 FROM snapshots WHERE diff_id = ?", (diff_id,))
            .fetchone()
        )
        return (
            row is not None
            and snapshot_path(self.snapshots_dir, diff_id).is_dir()
            and self.record_path(diff_id).is_file()
        )

    def is_remote(self, diff_id: str) -> bool:
        """Whether the layer is not here but a registry is known to hold its blob: a lazy
        layer, fetched when something needs its bytes (`fetch_remote`)."""
        return not self.has_layer(diff_id) and bool(self.registry.remote_layers(diff_id))

    def layer_available(self, diff_id: str) -> bool:
        """Whether the layer is here or can be fetched (`is_remote`)."""
        return self.has_layer(diff_id) or bool(self.registry.remote_layers(diff_id))

    def fetch_remote(self, layers: Sequence[LayerRecord], lease: Lease) -> None:
        """Bring the lazy layers among `layers` into their snapshots (held by `lease`)
        through `remote_fetcher`; the others are left alone."""
        missing = [
            layer for layer in layers
            if not self.has_layer(layer.diff_id) and not self.content.has(layer.digest)
            and self.registry.remote_layers(layer.diff_id)
        ]  # fmt: skip
        if not missing:
            return
        if self.remote_fetcher is None:
            (where,) = self.registry.remote_layers(missing[0].diff_id)[:1]
            raise NotFoundError(
                f"layer {missing[0].diff_id} is in {where.where()}, not fetched into this store",
                hint="use the store through `lamina` (lamina.api.Lamina), which fetches it",
            )
        self.remote_fetcher(missing, lease)

    def layer_size(self, diff_id: str) -> int | None:
        """The uncompressed tar size of a recorded snapshot, or None."""
        row = (
            self._db.conn()
            .execute("SELECT size FROM snapshots WHERE diff_id = ?", (diff_id,))
            .fetchone()
        )
        return None if row is None else int(row[0])

    def set_snapshot_entries(self, diff_id: str, entries: int) -> None:
        """Remember how many entries (files, dirs, links...) the snapshot directory holds."""
        with self._db.write(gc_shared=False) as db:
            db.execute("INSERT OR REPLACE INTO snapshot_entries VALUES (?, ?)", (diff_id, entries))

    def snapshot_entries(self, diff_id: str) -> int | None:
        """What `set_snapshot_entries` remembered, or None."""
        row = (
            self._db.conn()
            .execute("SELECT entries FROM snapshot_entries WHERE diff_id = ?", (diff_id,))
            .fetchone()
        )
        return None if row is None else int(row[0])

    # --- the compressed-blob cache -------------------------------------------------

    def cached_layer_blob(self, diff_id: str, compression: str) -> tuple[BlobInfo, str] | None:
        """The blob (and media type) this layer became with `compression`, if remembered.

        The blob itself may have been pruned: check `content.has` before reading it; its
        digest stays the one a new compression gives (compression is deterministic).
        """
        row = (
            self._db.conn()
            .execute(
                "SELECT digest, size, media_type FROM layer_blobs "
                "WHERE diff_id = ? AND compression = ?",
                (diff_id, compression),
            )
            .fetchone()
        )
        return None if row is None else (BlobInfo(row[0], int(row[1])), str(row[2]))

    def remember_layer_blob(
        self, diff_id: str, compression: str, blob: BlobInfo, media_type: str
    ) -> None:
        """Record what a layer compressed with `compression` gave."""
        check_digest(diff_id, "diff_id")
        check_digest(blob.digest, "layer blob digest")
        with self._db.write(gc_shared=False) as db:
            db.execute(
                "INSERT OR REPLACE INTO layer_blobs VALUES (?, ?, ?, ?, ?)",
                (diff_id, compression, blob.digest, blob.size, media_type),
            )

    def layer_blob_diff_id(self, digest: str) -> str | None:
        """The diff_id whose cached compressed blob has this digest, if any."""
        row = (
            self._db.conn()
            .execute("SELECT diff_id FROM layer_blobs WHERE digest = ? LIMIT 1", (digest,))
            .fetchone()
        )
        return None if row is None else str(row[0])

    # --- migration to the lean model ------------------------------------------------

    def layers_with_diff_id(self, diff_id: str) -> list[LayerRecord]:
        """Every layer record (blob digest) with this content, smallest blob first."""
        rows = self._db.conn().execute(
            "SELECT digest, diff_id, media_type, size, uncompressed_size FROM layers "
            "WHERE diff_id = ? ORDER BY size, digest",
            (diff_id,),
        )
        return [LayerRecord(*row) for row in rows]

    def pending_unpacks(self) -> list[str]:
        """diff_ids an older store holds only as blobs (or snapshots without a record)."""
        return [
            r[0] for r in self._db.conn().execute("SELECT diff_id FROM pending_unpack ORDER BY 1")
        ]

    def unpack_done(self, diff_id: str) -> None:
        """The migration finished this layer."""
        with self._db.write(gc_shared=False) as db:
            db.execute("DELETE FROM pending_unpack WHERE diff_id = ?", (diff_id,))
