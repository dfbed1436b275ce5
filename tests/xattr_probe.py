"""Whether a directory's file system takes user xattrs (tmpfs and some overlays do not)."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def xattrs_supported(where: Path) -> bool:
    probe = where / "xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.lamina", b"1")
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return False
        raise
    finally:
        probe.unlink()
    return True
