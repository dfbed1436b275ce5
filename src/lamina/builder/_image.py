"""An image being built (config + layers), its layers' snapshots, and its commit."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lamina.oci import ImageConfig
from lamina.store import ImageRecord, LayerRecord, Lease, Store, write_image

if TYPE_CHECKING:
    from lamina.layers import Change


@dataclass(frozen=True)
class ImageState:
    """A stage's image so far: its config, its layers (bottom first) and its cache key."""

    config: ImageConfig
    layers: tuple[LayerRecord, ...]
    key: str

    def with_step(self, config: ImageConfig, layer: LayerRecord | None, key: str) -> ImageState:
        layers = (*self.layers, layer) if layer is not None else self.layers
        return ImageState(config, layers, key)


def layer_from_dir(
    store: Store,
    lease: Lease,
    directory: Path,
    *,
    overlay_upper: bool,
    source_date_epoch: int | None,
    keep_directory: bool = False,
) -> LayerRecord | None:
    """Write `directory` as a layer blob, then make the directory itself the layer's snapshot.

    `overlay_upper`: the directory is an overlay upper dir (whiteouts as 0:0 devices); else
    every entry is an addition. None (and the directory removed) when nothing changed.
    The directory must be on the store's file system: it is renamed, never copied.
    `keep_directory` (a container's upper dir, committed while it may still run): the
    directory stays as it is and no snapshot is made; the layer is unpacked when needed.
    """
    from lamina.layers import changes_from_dir, changes_from_overlay_upper, sort_changes

    from ._pipeline import write_layer_to_store

    if overlay_upper:
        changes = changes_from_overlay_upper(directory)
    else:
        changes = sort_changes(changes_from_dir(directory))
    if not changes:
        if not keep_directory:
            shutil.rmtree(directory)
        return None
    info = write_layer_to_store(store, lease, changes, source_date_epoch=source_date_epoch)
    if keep_directory:
        return LayerRecord(
            info.digest, info.diff_id, info.media_type, info.size, info.uncompressed_size
        )
    lease.add_snapshot(info.diff_id)
    target = store.snapshot_path(info.diff_id)
    if target.is_dir():
        shutil.rmtree(directory)
    else:
        try:
            os.rename(directory, target)
        except OSError:
            if not target.is_dir():
                raise
            shutil.rmtree(directory)
    store.put_snapshot(info.diff_id, info.uncompressed_size)
    return LayerRecord(
        info.digest, info.diff_id, info.media_type, info.size, info.uncompressed_size
    )


def layer_from_entries(
    store: Store,
    lease: Lease,
    directory: Path,
    entries: dict[str, Change],
    *,
    source_date_epoch: int | None,
) -> LayerRecord:
    """Write a layer of `directory` (every entry added) plus `entries` written straight
    from where they are (a COPY from the context). No snapshot is made: the layer is
    unpacked later if a build ever needs it as a lower dir."""
    from lamina.layers import changes_from_dir, sort_changes

    from ._pipeline import write_layer_to_store

    merged = {c.path: c for c in changes_from_dir(directory)}
    merged.update(entries)
    changes = sort_changes(list(merged.values()))
    info = write_layer_to_store(store, lease, changes, source_date_epoch=source_date_epoch)
    return LayerRecord(
        info.digest, info.diff_id, info.media_type, info.size, info.uncompressed_size
    )


def ensure_snapshots(store: Store, lease: Lease, layers: Sequence[LayerRecord]) -> list[Path]:
    """The snapshot dir of each layer (bottom first), unpacking those not on disk yet."""
    from lamina.snapshots import ensure_snapshots as prepare

    return prepare(store, layers, lease)


def commit_image(
    store: Store, lease: Lease, state: ImageState, tags: Sequence[str] = ()
) -> ImageRecord:
    """Write the config and an OCI manifest, then record the image and its tags at once."""
    return write_image(store, state.config, state.layers, lease=lease, tags=tags)
