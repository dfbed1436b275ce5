"""The entry collector: the index a layer's writer and reader gather in their one pass
matches the layer, entry for entry, and both passes agree."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from lamina.layers import (
    Change,
    ChangeKind,
    EntryCollector,
    changes_from_dir,
    scan_layer,
    sort_changes,
    write_layer,
)
from lamina.store import IndexEntry, open_store


def _tree(root: Path) -> None:
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"hello" * 1000)
    os.chmod(root / "d" / "f", 0o640)
    os.link(root / "d" / "f", root / "d" / "g")
    (root / "d" / "ln").symlink_to("f")
    (root / "empty").write_bytes(b"")


def test_writer_and_reader_gather_the_same_index(tmp_path: Path) -> None:
    _tree(tmp_path / "t")
    changes = sort_changes(changes_from_dir(str(tmp_path / "t")))
    changes += [Change("gone", ChangeKind.DELETE), Change("d", ChangeKind.OPAQUE)]
    written = EntryCollector()
    out = io.BytesIO()
    write_layer(sort_changes(changes), out, collect=written)
    read = EntryCollector()
    out.seek(0)
    scan_layer(out, collect=read)
    assert written.entries == read.entries
    by_path = {(e.path, e.kind): e for e in read.entries}
    content = hashlib.sha256(b"hello" * 1000).hexdigest()
    assert by_path[("d/f", "file")] == IndexEntry("d/f", "file", 5000, 0o640, os.getuid(),
                                                  os.getgid(), content, "")  # fmt: skip
    assert by_path[("d/g", "hardlink")].digest == content
    assert by_path[("d/g", "hardlink")].link == "d/f"
    assert by_path[("d/ln", "symlink")].link == "f"
    assert by_path[("empty", "file")].digest == hashlib.sha256(b"").hexdigest()
    assert ("gone", "whiteout") in by_path and ("d", "opaque") in by_path


def test_the_store_keeps_a_layers_index_whole_and_once(tmp_path: Path) -> None:
    store = open_store(tmp_path / "root")
    rows = [IndexEntry("a", "file", 3, 0o644, 0, 0, "ab" * 32, ""),
            IndexEntry("b\udcff", "symlink", 0, 0o777, 0, 0, None, "a")]  # fmt: skip
    collector = EntryCollector()
    for row in rows:
        collector.add(row.path, row.kind, size=row.size, mode=row.mode, digest=row.digest,
                      link=row.link)  # fmt: skip
    diff_id = "sha256:" + "1" * 64
    assert store.file_index.missing([diff_id, diff_id]) == [diff_id]
    store.file_index.put(diff_id, collector.entries)
    store.file_index.put(diff_id, collector.entries[:1])  # indexed already: no change
    got = store.file_index.entries(diff_id)
    assert [e.path for e in got] == ["a", "b\\xff"]  # undecodable bytes shown, not lost
    assert got[0] == rows[0]
    assert store.file_index.missing([diff_id]) == []
    store.close()
