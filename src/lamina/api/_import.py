"""`lamina import`: a root filesystem (a directory or a tarball) becomes a layer."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import BinaryIO

from lamina.builder import timestamp
from lamina.layers import (
    Change,
    EntryCollector,
    Limits,
    changes_from_dir,
    open_layer_reader,
    source_date_epoch,
)
from lamina.oci import History, ImageConfig
from lamina.store import LayerRecord, Lease, Store, write_image
from lamina.transport import LayerLimits, commit_changes_layer, unpack_tar_layer


def layer_from_tarball(store: Store, lease: Lease, source: Path | BinaryIO) -> LayerRecord:
    """A tarball (plain, gzip, zstd, bzip2 or xz: what `docker import` takes), a file or a
    stream (stdin), becomes a layer: read once, forward, through the bounded reader,
    unpacked into its snapshot in that pass; its diff_id is the hash of what it
    decompresses to. Input that is not a well-formed tar never becomes a layer."""
    limits = LayerLimits.from_env()  # LAMINA_MAX_LAYER_SIZE / _RATIO, as for load
    with open(source, "rb") if isinstance(source, Path) else nullcontext(source) as raw:
        tar = open_layer_reader(raw, limits.max_size, limits.max_ratio)
        index = EntryCollector()  # the file index, gathered in this same pass
        layer = unpack_tar_layer(
            store, lease, tar, limits=Limits(max_total_bytes=limits.max_size), collect=index
        )
        while tar.read(1 << 20):
            pass
    store.file_index.put(layer.diff_id, index.columns())
    return layer


def _layer_from_changes(store: Store, lease: Lease, changes: list[Change]) -> LayerRecord:
    """Write `changes` into a new snapshot (its tar hashed and recorded on the way)."""
    return commit_changes_layer(store, lease, changes, source_date_epoch=source_date_epoch())


def import_rootfs(
    store: Store,
    source: Path | BinaryIO,
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
            lease.add_snapshot(layer.diff_id)
        if isinstance(source, Path) and source.is_dir():
            changes = changes_for(source) if changes_for else changes_from_dir(source)
            layer = _layer_from_changes(store, lease, changes)
        else:
            layer = layer_from_tarball(store, lease, source)
        created = timestamp(source_date_epoch(), time.time())
        config = base_config or ImageConfig.new(created=created)
        config = config.with_fields(created=created)
        # moby's: no CREATED BY, and the message, else where it came from ("-": the docker
        # CLI sends a file as it sends stdin).
        config = config.with_layer(
            layer.diff_id,
            History(created=created, created_by="", comment=message or "Imported from -"),
        )
        config = apply_changes(config, instructions)
        image = write_image(store, config, [*base_layers, layer], lease=lease, tags=tags)
    return image.id
