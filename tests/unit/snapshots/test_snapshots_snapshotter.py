"""The snapshotter alone lays out snapshots/, and the snapshots package does not import store."""

from __future__ import annotations

import ast
from pathlib import Path

import lamina.snapshots
from lamina.snapshots import RECORD_SUFFIX, Snapshotter
from lamina.store import RECORD_SUFFIX as STORE_RECORD_SUFFIX
from lamina.store import open_store

DIFF = "sha256:" + "ab" * 32


def test_snapshots_package_never_imports_store() -> None:
    package = Path(lamina.snapshots.__file__).parent
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[:2] == ["lamina", "store"] for n in names), source


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
