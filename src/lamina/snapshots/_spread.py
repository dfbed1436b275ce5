"""Where a file system puts new snapshots: ext4's "top of a directory hierarchy" flag.

ext4 creates a file's inode in its directory's block group, and a subdirectory's near
its parent's. A journal-less ext4 (as on many VMs) also skips, one by one, every inode
of that group deleted within the last minute or more (``recently_deleted`` in its inode
allocator): right after a big tree was removed there, creating each new file scans past
thousands of them, which measured here as most of the CPU a 50,000-file RUN or COPY
costs. With ``FS_TOPDIR_FL`` (``chattr +T``) on ``snapshots/``, each directory made in
it (a step's scratch, an unpack's staging) is placed as a top-level directory is (Orlov:
a group with free inodes and blocks above the average), so the files a step makes land
away from what was just deleted, and snapshots spread over the disk.
"""

from __future__ import annotations

import array
import fcntl
import os
from pathlib import Path

_FS_TOPDIR_FL = 0x00020000
_LONG = array.array("l").itemsize


def _ioc(direction: int, nr: int) -> int:
    return direction << 30 | _LONG << 16 | ord("f") << 8 | nr


_GETFLAGS = _ioc(2, 1)  # _IOR('f', 1, long)
_SETFLAGS = _ioc(1, 2)  # _IOW('f', 2, long)


def spread_new_directories(directory: Path) -> bool:
    """Mark `directory` (ext4) so that directories made in it are spread as top-level
    ones. True if it is marked; False where the file system has no such flag (nothing
    changes there). Idempotent: the flag stays on the directory."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        flags = array.array("i", [0, 0])
        fcntl.ioctl(fd, _GETFLAGS, flags, True)
        if flags[0] & _FS_TOPDIR_FL:
            return True
        flags[0] |= _FS_TOPDIR_FL
        fcntl.ioctl(fd, _SETFLAGS, flags, True)
        return True
    except OSError:
        return False  # not ext2/3/4 (ENOTTY, EOPNOTSUPP), or not allowed
    finally:
        os.close(fd)
