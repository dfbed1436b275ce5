"""The one base rootfs every integration suite builds from: Debian's busybox-static,
its applets as symlinks, users root and app (1000, in group staff). Never pulled."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
APPLETS = [
    "sh",
    "cat",
    "chmod",
    "chown",
    "cp",
    "dd",
    "echo",
    "env",
    "false",
    "find",
    "grep",
    "head",
    "hostname",
    "id",
    "ln",
    "ls",
    "md5sum",
    "mkdir",
    "mv",
    "printf",
    "pwd",
    "readlink",
    "rm",
    "rmdir",
    "sed",
    "seq",
    "sha256sum",
    "sleep",
    "sort",
    "stat",
    "tail",
    "test",
    "touch",
    "tr",
    "true",
    "uname",
    "wc",
]


def make_busybox_rootfs(root: Path, *, with_etc: bool = True) -> Path:
    """Fill `root` (created) with a minimal image root and return it."""
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "tmp").mkdir(mode=0o1777)
    os.chmod(root / "tmp", 0o1777)
    if with_etc:
        (root / "etc").mkdir()
        (root / "root").mkdir(mode=0o700)
        (root / "home" / "app").mkdir(parents=True)
        os.chown(root / "home" / "app", 1000, 1000)
        (root / "etc" / "passwd").write_text(
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
        )
        (root / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nstaff:x:50:app\n")
    return root
