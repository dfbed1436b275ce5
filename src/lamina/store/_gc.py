"""prune (mark and sweep) and fsck."""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import stat
import time
from pathlib import Path

from lamina._rmtree import remove_tree
from lamina.errors import DigestMismatchError, NotFoundError
from lamina.store._content import ContentStore, _is_hex64
from lamina.store._db import Database
from lamina.store._layout import (
    INIT_LAYER_PREFIX,
    RECORD_SUFFIX,
    init_layer_name,
    snapshot_path,
)
from lamina.store._records import FsckReport, PruneReport

STALE_SECONDS = 3600.0
_TRASH = ".trash-"
_STAGING = ".tmp-"


class GcMixin:
    """`prune` and `fsck` over the content store, the snapshots dir and the metadata db."""

    _db: Database
    content: ContentStore
    snapshots_dir: Path

    def prune(
        self, stale_after: float = STALE_SECONDS, *, keep_layer_blobs: bool = False
    ) -> PruneReport:
        """Remove dangling images, then everything no record, cache entry or live lease holds.

        Compressed layer blobs kept only as a cache of what left the machine go too unless
        `keep_layer_blobs` (what they were is remembered: the next send makes the same blob).

        Dangling = no name (tag or repo digest) and used by no container. Holds the gc
        lock exclusively, so prunes are serialized and writers wait (see `Database.write`).
        Metadata goes first, files after: a crash in between leaves only unreferenced files.
        """
        with self._db.gc_lock(exclusive=True):
            now = time.time()
            with self._db.write(gc_shared=False) as db:
                expired = db.execute("DELETE FROM leases WHERE expires <= ?", (now,)).rowcount
                db.execute("DELETE FROM registry_tokens WHERE expires <= ?", (now,))
                images = tuple(
                    r[0]
                    for r in db.execute(
                        "DELETE FROM images WHERE digest NOT IN (SELECT digest FROM tags) "
                        "AND digest NOT IN (SELECT image FROM repo_digests) "
                        "AND digest NOT IN (SELECT image FROM containers) RETURNING digest"
                    )
                )
                blobs, snapshots = _mark(db, keep_layer_blobs)
                # An image's init layer (its containers' stubs) lives while the image does.
                live_images = {r[0].removeprefix("sha256:") for r in db.execute(
                    "SELECT digest FROM images")}  # fmt: skip
                # A layer record outlives its images while a cache record or lease holds
                # the blob: the builder still needs its diff_id.
                orphans = db.execute(
                    "SELECT digest FROM layers WHERE digest NOT IN (SELECT layer FROM image_layers)"
                ).fetchall()
                db.executemany(
                    "DELETE FROM layers WHERE digest = ?", [r for r in orphans if r[0] not in blobs]
                )
                gone = [
                    r[0]
                    for r in db.execute("SELECT diff_id FROM snapshots")
                    if r[0] not in snapshots
                ]
                db.executemany("DELETE FROM snapshots WHERE diff_id = ?", [(d,) for d in gone])
                db.executemany(
                    "DELETE FROM snapshot_entries WHERE diff_id = ?", [(d,) for d in gone]
                )
                # Where a registry holds a layer is remembered while something holds it.
                db.executemany(
                    "DELETE FROM remote_layers WHERE diff_id = ?",
                    [
                        r
                        for r in db.execute("SELECT DISTINCT diff_id FROM remote_layers")
                        if r[0] not in snapshots
                    ],
                )
                # A layer's file index goes with the last record of its content.
                db.execute(
                    "DELETE FROM layer_index WHERE diff_id NOT IN (SELECT diff_id FROM layers) "
                    "AND diff_id NOT IN (SELECT diff_id FROM snapshots)"
                )
            removed, freed = [], 0
            for digest in list(self.content.iter_digests()):
                if digest not in blobs:
                    with contextlib.suppress(NotFoundError):
                        size = self.content.size(digest)
                        if self.content.delete(digest):
                            removed.append(digest)
                            freed += size
            swept = self._sweep_snapshots(
                {s.removeprefix("sha256:") for s in snapshots}, stale_after, live_images
            )
            stale = self.content.stale_ingests(stale_after)
            for path in stale:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        return PruneReport(
            images_removed=images,
            blobs_removed=tuple(sorted(removed)),
            bytes_freed=freed,
            snapshots_removed=tuple(sorted(swept)),
            ingests_removed=len(stale),
            leases_expired=expired,
        )

    def _sweep_snapshots(self, keep: set[str], stale_after: float, images: set[str]) -> list[str]:
        removed = []
        cutoff = time.time() - stale_after
        for entry in os.scandir(self.snapshots_dir):
            path = Path(entry.path)
            if entry.name.startswith(INIT_LAYER_PREFIX):
                if entry.name.removeprefix(INIT_LAYER_PREFIX) not in images:
                    drop_init_layer(self.snapshots_dir, entry.name)
                continue
            if entry.name.endswith(RECORD_SUFFIX) and _is_hex64(
                entry.name.removesuffix(RECORD_SUFFIX)
            ):
                if (
                    entry.name.removesuffix(RECORD_SUFFIX) not in keep
                    and not (self.snapshots_dir / entry.name.removesuffix(RECORD_SUFFIX)).exists()
                ):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                continue
            if _is_hex64(entry.name) and entry.name not in keep:
                # The record goes first: a snapshot without one is "to be migrated", never
                # a layer whose tar can be rebuilt.
                with contextlib.suppress(FileNotFoundError):
                    (self.snapshots_dir / (entry.name + RECORD_SUFFIX)).unlink()
                # Renamed first: a half-deleted tree must never sit under a snapshot's name.
                trash = self.snapshots_dir / f"{_TRASH}{entry.name}-{secrets.token_hex(4)}"
                os.rename(path, trash)
                remove_tree(trash)
                removed.append("sha256:" + entry.name)
            elif entry.name.startswith(_TRASH) or (
                entry.name.startswith(_STAGING)
                and entry.stat(follow_symlinks=False).st_mtime < cutoff
            ):
                remove_tree(path)
        return removed

    def fsck(self) -> FsckReport:
        """Re-hash every blob; check that every reference points at existing content."""
        problems: list[str] = []
        strays: list[str] = []
        checked = 0
        for digest in sorted(self.content.iter_digests()):
            try:
                self.content.verify(digest)
                checked += 1
            except DigestMismatchError as e:
                problems.append(f"corrupt blob: {e}")
            except NotFoundError:
                pass
        strays += [
            f"blob store file with no digest name: {p}" for p in self.content.stray_blob_files()
        ]
        strays += [f"partial ingest: {p}" for p in self.content.ingests()]
        with self._db.read() as db:
            for (result,) in db.execute("PRAGMA integrity_check"):
                if result != "ok":
                    problems.append(f"metadata.db: {result}")
            for table, rowid, parent, _ in db.execute("PRAGMA foreign_key_check"):
                problems.append(
                    f"metadata.db: {table} row {rowid} points at a missing {parent} row"
                )
            layer_diff_ids = dict(db.execute("SELECT digest, diff_id FROM layers").fetchall())
            pending = {r[0] for r in db.execute("SELECT diff_id FROM pending_unpack")}
            # Lazy layers: a registry holds the blob; fetched when something needs it.
            remote = {r[0] for r in db.execute("SELECT diff_id FROM remote_layers")}
            for image, blob in db.execute(
                "SELECT image, blob FROM image_blobs ORDER BY image, blob"
            ):
                diff_id = layer_diff_ids.get(blob)
                if self.content.has(blob):
                    continue
                if diff_id is not None and (
                    diff_id not in pending and self._snapshot_dir(diff_id).is_dir()
                ):
                    continue  # a layer is its snapshot; its blob is made when it leaves
                if diff_id in remote:
                    continue
                problems.append(f"image {image}: blob {blob} is missing")
            for (image,) in db.execute(
                "SELECT digest FROM images i WHERE NOT EXISTS "
                "(SELECT 1 FROM image_blobs b "
                "WHERE b.image = i.digest AND b.blob = i.config_digest)"
            ):
                problems.append(f"image {image}: its config is not among its blobs")
            for image, layer in db.execute(
                "SELECT image, layer FROM image_layers x WHERE NOT EXISTS "
                "(SELECT 1 FROM image_blobs b WHERE b.image = x.image AND b.blob = x.layer)"
            ):
                problems.append(f"image {image}: layer {layer} is not among its blobs")
            for key, kind, ref in db.execute("SELECT key, kind, ref FROM cache_refs ORDER BY key"):
                if kind == "blob" and not self.content.has(ref):
                    problems.append(f"cache {key}: blob {ref} is missing")
                lazy = ref in remote  # a registry holds it
                if kind == "snapshot" and not lazy and not self._snapshot_dir(ref).is_dir():
                    problems.append(f"cache {key}: snapshot {ref} is missing")
            recorded = set()
            for (diff_id,) in db.execute("SELECT diff_id FROM snapshots"):
                hex_id = diff_id.removeprefix("sha256:")
                recorded.add(hex_id)
                if not self._snapshot_dir(diff_id).is_dir():
                    problems.append(f"snapshot {diff_id}: {self._snapshot_dir(diff_id)} is missing")
                elif (self.snapshots_dir / (hex_id + RECORD_SUFFIX)).is_file():
                    recorded.add(hex_id + RECORD_SUFFIX)
                elif diff_id not in pending:
                    problems.append(f"snapshot {diff_id}: its tar-split record is missing")
            recorded.update(
                init_layer_name(r[0]) for r in db.execute("SELECT digest FROM images")
            )  # an image's init layer (made by its first container)
        for entry in sorted(os.listdir(self.snapshots_dir)):
            if entry not in recorded:
                strays.append(f"unrecorded snapshot entry: {self.snapshots_dir / entry}")
            elif entry.startswith(INIT_LAYER_PREFIX):
                problems += _init_layer_problems(self.snapshots_dir / entry)
        return FsckReport(problems=problems, strays=strays, blobs_checked=checked)

    def _snapshot_dir(self, diff_id: str) -> Path:
        return snapshot_path(self.snapshots_dir, diff_id)


def _mark(db: sqlite3.Connection, keep_layer_blobs: bool) -> tuple[set[str], set[str]]:
    """What the remaining images, cache records and live leases hold: (blobs, snapshots).

    A compressed layer blob remembered in `layer_blobs` is a cache (the snapshot is the
    layer): images do not hold it, only leases, cache records or `keep_layer_blobs` do.
    """
    now = time.time()
    held = {
        r[0]
        for r in db.execute(
            "SELECT ref FROM cache_refs WHERE kind = 'blob' "
            "UNION SELECT r.ref FROM lease_resources r JOIN leases l ON l.id = r.lease "
            "WHERE r.kind = 'blob' AND l.expires > ?",
            (now,),
        )
    }
    by_images = {r[0] for r in db.execute("SELECT blob FROM image_blobs")}
    cached = {r[0] for r in db.execute("SELECT digest FROM layer_blobs")}
    blobs = held | (by_images if keep_layer_blobs else by_images - cached)
    if keep_layer_blobs:
        blobs |= cached
    snapshots = {
        r[0]
        for r in db.execute(
            "SELECT l.diff_id FROM image_layers x JOIN layers l ON l.digest = x.layer "
            "UNION SELECT ref FROM cache_refs WHERE kind = 'snapshot' "
            "UNION SELECT r.ref FROM lease_resources r JOIN leases l ON l.id = r.lease "
            "WHERE r.kind = 'snapshot' AND l.expires > ?",
            (now,),
        )
    }
    return blobs, snapshots


def _init_layer_problems(layer: Path) -> list[str]:
    """An init layer holds only mount-point stubs: directories and empty regular files.
    Anything else was written by something other than the container code that made it."""
    problems = []
    for top, dirs, files in os.walk(layer):
        for name in dirs + files:
            path = os.path.join(top, name)
            st = os.lstat(path)
            if not (stat.S_ISDIR(st.st_mode) or (stat.S_ISREG(st.st_mode) and st.st_size == 0)):
                problems.append(f"init layer {layer.name}: {os.path.relpath(path, layer)} is "
                                "not a mount-point stub")  # fmt: skip
    return problems


def drop_init_layer(snapshots_dir: Path, name: str) -> None:
    """Remove the init layer `snapshots/<name>` (`init-<image hex>`), renamed out of its
    name first: a half-removed one must never be mounted under a container."""
    trash = snapshots_dir / f"{_TRASH}{name}-{secrets.token_hex(4)}"
    try:
        os.rename(snapshots_dir / name, trash)
    except FileNotFoundError:
        return
    remove_tree(trash)
