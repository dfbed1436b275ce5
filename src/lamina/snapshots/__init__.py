"""Snapshots: layers unpacked on disk, and the overlay mounts that stack them.

This package never knows what an image is: it deals in directories, diff_ids and mounts.
It does not import ``lamina.store``: ``Snapshotter`` alone lays out ``snapshots/`` (paths,
atomic commit, remove, mounts as values), and unpacking asks the metadata store only for
what ``LayerStore`` names.

Terms
-----
snapshot
    One layer unpacked in overlay format under ``snapshots/<diff_id hex>/``: whiteouts are 0:0
    character devices, an opaque directory carries ``trusted.overlay.opaque=y``. Immutable once
    it exists; usable as an overlayfs lowerdir.
lowerdirs
    The snapshots of a stack, **top first** (the order overlayfs wants; the reverse of an image
    config's ``diff_ids``).
upper, work
    A container's (or a RUN step's) own read-write dir and overlayfs' scratch dir, on the same
    file system. The upper dir ends up holding exactly what changed, in overlay format.
Mount
    A mount as a value (type, source, options), like containerd's ``mount.Mount``: functions
    return descriptions; only ``mount``/``unmount``/``mounted`` act.
stub
    A file or directory runc creates only to mount something on it (``/etc/hosts``,
    ``/etc/resolv.conf``, a bind-mount target). Not a change of the step.

Importing a layer
-----------------
The snapshot is the layer's one copy. ``unpack_layer(store, lease, diff_id, tar)`` applies
an uncompressed tar stream into the new snapshot and writes its tar-split record beside it
(``store.record_path(diff_id)``) in the same pass; ``ensure_snapshots(store, layers, lease)``
returns each layer's directory, unpacking a kept blob when the snapshot is missing.

``unpack_snapshot(root / "snapshots", diff_id, unpack)`` makes an empty temporary directory
beside the others and calls ``unpack(tmp)`` (normally ``lamina.layers.apply_layer`` in overlay
mode, returning the diff_id it hashed). If that equals ``diff_id`` the directory is renamed into
place in one step; otherwise it is removed and DigestMismatchError raised. Already there: the
existing snapshot is returned and ``unpack`` is not called.

Running a container (or a RUN step)
-----------------------------------
1. ``m = overlay_mount([snapshot_path(s, d) for d in reversed(diff_ids)], upper, work)``;
   the upper dir should be made 0755: the merged root takes its mode.
2. ``with mounted(m, merged):`` — any number of layers (up to overlayfs' 500): long option
   strings are shortened with relative names, so depth is not capped by the page-size limit.
3. ``stubs = find_stubs(merged, ["/etc/hosts", "/etc/resolv.conf", *bind_targets])`` before
   the run; run the process on ``merged`` (``lamina.runtime``); leave the ``with`` (unmounted).
4. ``clean_upper(upper, stubs, lowerdirs)``: the upper dir now holds exactly the step's changes
   and can be written as a layer.

A read-only view (no upper) is the same without step 3-4. Without overlayfs,
``materialize(lowerdirs, target)`` copies the stack into a plain directory instead.
"""


from lamina._lazy import lazy_names
from lamina.snapshots._mount import (
    MAX_LOWERDIRS,
    Mount,
    is_mountpoint,
    mount,
    mount_points,
    mounted,
    overlay_mount,
    unmount,
)
from lamina.snapshots._stubs import clean_upper, find_stubs
from lamina.store import RECORD_SUFFIX

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    from lamina.snapshots._materialize import materialize
    from lamina.snapshots._prepare import (
        LayerRef,
        LayerStore,
        SnapshotLease,
        ensure_snapshots,
        record_tmp_path,
        unpack_blob,
        unpack_layer,
    )
    from lamina.snapshots._snapshot import unpack_snapshot
    from lamina.snapshots._snapshotter import Snapshotter
    from lamina.snapshots._spread import spread_new_directories

# Loaded on first use: mounting a container's layers (`lamina run`) needs none of the
# unpacking code, nor the tar readers and compressors behind it.
_LAZY = {
    "materialize": "lamina.snapshots._materialize",
    "LayerRef": "lamina.snapshots._prepare",
    "LayerStore": "lamina.snapshots._prepare",
    "SnapshotLease": "lamina.snapshots._prepare",
    "ensure_snapshots": "lamina.snapshots._prepare",
    "record_tmp_path": "lamina.snapshots._prepare",
    "unpack_blob": "lamina.snapshots._prepare",
    "unpack_layer": "lamina.snapshots._prepare",
    "unpack_snapshot": "lamina.snapshots._snapshot",
    "Snapshotter": "lamina.snapshots._snapshotter",
    "spread_new_directories": "lamina.snapshots._spread",  # (and the inode flags' ioctl)
}


__all__ = [
    "RECORD_SUFFIX",
    "LayerRef",
    "LayerStore",
    "SnapshotLease",
    "Snapshotter",
    "MAX_LOWERDIRS",
    "Mount",
    "clean_upper",
    "ensure_snapshots",
    "record_tmp_path",
    "unpack_blob",
    "unpack_layer",
    "find_stubs",
    "is_mountpoint",
    "materialize",
    "mount",
    "mount_points",
    "mounted",
    "overlay_mount",
    "spread_new_directories",
    "unmount",
    "unpack_snapshot",
]

__getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__, globals())
