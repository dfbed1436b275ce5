"""A layer tar unpacked into a snapshot with its tar-split record, as the store keeps one."""

from __future__ import annotations

import io
from pathlib import Path

from lamina.layers import SplitRecorder, apply_layer


def unpack_with_record(data: bytes, snap: Path, record: Path) -> str:
    """Apply the tar `data` into the new directory `snap`, its record written to `record`;
    returns the layer's diff_id."""
    snap.mkdir()
    with open(record, "wb") as f:
        recorder = SplitRecorder(f)
        stats = apply_layer(io.BytesIO(data), snap, overlay=True, record=recorder)
        recorder.close()
    return stats.diff_id
