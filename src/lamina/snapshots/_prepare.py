"""Stored layer blobs → snapshots, recorded in the store."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lamina.layers import Limits, apply_layer, open_layer_reader
from lamina.snapshots._snapshot import unpack_snapshot
from lamina.store import LayerRecord, Lease, Store


def ensure_snapshots(store: Store, layers: Sequence[LayerRecord], lease: Lease) -> list[Path]:
    """The snapshot directory of each layer (bottom first), unpacking the missing ones.

    Each layer blob is read through the verifying reader and the safe applier; the
    snapshot becomes visible only if its content hashes to the layer's diff_id.
    `lease` holds the snapshots until the caller records what uses them.
    """
    snapshots_root = store.snapshots_dir
    dirs: list[Path] = []
    for layer in layers:
        lease.add_snapshot(layer.diff_id)
        if (
            store.get_snapshot(layer.diff_id) is None
            or not store.snapshot_path(layer.diff_id).is_dir()
        ):
            sizes: list[int] = []

            def unpack(target: Path, layer: LayerRecord = layer, sizes: list[int] = sizes) -> str:
                with store.content.open(layer.digest) as blob:
                    tar = open_layer_reader(blob)
                    stats = apply_layer(tar, target, overlay=True, limits=Limits())
                    # Drain to the end so the verifying reader checks the blob's digest.
                    while tar.read(1 << 20):
                        pass
                sizes.append(stats.size)
                return stats.diff_id

            unpack_snapshot(snapshots_root, layer.diff_id, unpack)
            # The layer's tar size, as a build records the snapshots it makes; another
            # process may have unpacked it first, and then the record has it.
            known = sizes[0] if sizes else layer.uncompressed_size
            store.put_snapshot(layer.diff_id, known if known is not None else layer.size)
        dirs.append(store.snapshot_path(layer.diff_id))
    return dirs
