"""USER resolution from the image's own passwd and group files.

Without `:group`, the primary gid is among the process's groups too, as containerd's
WithAdditionalGIDs makes it (BuildKit's testUserAdditionalGids)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lamina.errors import InvalidInputError, NotFoundError
from lamina.runtime import resolve_user


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    etc = tmp_path / "rootfs" / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text(
        "# comment\n"
        "root:x:0:0:root:/root:/bin/sh\n"
        "broken line\n"
        "app:x:1000:1001::/home/app:/bin/sh\n"
        "svc:x:999:999::/:/sbin/nologin\n"
    )
    (etc / "group").write_text(
        "root:x:0:\nappgrp:x:1001:\nstaff:x:50:app,svc\nwheel:x:10:app\ndocker:x:998:svc\n"
    )
    return tmp_path / "rootfs"


def test_empty_is_root(rootfs: Path) -> None:
    assert resolve_user(rootfs, "") == (0, 0, (0,))


def test_name_gets_primary_and_member_groups(rootfs: Path) -> None:
    assert resolve_user(rootfs, "app") == (1000, 1001, (1001, 50, 10))


def test_uid_matching_an_entry_uses_it(rootfs: Path) -> None:
    assert resolve_user(rootfs, "999") == (999, 999, (999, 50, 998))


def test_uid_without_entry_gets_gid_0(rootfs: Path) -> None:
    assert resolve_user(rootfs, "4242") == (4242, 0, (0,))


def test_explicit_group_by_name_or_number(rootfs: Path) -> None:
    assert resolve_user(rootfs, "app:staff") == (1000, 50, (50,))
    assert resolve_user(rootfs, "app:77") == (1000, 77, (77,))
    assert resolve_user(rootfs, "5:6") == (5, 6, (6,))


def test_unknown_user_names_it(rootfs: Path) -> None:
    with pytest.raises(NotFoundError, match="unable to find user ghost"):
        resolve_user(rootfs, "ghost")


def test_unknown_group_names_it(rootfs: Path) -> None:
    with pytest.raises(NotFoundError, match="unable to find group ghosts"):
        resolve_user(rootfs, "app:ghosts")


def test_no_passwd_file_allows_numbers_only(tmp_path: Path) -> None:
    assert resolve_user(tmp_path, "12") == (12, 0, (0,))
    with pytest.raises(NotFoundError):
        resolve_user(tmp_path, "app")


def test_out_of_range_uid_is_refused(rootfs: Path) -> None:
    with pytest.raises(InvalidInputError, match="out of range"):
        resolve_user(rootfs, str(2**32))


def test_passwd_symlink_out_of_the_rootfs_is_scoped(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (tmp_path / "host-passwd").write_text("hostonly:x:7:7::/:/bin/sh\n")
    (root / "etc" / "passwd").symlink_to("../../host-passwd")
    with pytest.raises(NotFoundError, match="hostonly"):
        resolve_user(root, "hostonly")


@pytest.mark.parametrize(
    ("user", "home"),
    [("", "/root"), ("app", "/home/app"), ("app:staff", "/home/app"), ("1000", "/home/app"),
     ("4242", "/"), ("svc", "/")],
)  # fmt: skip
def test_user_and_home_from_one_reading_agree_with_each_alone(
    rootfs: Path, user: str, home: str
) -> None:
    from lamina.runtime import home_dir, resolve_user_home

    found, found_home = resolve_user_home(rootfs, user)
    assert found == resolve_user(rootfs, user)
    assert found_home == home_dir(rootfs, found.uid) == home


def test_user_and_home_refuse_an_unknown_name(rootfs: Path) -> None:
    from lamina.runtime import resolve_user_home

    with pytest.raises(NotFoundError, match="unable to find user nobody"):
        resolve_user_home(rootfs, "nobody")
