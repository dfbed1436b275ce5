"""Layers into snapshots with their tar-split records, recorded in the metadata store.

The snapshot is a layer's one copy: ``unpack_layer`` applies an uncompressed tar stream
into a new snapshot and writes, beside it, the record of the exact tar stream, so the tar
can be rebuilt byte for byte. A layer is "in the store" (``store.has_layer``) when both are
there and recorded. This package does not import ``lamina.store``: it asks only for what
``LayerStore`` names (``lamina.store.Store`` is one).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from lamina._rmtree import remove_tree
from lamina.errors import DigestMismatchError, NotFoundError
from lamina.layers import (
    ByteStream,
    EntryCollector,
    EntryHook,
    Limits,
    SplitRecorder,
    apply_layer,
    count_entries,
    open_layer_reader,
)
from lamina.snapshots._snapshot import unpack_snapshot
from lamina.snapshots._snapshotter import Snapshotter


class _Blobs(Protocol):
    def has(self, digest: str) -> bool: ...

    def open(self, digest: str) -> BinaryIO: ...


class LayerStore(Protocol):
    """What unpacking needs from the metadata store."""

    @property
    def snapshots_dir(self) -> Path: ...

    @property
    def content(self) -> _Blobs: ...

    def has_layer(self, diff_id: str) -> bool: ...

    def layer_size(self, diff_id: str) -> int | None: ...

    def put_snapshot(self, diff_id: str, size: int, state: str = ...) -> None: ...

    def set_snapshot_entries(self, diff_id: str, entries: int) -> None: ...

    def fetch_remote(self, layers: Sequence[Any], lease: Any) -> None:
        """Bring layers that only a registry holds into their snapshots (lazy layers)."""
        ...


class LayerRef(Protocol):
    """A layer as the store records it (``lamina.store.LayerRecord``)."""

    @property
    def digest(self) -> str: ...

    @property
    def diff_id(self) -> str: ...


class SnapshotLease(Protocol):
    """Whatever keeps a snapshot from gc while it is made (``lamina.store.Lease``)."""

    def add_snapshot(self, diff_id: str) -> None: ...


Store = LayerStore
Lease = SnapshotLease
LayerRecord = LayerRef

_CHUNK = 1 << 20
DEFAULT_MAX_LAYER_SIZE = 64 << 30
DEFAULT_MAX_LAYER_RATIO = 1000.0


def record_tmp_path(store: Store, diff_id: str) -> Path:
    """A staging name for a record (swept with other stale `.tmp-` entries)."""
    return Snapshotter(store.snapshots_dir).record_staging(diff_id)


def unpack_layer(
    store: Store,
    lease: Lease,
    diff_id: str,
    tar: ByteStream,
    *,
    limits: Limits | None = None,
    finish: Callable[[], None] | None = None,
    on_entry: EntryHook | None = None,
    collect: EntryCollector | None = None,
) -> int:
    """Apply the uncompressed layer ``tar`` as the snapshot of ``diff_id`` with its record.

    ``finish`` runs after the tar is read and before anything becomes visible (drain a
    compressed stream so its digest is checked, commit a kept blob). Nothing is left
    behind on any error. Returns the tar's size. A layer already here is not unpacked
    (``tar`` is not read).
    """
    lease.add_snapshot(diff_id)
    if store.has_layer(diff_id):
        size = store.layer_size(diff_id)
        assert size is not None
        return size
    record_tmp = record_tmp_path(store, diff_id)
    sizes: list[int] = []

    def unpack(target: Path) -> str:
        try:
            with open(record_tmp, "xb") as f:
                recorder = SplitRecorder(f)
                stats = apply_layer(
                    tar, target, overlay=True, limits=limits or Limits(),
                    record=recorder, on_entry=on_entry, collect=collect,
                )  # fmt: skip
                recorder.close()
                f.flush()
                os.fsync(f.fileno())
            if finish is not None:
                finish()
            if stats.diff_id == diff_id:
                os.rename(record_tmp, Snapshotter(store.snapshots_dir).record_path(diff_id))
            sizes.append(stats.size)
            return stats.diff_id
        finally:
            with contextlib.suppress(FileNotFoundError):
                record_tmp.unlink()

    snaps = Snapshotter(store.snapshots_dir)
    if snaps.path(diff_id).is_dir() and not snaps.record_path(diff_id).is_file():
        # A snapshot from before records (a store being migrated): it may be in use as a
        # lowerdir, so it stays; the layer is unpacked aside only to write its record.
        scratch = Path(tempfile.mkdtemp(prefix=".tmp-record-", dir=store.snapshots_dir))
        try:
            actual = unpack(scratch)
        finally:
            remove_tree(scratch)
        if actual != diff_id:
            raise DigestMismatchError(f"layer {diff_id}: unpacked content's diff_id", diff_id,
                                      actual)  # fmt: skip
    else:
        unpack_snapshot(store.snapshots_dir, diff_id, unpack)
    size = sizes[0] if sizes else store.layer_size(diff_id)
    if size is None:  # another process made the directory; the record came with it
        raise NotFoundError(f"snapshot {diff_id} appeared without its record")
    store.put_snapshot(diff_id, size)
    store.set_snapshot_entries(diff_id, count_entries(snaps.path(diff_id)))
    return size


def unpack_blob(
    store: Store,
    lease: Lease,
    layer: LayerRecord,
    *,
    max_size: int = DEFAULT_MAX_LAYER_SIZE,
    max_ratio: float | None = DEFAULT_MAX_LAYER_RATIO,
) -> int:
    """Unpack a stored (kept or older-format) layer blob into its snapshot."""
    with store.content.open(layer.digest) as blob:
        reader = open_layer_reader(blob, max_size, max_ratio)

        def drain() -> None:
            while reader.read(_CHUNK):
                pass
            while blob.read(_CHUNK):  # the verifying reader checks the digest at EOF
                pass

        return unpack_layer(
            store, lease, layer.diff_id, reader,
            limits=Limits(max_total_bytes=max_size), finish=drain,
        )  # fmt: skip


def ensure_snapshots(store: Store, layers: Sequence[LayerRecord], lease: Lease) -> list[Path]:
    """The snapshot dir of each layer (bottom first), unpacking from a kept blob if needed
    and fetching those a registry holds (lazy layers) first."""
    store.fetch_remote(layers, lease)
    dirs = []
    for layer in layers:
        lease.add_snapshot(layer.diff_id)
        if not store.has_layer(layer.diff_id):
            if not store.content.has(layer.digest):
                raise NotFoundError(
                    f"layer {layer.diff_id} is neither unpacked nor stored as a blob",
                    hint="`lamina fsck` shows what is missing; load or pull the image again",
                )
            unpack_blob(store, lease, layer)
        dirs.append(Snapshotter(store.snapshots_dir).path(layer.diff_id))
    return dirs
