"""Where things live under a store root: the one place that spells the on-disk scheme."""

from __future__ import annotations

from lamina._paths import join
from lamina.oci import digest_hex

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    from lamina._paths import P

SNAPSHOTS = "snapshots"
BLOBS = "blobs/sha256"


def blob_path(root: P, digest: str) -> P:
    """`blobs/sha256/<hex>` under the store root: where the blob `digest` is kept (the
    digest is checked, so no name can lead elsewhere)."""
    return join(root, BLOBS, digest_hex(digest))


def snapshot_path(snapshots_dir: P, diff_id: str) -> P:
    """`snapshots/<diff_id hex>`: where the layer `diff_id` is (or will be) unpacked.

    The diff_id is checked (`sha256:` and 64 hex digits), so no name can lead elsewhere.
    """
    return join(snapshots_dir, digest_hex(diff_id))


RECORD_SUFFIX = ".tar-split"


def record_path(snapshots_dir: P, diff_id: str) -> P:
    """`snapshots/<diff_id hex>.tar-split`: the record of that layer's exact tar stream,
    beside its snapshot (not in it: the snapshot is an overlayfs lowerdir)."""
    return join(snapshots_dir, digest_hex(diff_id) + RECORD_SUFFIX)


INIT_LAYER_PREFIX = "init-"


def init_layer_name(image_digest: str) -> str:
    """`init-<image digest hex>`: the name of an image's init layer under `snapshots/`."""
    return INIT_LAYER_PREFIX + digest_hex(image_digest)


def init_layer_path(snapshots_dir: P, image_digest: str) -> P:
    """`snapshots/init-<image digest hex>`: the image's init layer, which its containers
    share (the stubs runc mounts /etc/hosts, /dev, ... on; `lamina.api`'s containers make
    it). It goes with the image (`remove_image`, `prune`)."""
    return join(snapshots_dir, init_layer_name(image_digest))
