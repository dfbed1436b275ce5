"""Where things live under a store root: the one place that spells the on-disk scheme."""

from __future__ import annotations

from pathlib import Path

from lamina.oci import digest_hex

SNAPSHOTS = "snapshots"


def snapshot_path(snapshots_dir: Path, diff_id: str) -> Path:
    """`snapshots/<diff_id hex>`: where the layer `diff_id` is (or will be) unpacked.

    The diff_id is checked (`sha256:` and 64 hex digits), so no name can lead elsewhere.
    """
    return snapshots_dir / digest_hex(diff_id)
