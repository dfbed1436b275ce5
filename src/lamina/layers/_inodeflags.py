"""A directory's inode flags (``lsattr``/``chattr``), for ext4's top-of-hierarchy hint.

ext4 creates a file's inode in its directory's block group, and a subdirectory's near
its parent's. A journal-less ext4 (as on many VMs) also skips, one by one, every inode
of that group deleted within the last minute or more (``recently_deleted`` in its inode
allocator): right after a big tree was removed there, each new file's creation scans
past thousands of them. A directory flagged ``FS_TOPDIR_FL`` (``chattr +T``) has its
subdirectories placed as top-level ones are (Orlov: a group with free inodes and blocks
above the average), so a tree filled below it lands away from what was just deleted.
A hint only: where the file system has no such flag, nothing changes.
"""

from __future__ import annotations

import array
import fcntl

TOP_DIRECTORY = 0x00020000  # FS_TOPDIR_FL
_LONG = array.array("l").itemsize


def _ioc(direction: int, nr: int) -> int:
    return direction << 30 | _LONG << 16 | ord("f") << 8 | nr


_GETFLAGS = _ioc(2, 1)  # _IOR('f', 1, long); the kernel reads and writes an int
_SETFLAGS = _ioc(1, 2)  # _IOW('f', 2, long)


def inode_flags(fd: int) -> int | None:
    """The flags of the open file `fd`; None where the file system keeps none."""
    flags = array.array("i", [0, 0])
    try:
        fcntl.ioctl(fd, _GETFLAGS, flags, True)
    except OSError:
        return None  # not ext2/3/4 and the like (ENOTTY, EOPNOTSUPP)
    return flags[0]


def set_inode_flags(fd: int, value: int) -> bool:
    """Set the flags of `fd`; False where that is not possible (nothing changed)."""
    try:
        fcntl.ioctl(fd, _SETFLAGS, array.array("i", [value, 0]), True)
    except OSError:
        return False
    return True


def mark_top_directory(fd: int) -> int | None:
    """Flag the open directory `fd` as the top of a hierarchy (``chattr +T``) if it is
    not yet: its flags before, or None where the file system cannot flag it."""
    flags = inode_flags(fd)
    if flags is None:
        return None
    if flags & TOP_DIRECTORY or set_inode_flags(fd, flags | TOP_DIRECTORY):
        return flags
    return None
