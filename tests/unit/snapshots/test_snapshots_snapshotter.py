"""The snapshotter alone lays out snapshots/; the snapshots package imports nothing of the
store but its layout helpers (the on-disk scheme spelled once)."""

from __future__ import annotations

import ast
from pathlib import Path

import lamina.snapshots
from lamina.snapshots import RECORD_SUFFIX, Snapshotter
from lamina.store import RECORD_SUFFIX as STORE_RECORD_SUFFIX
from lamina.store import open_store

DIFF = "sha256:" + "ab" * 32


LAYOUT = {"RECORD_SUFFIX", "record_path", "snapshot_path"}


def test_snapshots_package_uses_only_the_store_layout() -> None:
    package = Path(lamina.snapshots.__file__).parent
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("lamina.store") for a in node.names), source
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "lamina.store"
            ):
                assert {a.name for a in node.names} <= LAYOUT, (source, node.lineno)


def test_record_layout_agrees_with_the_store(tmp_path: Path) -> None:
    assert RECORD_SUFFIX == STORE_RECORD_SUFFIX
    with open_store(tmp_path / "root") as store:
        snaps = Snapshotter(store.snapshots_dir)
        assert snaps.path(DIFF) == store.snapshot_path(DIFF)
        assert snaps.record_path(DIFF) == store.record_path(DIFF)


def test_commit_publishes_record_then_directory_once(tmp_path: Path) -> None:
    snaps = Snapshotter(tmp_path)
    first, second = tmp_path / ".tmp-a", tmp_path / ".tmp-b"
    for staged in (first, second):
        staged.mkdir()
        (staged / "file").write_text("x")
    rec_a, rec_b = snaps.record_staging(DIFF), snaps.record_staging(DIFF)
    rec_a.write_bytes(b"r")
    rec_b.write_bytes(b"r")
    assert snaps.commit(DIFF, first, rec_a)
    assert snaps.exists(DIFF)
    assert not snaps.commit(DIFF, second, rec_b)  # the second comer changes nothing
    assert not second.exists() and not rec_b.exists()
    other = "sha256:" + "cd" * 32
    # bottom first in, top first to overlayfs: the config's order reversed
    lower = next(o for o in snaps.view([DIFF, other]).options if o.startswith("lowerdir="))
    assert lower.index(other[7:]) < lower.index(DIFF[7:])
    snaps.remove(DIFF)
    assert not snaps.exists(DIFF) and sorted(p.name for p in tmp_path.iterdir()) == []
