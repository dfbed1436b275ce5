"""`lamina import`: a root filesystem (a directory or a tarball) becomes a layer."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from lamina.builder import timestamp, write_layer_to_store
from lamina.errors import InvalidInputError
from lamina.layers import (
    Change,
    EntryCollector,
    Limits,
    TarReader,
    changes_from_dir,
    open_layer_reader,
    source_date_epoch,
)
from lamina.oci import History, ImageConfig, media_types
from lamina.store import LayerRecord, Lease, Store, write_image

_TAR_MEDIA_TYPES = {
    "gzip": media_types.OCI_LAYER_GZIP,
    "zstd": media_types.OCI_LAYER_ZSTD,
    "none": media_types.OCI_LAYER,
}


def layer_from_tarball(store: Store, lease: Lease, path: Path) -> LayerRecord:
    """Store a tarball (plain, gzip or zstd) as a layer, as it is.

    Every header is read through the bounded reader first, and the diff_id is the
    hash of what it decompresses to: a file that is not a well-formed tar never
    becomes a layer.
    """
    with open(path, "rb") as raw:
        tar = open_layer_reader(raw)
        reader = TarReader(tar, Limits())
        index = EntryCollector()  # the file index, gathered in this same pass
        for entry, content in reader.entries():
            index.tar_entry(entry, content)
        compression = tar.compression.value
    media_type = _TAR_MEDIA_TYPES.get(compression)
    if media_type is None:
        raise InvalidInputError(
            f"{path}: a {compression} tarball cannot be a layer",
            hint="use a plain, gzip or zstd tarball",
        )
    with open(path, "rb") as raw, store.content.writer(lease=lease) as writer:
        while chunk := raw.read(1 << 20):
            writer.write(chunk)
        blob = writer.commit()
    store.file_index.put(reader.diff_id, index.entries)
    return LayerRecord(blob.digest, reader.diff_id, media_type, blob.size, reader.size)


def _layer_from_changes(store: Store, lease: Lease, changes: list[Change]) -> LayerRecord:
    """Write `changes` as a gzip layer blob into the store, as a build step does."""
    info = write_layer_to_store(store, lease, changes, source_date_epoch=source_date_epoch())
    return LayerRecord(
        info.digest, info.diff_id, info.media_type, info.size, info.uncompressed_size
    )


def import_rootfs(
    store: Store,
    source: Path,
    *,
    base_config: ImageConfig | None,
    base_layers: Sequence[LayerRecord],
    changes_for: Callable[[Path], list[Change]] | None,
    message: str,
    instructions: Sequence[str],
    apply_changes: Callable[[ImageConfig, Sequence[str]], ImageConfig],
    tags: Sequence[str],
) -> str:
    """Make an image of `source` stacked on a base (or none); returns the image ID."""
    with store.lease() as lease:
        for layer in base_layers:
            lease.add_blob(layer.digest)
        if source.is_dir():
            changes = changes_for(source) if changes_for else changes_from_dir(source)
            layer = _layer_from_changes(store, lease, changes)
        else:
            layer = layer_from_tarball(store, lease, source)
        created = timestamp(source_date_epoch(), time.time())
        config = base_config or ImageConfig.new(created=created)
        config = config.with_fields(created=created)
        config = config.with_layer(
            layer.diff_id,
            History(created=created, created_by=f"lamina import {source.name}", comment=message),
        )
        config = apply_changes(config, instructions)
        image = write_image(store, config, [*base_layers, layer], lease=lease, tags=tags)
    return image.id
