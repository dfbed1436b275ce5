"""An image being built (config + layers), its layers' snapshots, and its commit."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
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
    """Make the directory itself the layer's snapshot; its tar is hashed and recorded
    (tar-split), never stored or compressed.

    `overlay_upper`: the directory is an overlay upper dir (whiteouts as 0:0 devices); else
    every entry is an addition. None (and the directory removed) when nothing changed.
    The directory must be on the store's file system: it is renamed, never copied.
    `keep_directory` (a container's upper dir, committed while it may still run): the
    directory stays as it is; the layer is written into a snapshot of its own.
    """
    from lamina.layers import changes_from_dir, changes_from_overlay_upper, sort_changes
    from lamina.transport import commit_dir_layer

    if overlay_upper:
        changes = changes_from_overlay_upper(directory)
    else:
        changes = sort_changes(changes_from_dir(directory))
    if not changes:
        if not keep_directory:
            shutil.rmtree(directory)
        return None
    if keep_directory:
        # A container's upper dir, committed while it may still run: the directory stays;
        # the layer is written once into a snapshot of its own (tar → applier, one pass).
        from lamina.transport import commit_changes_layer

        return commit_changes_layer(store, lease, changes, source_date_epoch=source_date_epoch)
    return commit_dir_layer(store, lease, directory, changes, source_date_epoch=source_date_epoch)


def layer_from_entries(
    store: Store,
    lease: Lease,
    directory: Path,
    entries: dict[str, Change],
    *,
    source_date_epoch: int | None,
    previous: Mapping[str, str] | None = None,
) -> LayerRecord:
    """A layer of `directory` (every entry added) plus `entries` read from where they are
    (a COPY from the context): each entry is copied straight into `directory` and hashed
    from that copy, then `directory` becomes the snapshot (on the store's file system).
    `previous`: files an earlier snapshot holds with the same content, hardlinked from
    there when their metadata matches (see ``commit_copy_layer``)."""
    from lamina.layers import changes_from_dir, sort_changes
    from lamina.transport import commit_copy_layer

    merged = {c.path: c for c in changes_from_dir(directory)}
    merged.update(entries)
    changes = sort_changes(list(merged.values()))
    return commit_copy_layer(store, lease, directory, changes, source_date_epoch=source_date_epoch,
                             previous=previous)  # fmt: skip


def ensure_snapshots(store: Store, lease: Lease, layers: Sequence[LayerRecord]) -> list[Path]:
    """The snapshot dir of each layer (bottom first), unpacking those not on disk yet."""
    from lamina.transport import ensure_layers

    return ensure_layers(store, lease, layers)


def commit_image(
    store: Store, lease: Lease, state: ImageState, tags: Sequence[str] = ()
) -> ImageRecord:
    """Write the config and an OCI manifest, then record the image and its tags at once."""
    return write_image(store, state.config, state.layers, lease=lease, tags=tags)
