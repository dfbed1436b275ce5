"""lamina._rmtree: a tree of any depth is removed without recursing, read-only directories
and all, and a symlink in it is removed, never followed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lamina._rmtree import remove_dir


def _deep(top: Path, depth: int, outside: Path) -> Path:
    """``top`` holding ``depth`` nested directories, some read-only, with links out."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for level in range(depth):
        os.mkdir("d", dir_fd=fd)
        below = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = below
        if level % 400 == 0:
            os.symlink(outside, "out", dir_fd=fd)
            os.close(os.open("f", os.O_CREAT | os.O_WRONLY, 0o400, dir_fd=fd))
            os.fchmod(fd, 0o555)  # read-only: made writable on the way down
    os.close(fd)
    return top


def test_a_tree_deeper_than_the_recursion_limit_is_removed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("kept")
    top = _deep(tmp_path / "top", sys.getrecursionlimit() + 500, outside)
    remove_dir(str(top))
    assert not top.exists()
    assert (outside / "keep").read_text() == "kept"


def test_a_missing_directory_is_no_error(tmp_path: Path) -> None:
    remove_dir(str(tmp_path / "nothing"))
    assert list(tmp_path.iterdir()) == []
