"""Where a file system puts new snapshots: ``snapshots/`` flagged as the top of a
directory hierarchy (ext4's ``chattr +T``, see layers/_inodeflags), so each directory
made in it (a step's scratch, an unpack's staging) is placed as a top-level directory
is, and the files a step makes land away from what the step before just deleted.
"""

from __future__ import annotations

import os
from pathlib import Path

from lamina.layers import TOP_DIRECTORY, inode_flags, set_inode_flags


def spread_new_directories(directory: Path) -> bool:
    """Mark `directory` (ext4) so that directories made in it are spread as top-level
    ones. True if it is marked; False where the file system has no such flag (nothing
    changes there). Idempotent: the flag stays on the directory."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        flags = inode_flags(fd)
        if flags is None:
            return False
        return bool(flags & TOP_DIRECTORY) or set_inode_flags(fd, flags | TOP_DIRECTORY)
    finally:
        os.close(fd)
