"""`lamina mount` / `umount`: an image as one read-only tree.

A mount is recorded as a container of kind "mount", so the image and its snapshots
stay alive (gc roots) for as long as the mount does.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from lamina.errors import ConflictError, NotFoundError
from lamina.snapshots import is_mountpoint, mount, overlay_mount, unmount
from lamina.store import ImageRecord, Lease, Store


def _mount_name(target: Path) -> str:
    return "mount-" + hashlib.sha256(str(target).encode()).hexdigest()[:16]


def _lowers(store: Store, image: ImageRecord, lease: Lease) -> list[Path]:
    """The image's snapshot dirs, bottom first. All there (a pulled or built image): only
    looked up, so a mount never loads the unpacking code (tar readers, decompressors)."""
    paths = []
    for layer in image.layers:
        lease.add_snapshot(layer.diff_id)
        paths.append(store.snapshot_path(layer.diff_id))
    if all(store.has_layer(layer.diff_id) for layer in image.layers):
        return paths
    from lamina.snapshots import ensure_snapshots

    return ensure_snapshots(store, image.layers, lease)


def mount_image(store: Store, image: ImageRecord, target: Path) -> None:
    target = target.absolute()
    target.mkdir(parents=True, exist_ok=True)
    if is_mountpoint(target):
        raise ConflictError(f"{target} is already a mount point", hint="lamina umount it first")
    name = _mount_name(target)
    with store.lease() as lease:
        if not image.layers:
            raise NotFoundError(f"image {image.id} has no layers to mount")
        lowers = _lowers(store, image, lease)
        store.add_container(name, name, image.digest, {"kind": "mount", "target": str(target)})
    try:
        mount(overlay_mount(list(reversed(lowers))), target, scratch=store.root / "tmp")
    except BaseException:
        store.remove_container(name)
        raise


def unmount_image(store: Store, target: Path) -> None:
    target = target.absolute()
    name = _mount_name(target)
    try:
        record = store.get_container(name)
    except NotFoundError:
        raise NotFoundError(
            f"{target} is not an image lamina mounted", hint="`lamina mount IMAGE DIR` first"
        ) from None
    unmount(target)
    store.remove_container(record.id)
