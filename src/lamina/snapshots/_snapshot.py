"""`snapshots/<diff_id hex>/`: one layer unpacked in overlay format, created atomically."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from lamina._rmtree import remove_tree
from lamina.errors import DigestMismatchError
from lamina.oci import check_digest, short_id
from lamina.store import snapshot_path


def unpack_snapshot(snapshots_root: Path, diff_id: str, unpack: Callable[[Path], str]) -> Path:
    """Create the snapshot of `diff_id` by `unpack(tmpdir)` and return its directory.

    `unpack` fills the empty directory it is given and returns the diff_id it computed while
    reading. The directory becomes visible only when that equals `diff_id`, by one rename; on
    any failure it is removed. An existing snapshot is returned as is (another process may have
    won the race: same content, same name).
    """
    check_digest(diff_id, "diff_id")
    final = snapshot_path(snapshots_root, diff_id)
    if final.is_dir():
        return final
    snapshots_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{short_id(diff_id)}-", dir=snapshots_root))
    try:
        # mkdtemp makes 0700; a layer's root is 0755 unless the layer itself says otherwise.
        os.chmod(tmp, 0o755)
        actual = unpack(tmp)
        if actual != diff_id:
            raise DigestMismatchError(
                f"layer {diff_id}: unpacked content's diff_id", diff_id, actual
            )
        try:
            os.rename(tmp, final)
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            shutil.rmtree(tmp)
        return final
    except BaseException:
        remove_tree(tmp)
        raise
