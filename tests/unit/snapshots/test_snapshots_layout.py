"""Snapshot directories: created whole by one rename, or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from lamina.errors import DigestMismatchError, InvalidInputError
from lamina.snapshots import unpack_snapshot
from lamina.store import snapshot_path

DIFF_ID = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32


def test_snapshot_path_is_named_by_hex(tmp_path: Path) -> None:
    assert snapshot_path(tmp_path, DIFF_ID) == tmp_path / ("ab" * 32)


def test_snapshot_path_refuses_a_non_digest(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        snapshot_path(tmp_path, "sha256:../../etc")


def test_unpack_renames_into_place_when_diff_id_matches(tmp_path: Path) -> None:
    seen: list[Path] = []

    def unpack(d: Path) -> str:
        seen.append(d)
        assert list(d.iterdir()) == []
        (d / "hello").write_text("hi")
        return DIFF_ID

    final = unpack_snapshot(tmp_path, DIFF_ID, unpack)
    assert final == snapshot_path(tmp_path, DIFF_ID)
    assert (final / "hello").read_text() == "hi"
    assert final.stat().st_mode & 0o777 == 0o755
    assert seen[0].parent == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ab" * 32]


def test_unpack_mismatch_raises_and_leaves_nothing(tmp_path: Path) -> None:
    def unpack(d: Path) -> str:
        (d / "junk").write_text("x")
        return OTHER

    with pytest.raises(DigestMismatchError) as info:
        unpack_snapshot(tmp_path, DIFF_ID, unpack)
    assert info.value.expected == DIFF_ID
    assert info.value.actual == OTHER
    assert list(tmp_path.iterdir()) == []


def test_unpack_failure_removes_the_temporary_dir(tmp_path: Path) -> None:
    def unpack(d: Path) -> str:
        (d / "partial").write_text("x")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        unpack_snapshot(tmp_path, DIFF_ID, unpack)
    assert list(tmp_path.iterdir()) == []


def test_unpack_is_idempotent(tmp_path: Path) -> None:
    calls = []

    def unpack(d: Path) -> str:
        calls.append(d)
        return DIFF_ID

    first = unpack_snapshot(tmp_path, DIFF_ID, unpack)
    second = unpack_snapshot(tmp_path, DIFF_ID, unpack)
    assert first == second
    assert len(calls) == 1


def test_losing_a_race_keeps_the_winner(tmp_path: Path) -> None:
    def unpack(d: Path) -> str:
        # Another process finishes the same snapshot while this one is unpacking.
        winner = snapshot_path(tmp_path, DIFF_ID)
        winner.mkdir()
        (winner / "theirs").write_text("1")
        (d / "mine").write_text("2")
        return DIFF_ID

    final = unpack_snapshot(tmp_path, DIFF_ID, unpack)
    assert [p.name for p in final.iterdir()] == ["theirs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ab" * 32]
