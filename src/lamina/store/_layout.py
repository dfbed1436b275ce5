"""Where things live under a store root: the one place that spells the on-disk scheme."""

from __future__ import annotations

from pathlib import Path

from lamina.oci import digest_hex

SNAPSHOTS = "snapshots"
BLOBS = "blobs/sha256"


def blob_path(root: Path, digest: str) -> Path:
    """`blobs/sha256/<hex>` under the store root: where the blob `digest` is kept (the
    digest is checked, so no name can lead elsewhere)."""
    return root / BLOBS / digest_hex(digest)


def snapshot_path(snapshots_dir: Path, diff_id: str) -> Path:
    """`snapshots/<diff_id hex>`: where the layer `diff_id` is (or will be) unpacked.

    The diff_id is checked (`sha256:` and 64 hex digits), so no name can lead elsewhere.
    """
    return snapshots_dir / digest_hex(diff_id)


RECORD_SUFFIX = ".tar-split"


def record_path(snapshots_dir: Path, diff_id: str) -> Path:
    """`snapshots/<diff_id hex>.tar-split`: the record of that layer's exact tar stream,
    beside its snapshot (not in it: the snapshot is an overlayfs lowerdir)."""
    return snapshots_dir / (digest_hex(diff_id) + RECORD_SUFFIX)
