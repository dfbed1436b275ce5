"""Scoped resolution: symlinks inside a rootfs never lead out of it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lamina.errors import InvalidInputError, NotFoundError
from lamina.layers import read_file_in_root, require_file_in_root, resolve_in_root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("inside\n")
    (tmp_path / "outside").write_text("host secret\n")
    return r


def test_plain_path_resolves_to_itself(root: Path) -> None:
    assert resolve_in_root(root, "/etc/passwd").path() == "/etc/passwd"
    assert resolve_in_root(root, "/etc/passwd").missing == ()


def test_absolute_symlink_is_scoped_to_the_root(root: Path) -> None:
    (root / "etc" / "link").symlink_to("/etc/passwd")
    assert read_file_in_root(root, "/etc/link", 100) == b"inside\n"


def test_dotdot_symlink_stops_at_the_root(root: Path) -> None:
    # ../../../outside from /etc resolves to /outside in the root, which does not exist.
    (root / "etc" / "escape").symlink_to("../../../outside")
    assert resolve_in_root(root, "/etc/escape").path() == "/outside"
    assert read_file_in_root(root, "/etc/escape", 100) is None


def test_symlinked_directory_on_the_way_is_scoped(root: Path) -> None:
    (root / "up").symlink_to("../..")
    assert read_file_in_root(root, "/up/etc/passwd", 100) == b"inside\n"


def test_missing_tail_is_kept(root: Path) -> None:
    r = resolve_in_root(root, "/etc/a/b")
    assert r.existing == ("etc",)
    assert r.missing == ("a", "b")


def test_dangling_symlink_leads_to_its_target(root: Path) -> None:
    (root / "etc" / "resolv.conf").symlink_to("../run/resolve/stub.conf")
    r = resolve_in_root(root, "/etc/resolv.conf")
    assert r.existing == ()
    assert r.missing == ("run", "resolve", "stub.conf")


def test_symlink_loop_is_an_error(root: Path) -> None:
    (root / "a").symlink_to("b")
    (root / "b").symlink_to("a")
    with pytest.raises(InvalidInputError, match="too many levels of symbolic links"):
        resolve_in_root(root, "/a")


def test_size_limit_is_enforced(root: Path) -> None:
    with pytest.raises(InvalidInputError, match="larger"):
        read_file_in_root(root, "/etc/passwd", 3)


def test_fifo_is_not_read(root: Path) -> None:
    os.mkfifo(root / "etc" / "group")
    with pytest.raises(InvalidInputError, match="not a regular file"):
        read_file_in_root(root, "/etc/group", 100)


def test_directory_is_not_read(root: Path) -> None:
    # A RUN can leave a directory at /etc/passwd; reading it was an IsADirectoryError
    # traceback (from fdopen) instead of this error.
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").mkdir()
    with pytest.raises(InvalidInputError, match="not a regular file"):
        read_file_in_root(root, "/etc/passwd", 100)


def test_require_names_the_missing_file(root: Path) -> None:
    with pytest.raises(NotFoundError, match="/etc/shadow"):
        require_file_in_root(root, "/etc/shadow", 100)
