"""Helpers for end-to-end tests: tree listings of what a tree holds."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def tree_listing(root: Path) -> dict[str, tuple[object, ...]]:
    """What a tree holds, path by path: type, mode, owner, and content or link target.

    Times are left out: tools differ in how they clamp them, and a layer's meaning
    does not depend on them.
    """
    listing: dict[str, tuple[object, ...]] = {}
    for top, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = os.path.join(top, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            kind = stat.S_IFMT(st.st_mode)
            detail: object = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    detail = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                detail = os.readlink(path)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                detail = st.st_rdev
            listing[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, detail)
    return listing


def outside_listing(*dirs: Path) -> dict[str, tuple[object, ...]]:
    """A listing of places a hostile input must never touch."""
    out: dict[str, tuple[object, ...]] = {}
    for d in dirs:
        if d.exists():
            out.update({f"{d}/{k}": v for k, v in tree_listing(d).items()})
    return out
