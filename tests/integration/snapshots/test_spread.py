"""snapshots/ carries ext4's top-of-hierarchy flag, so that a step's new files are
allocated away from what was just deleted (see lamina.snapshots._spread)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from lamina.snapshots import spread_new_directories


def _attrs(path: Path) -> str:
    out = subprocess.run(["lsattr", "-d", str(path)], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def _is_ext4(path: Path) -> bool:
    out = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True,
                         text=True, check=True)  # fmt: skip
    return out.stdout.strip() in ("ext2/ext3", "ext4")


def test_the_flag_is_set_once_and_kept(tmp_path: Path) -> None:
    target = tmp_path / "snapshots"
    target.mkdir()
    assert "T" not in _attrs(target)
    if not _is_ext4(tmp_path):  # elsewhere: nothing to set, nothing fails
        assert not spread_new_directories(target)
        return
    assert spread_new_directories(target)
    assert "T" in _attrs(target)
    assert spread_new_directories(target)  # already there: nothing else changes
    assert "T" in _attrs(target)


def test_a_file_system_without_the_flag_is_left_alone(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    target = shm / f"lamina-spread-{tmp_path.name}"
    target.mkdir()
    try:
        assert not spread_new_directories(target)
        assert not spread_new_directories(tmp_path / "missing")
    finally:
        target.rmdir()
