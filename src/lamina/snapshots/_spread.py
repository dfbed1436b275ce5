"""Where a file system puts new snapshots: ``snapshots/`` flagged as the top of a
directory hierarchy (ext4's ``chattr +T``, see layers/_inodeflags), so each directory
made in it (a step's scratch, an unpack's staging) is placed as a top-level directory
is, and the files a step makes land away from what the step before just deleted.
"""

from __future__ import annotations

import os

from lamina.layers import mark_top_directory

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    from lamina._paths import StrPath


def spread_new_directories(directory: StrPath) -> bool:
    """Mark `directory` (ext4) so that directories made in it are spread as top-level
    ones. True if it is marked; False where the file system has no such flag (nothing
    changes there). Idempotent: the flag stays on the directory."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return mark_top_directory(fd) is not None
    finally:
        os.close(fd)
