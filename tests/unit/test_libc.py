"""`lamina._libc`: mount(2), umount2(2) and prctl(2) through `_ctypes`, errno on failure,
arguments of the wrong kind refused, and no `ctypes` package loaded."""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lamina import _libc

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_failures_come_back_as_the_errno(tmp_path: Path) -> None:
    expected = errno.EINVAL if os.geteuid() == 0 else errno.EPERM
    assert _libc.umount2(os.fsencode(tmp_path), 0) == expected  # not a mount point
    missing = os.fsencode(tmp_path / "missing")
    assert _libc.umount2(missing, 0) == (errno.ENOENT if os.geteuid() == 0 else errno.EPERM)
    assert _libc.mount(b"none", missing, b"tmpfs", 0, None) in (errno.ENOENT, errno.EPERM)
    assert _libc.prctl(-1) == errno.EINVAL  # no such option


def test_arguments_must_fit_the_c_types(tmp_path: Path) -> None:
    with pytest.raises(ctypes.ArgumentError):
        _libc.umount2(str(tmp_path), 0)  # type: ignore[arg-type]  # a str is no char *
    with pytest.raises(ctypes.ArgumentError):
        _libc.mount(None, os.fsencode(tmp_path), None, "ro", None)  # type: ignore[arg-type]


_SUBREAPER = """
import os, sys
sys.path.insert(0, sys.argv[1])
from lamina import _libc
print(_libc.prctl(36, 1))  # PR_SET_CHILD_SUBREAPER
if os.fork() == 0:  # a child that leaves an orphan behind
    if os.fork() == 0:
        os.read(os.open("/dev/zero", os.O_RDONLY), 1)
        os._exit(7)
    os._exit(0)
first, _ = os.wait()
orphan, status = os.wait()  # reparented here, not to init
print(orphan != first, os.waitstatus_to_exitcode(status), "ctypes" in sys.modules)
"""


def test_prctl_makes_this_process_the_reaper_of_its_orphans() -> None:
    done = subprocess.run([sys.executable, "-S", "-c", _SUBREAPER, SRC],
                          capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
    assert done.stdout.split() == ["0", "True", "7", "False"]
