"""The snapshotter: it alone lays out `snapshots/`, and returns mounts as values.

Like containerd's snapshotter, it knows directories and diff_ids, never images::

    snaps = Snapshotter(root / "snapshots")
    snaps.path(diff_id), snaps.record_path(diff_id)   # the layer and its tar-split record
    snaps.exists(diff_id)                              # both there
    m = snaps.view([d1, d2])                           # read-only stack (bottom first) → Mount
    m = snaps.prepare([d1, d2], upper, work)           # read-write over it → Mount
    snaps.commit(diff_id, staging_dir, record_tmp)     # publish atomically (record first)
    snaps.remove(diff_id)                              # renamed aside, then deleted

What holds a snapshot (images, cache records, leases) is the metadata store's business;
`lamina.store` records them and its `prune` sweeps what nothing holds.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from lamina._rmtree import remove_tree
from lamina.oci import check_digest, digest_hex, short_id
from lamina.snapshots._mount import Mount, overlay_mount

# The on-disk scheme is spelled once, in the store's layout module (issue 7's rule);
# the snapshotter uses it and nothing else of the store.
from lamina.store import RECORD_SUFFIX, record_path, snapshot_path


class Snapshotter:
    """The snapshots under one directory (`$LAMINA_ROOT/snapshots`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, diff_id: str) -> Path:
        """The layer's directory (an overlayfs lowerdir)."""
        return snapshot_path(self.root, diff_id)

    def record_path(self, diff_id: str) -> Path:
        """Its tar-split record, beside it: the lowerdir holds only the layer."""
        return record_path(self.root, diff_id)

    def exists(self, diff_id: str) -> bool:
        """Whether the snapshot and its record are both there."""
        return self.path(diff_id).is_dir() and self.record_path(diff_id).is_file()

    def record_staging(self, diff_id: str | None = None) -> Path:
        """A fresh name for a record being written (staged names are swept when stale)."""
        label = short_id(diff_id) if diff_id else "new"
        return self.root / f".tmp-{label}-{secrets.token_hex(6)}{RECORD_SUFFIX}"

    def commit(self, diff_id: str, staging: Path | None, record: Path) -> bool:
        """Publish a staged directory (None: the directory is there already, from before
        records existed) and its record under `diff_id`. The record goes first, so a
        visible snapshot always has one. False (and the staged files removed) if another
        process published the same layer first: same content, same name."""
        check_digest(diff_id, "diff_id")
        target = self.path(diff_id)
        if staging is not None and target.is_dir() and self.record_path(diff_id).is_file():
            _discard(staging, record)
            return False
        os.rename(record, self.record_path(diff_id))
        if staging is None:
            return True
        try:
            os.rename(staging, target)
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            _discard(staging, None)
            return False
        return True

    def remove(self, diff_id: str) -> None:
        """Delete a snapshot (gc): the record first, then the directory renamed aside, so a
        half-deleted tree never sits under a layer's name."""
        with contextlib.suppress(FileNotFoundError):
            self.record_path(diff_id).unlink()
        target = self.path(diff_id)
        if target.exists():
            trash = self.root / f".trash-{digest_hex(diff_id)}-{secrets.token_hex(4)}"
            os.rename(target, trash)
            remove_tree(trash)

    def view(self, diff_ids: Sequence[str]) -> Mount:
        """A read-only mount of the stack `diff_ids` (bottom first, as a config lists them)."""
        return overlay_mount([self.path(d) for d in reversed(diff_ids)])

    def prepare(self, diff_ids: Sequence[str], upper: Path, work: Path) -> Mount:
        """A read-write mount over the stack: changes land in `upper` (on this file system)."""
        return overlay_mount([self.path(d) for d in reversed(diff_ids)], upper, work)


def _discard(staging: Path | None, record: Path | None) -> None:
    if staging is not None:
        remove_tree(staging)
    if record is not None:
        with contextlib.suppress(FileNotFoundError):
            record.unlink()
