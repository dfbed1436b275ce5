"""Mount-point stubs: found before a run, removed from the upper dir only while empty."""

from __future__ import annotations

import os
from pathlib import Path

from lamina.snapshots import clean_upper, find_stubs


def test_existing_targets_are_no_stubs(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hosts").write_text("x")
    assert find_stubs(tmp_path, ["/etc/hosts"]) == []


def test_missing_target_and_parents_are_stubs(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    stubs = find_stubs(tmp_path, ["/etc/hosts", "/run/secrets/token", "/run/secrets/other"])
    assert stubs == [
        "/etc/hosts",
        "/run",
        "/run/secrets",
        "/run/secrets/token",
        "/run/secrets/other",
    ]


def test_stub_behind_a_symlink_is_where_runc_creates_it(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "resolv.conf").symlink_to("/run/stub.conf")
    assert find_stubs(tmp_path, ["/etc/resolv.conf"]) == ["/run", "/run/stub.conf"]


def test_empty_stubs_are_removed_deepest_first(tmp_path: Path) -> None:
    (tmp_path / "run" / "secrets").mkdir(parents=True)
    (tmp_path / "run" / "secrets" / "token").touch()
    removed = clean_upper(tmp_path, ["/run", "/run/secrets", "/run/secrets/token"])
    assert removed == ["/run/secrets/token", "/run/secrets", "/run"]
    assert list(tmp_path.iterdir()) == []


def test_stub_the_step_wrote_to_stays(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "token").write_text("written by the step")
    (tmp_path / "run" / "other").touch()
    removed = clean_upper(tmp_path, ["/run", "/run/token", "/run/other"])
    assert removed == ["/run/other"]
    assert (tmp_path / "run" / "token").read_text() == "written by the step"


def test_parent_not_a_stub_stays_without_lowers(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hosts").touch()
    assert clean_upper(tmp_path, ["/etc/hosts"]) == ["/etc/hosts"]
    assert (tmp_path / "etc").is_dir()


def test_copied_up_parent_goes_when_the_lower_has_it_unchanged(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc" / "passwd").write_text("root")
    (upper / "etc").mkdir(parents=True)
    os.chmod(upper / "etc", os.stat(lower / "etc").st_mode & 0o7777)
    (upper / "etc" / "hosts").touch()
    (upper / "etc" / "resolv.conf").touch()
    removed = clean_upper(upper, ["/etc/hosts", "/etc/resolv.conf"], [lower])
    assert removed == ["/etc/hosts", "/etc/resolv.conf", "/etc"]
    assert list(upper.iterdir()) == []


def test_copied_up_parent_with_new_mode_stays(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "etc").mkdir(parents=True)
    (upper / "etc").mkdir(parents=True)
    os.chmod(lower / "etc", 0o755)
    os.chmod(upper / "etc", 0o700)
    (upper / "etc" / "hosts").touch()
    assert clean_upper(upper, ["/etc/hosts"], [lower]) == ["/etc/hosts"]
    assert (upper / "etc").is_dir()


def test_symlinked_parent_in_upper_is_not_followed(tmp_path: Path) -> None:
    upper, outside = tmp_path / "upper", tmp_path / "outside"
    upper.mkdir()
    outside.mkdir()
    (outside / "hosts").touch()
    (upper / "etc").symlink_to(outside)
    assert clean_upper(upper, ["/etc/hosts"]) == []
    assert (outside / "hosts").exists()


def test_symlink_stub_itself_is_not_removed(tmp_path: Path) -> None:
    (tmp_path / "hosts").symlink_to("/nonexistent")
    assert clean_upper(tmp_path, ["/hosts"]) == []
    assert (tmp_path / "hosts").is_symlink()
