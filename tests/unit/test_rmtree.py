"""lamina._rmtree.remove_tree: any depth, any width, symlinks never followed, read-only
directories, a handful of fds."""

from __future__ import annotations

import os
import resource
from pathlib import Path

from lamina._rmtree import remove_tree


def _chain(top: Path, depth: int) -> None:
    """`top/d/d/.../d` `depth` levels deep, with a file at the bottom (made by fds: the
    path gets longer than PATH_MAX)."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        sub = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = sub
    os.close(os.open("bottom", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    os.close(fd)


def test_a_tree_deeper_than_the_recursion_limit_and_than_the_fd_limit(tmp_path: Path) -> None:
    _chain(tmp_path / "deep", 1500)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))  # a chain of fds would not fit
    try:
        remove_tree(tmp_path / "deep")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert not (tmp_path / "deep").exists()


def test_a_wide_tree_with_files_links_and_read_only_directories(tmp_path: Path) -> None:
    top = tmp_path / "wide"
    for i in range(100):
        sub = top / f"dir{i}" / "inner"
        sub.mkdir(parents=True)
        (sub / "file").write_text("x")
        os.symlink("/", sub / "root-link")
        os.mkfifo(sub / "fifo")
        sub.chmod(0o555)
        (top / f"dir{i}").chmod(0o500)
    (top / "dir0" / "inner").chmod(0)
    remove_tree(top)
    assert not top.exists()


def test_symlinks_are_removed_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "sentinel").write_text("stay")
    top = tmp_path / "top"
    top.mkdir()
    os.symlink(outside, top / "to-dir")
    os.symlink(outside / "keep" / "sentinel", top / "to-file")
    remove_tree(top)
    assert not top.exists()
    assert (outside / "keep" / "sentinel").read_text() == "stay"
    os.symlink(outside, tmp_path / "link")  # the path itself a link: the link goes
    remove_tree(tmp_path / "link")
    assert not os.path.lexists(tmp_path / "link") and (outside / "keep" / "sentinel").exists()


def test_a_file_or_nothing_at_the_path(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    remove_tree(tmp_path / "f")
    assert not (tmp_path / "f").exists()
    remove_tree(tmp_path / "missing")  # no error
    remove_tree(str(tmp_path / "missing"))
