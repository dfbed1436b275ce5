"""A busybox rootfs for runtime tests: built from the host's busybox-static, never pulled."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

APPLETS = (
    "sh",
    "ls",
    "cat",
    "id",
    "echo",
    "touch",
    "rm",
    "mkdir",
    "pwd",
    "sleep",
    "true",
    "hostname",
    "env",
)


def make_rootfs(root: Path, *, with_etc: bool = True) -> Path:
    """A minimal image root: /bin/busybox and applet links, users root, app (1000), guest."""
    (root / "bin").mkdir(parents=True)
    busybox = shutil.which("busybox") or "/bin/busybox"
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in APPLETS:
        os.symlink("busybox", root / "bin" / applet)
    (root / "tmp").mkdir(mode=0o1777)
    os.chmod(root / "tmp", 0o1777)
    if with_etc:
        (root / "etc").mkdir()
        (root / "etc" / "passwd").write_text(
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
        )
        (root / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nstaff:x:50:app\n")
    return root
