"""Stored layer blobs → snapshots, recorded in the store."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lamina.layers import Limits, apply_layer, open_layer_reader
from lamina.snapshots._snapshot import unpack_snapshot
from lamina.store import LayerRecord, Lease, Store


def _tree_size(root: Path) -> int:
    total = 0
    for path in root.rglob("*"):
        try:
            st = path.lstat()
        except OSError:
            continue
        total += st.st_blocks * 512
    return total


def ensure_snapshots(store: Store, layers: Sequence[LayerRecord], lease: Lease) -> list[Path]:
    """The snapshot directory of each layer (bottom first), unpacking the missing ones.

    Each layer blob is read through the verifying reader and the safe applier; the
    snapshot becomes visible only if its content hashes to the layer's diff_id.
    `lease` holds the snapshots until the caller records what uses them.
    """
    snapshots_root = store.root / "snapshots"
    dirs: list[Path] = []
    for layer in layers:
        lease.add_snapshot(layer.diff_id)
        if (
            store.get_snapshot(layer.diff_id) is None
            or not store.snapshot_path(layer.diff_id).is_dir()
        ):

            def unpack(target: Path, layer: LayerRecord = layer) -> str:
                with store.content.open(layer.digest) as blob:
                    tar = open_layer_reader(blob)
                    stats = apply_layer(tar, target, overlay=True, limits=Limits())
                    # Drain to the end so the verifying reader checks the blob's digest.
                    while tar.read(1 << 20):
                        pass
                return stats.diff_id

            path = unpack_snapshot(snapshots_root, layer.diff_id, unpack)
            store.put_snapshot(layer.diff_id, _tree_size(path))
        dirs.append(store.snapshot_path(layer.diff_id))
    return dirs
