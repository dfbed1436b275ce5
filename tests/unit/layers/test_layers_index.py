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
    apply_layer,
    changes_from_dir,
    scan_layer,
    sort_changes,
    write_layer,
)
from lamina.store import IndexEntry


def _tree(root: Path) -> None:
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"hello" * 1000)
    os.chmod(root / "d" / "f", 0o640)
    os.link(root / "d" / "f", root / "d" / "g")
    (root / "d" / "ln").symlink_to("f")
    (root / "empty").write_bytes(b"")


def test_undecodable_names_are_kept_readable() -> None:
    collector = EntryCollector()
    collector.add("./b\udcff/", "dir")
    collector.add("/a", "symlink", link="t\udcfe")
    assert [(e.path, e.link) for e in collector.entries] == [("b\\xff", ""), ("a", "t\\xfe")]


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


def test_writer_cleans_every_path_as_the_reader_does(tmp_path: Path) -> None:
    """The writer's rows are cleaned all at once when the layer is done: a non-ASCII
    name, an undecodable one and a path that is not clean each make the whole layer
    take the careful way, and the index is still the reader's, entry for entry."""
    root = tmp_path / "t"
    root.mkdir()
    (root / "caf\u00e9").write_bytes(b"x")
    with open(os.path.join(os.fsencode(root), b"raw\xff"), "wb") as f:
        f.write(b"y")
    (root / "plain").write_bytes(b"z")
    base = sort_changes(changes_from_dir(str(root)))
    for extra, found in (
        ([], {"caf\u00e9", "raw\\xff", "plain"}),
        ([Change("./gone", ChangeKind.DELETE)], {"gone"}),
        ([Change("dir//x", ChangeKind.DELETE)], {"dir/x"}),
    ):
        changes = base if not extra else [*extra, *(c for c in base if c.path == "plain")]
        written, read, out = EntryCollector(), EntryCollector(), io.BytesIO()
        write_layer(changes, out, collect=written)
        out.seek(0)
        scan_layer(out, collect=read)
        assert written.entries == read.entries
        assert found <= {e.path for e in written.entries}


def test_the_applier_gathers_the_index_as_it_unpacks(tmp_path: Path) -> None:
    _tree(tmp_path / "t")
    out = io.BytesIO()
    write_layer(sort_changes(changes_from_dir(str(tmp_path / "t"))), out)
    scanned, applied = EntryCollector(), EntryCollector()
    out.seek(0)
    scan_layer(out, collect=scanned)
    out.seek(0)
    (tmp_path / "unpacked").mkdir()
    apply_layer(out, tmp_path / "unpacked", overlay=True, collect=applied)
    assert applied.entries == scanned.entries
    assert (tmp_path / "unpacked" / "d" / "f").read_bytes() == b"hello" * 1000


def test_the_writers_columns_hold_the_same_entries_and_store_the_same_rows(
    tmp_path: Path,
) -> None:
    """The layer writer's index comes as columns (`columns()`, what `FileIndex.put`
    takes as they are); they are the very entries `entries` lists, and a writer's rows
    after entries added one by one keep layer order."""
    from lamina.store import LayerColumns

    _tree(tmp_path / "t")
    changes = sort_changes(changes_from_dir(str(tmp_path / "t")))
    written = EntryCollector()
    write_layer(changes, io.BytesIO(), collect=written)
    columns = written.columns()
    assert isinstance(columns, LayerColumns)
    as_list = list(columns)
    assert len(as_list) == len(changes) and [e.path for e in as_list] == [c.path for c in changes]
    assert written.entries == as_list  # made from the columns, once
    assert written.columns() == as_list  # then the list itself

    mixed = EntryCollector()
    mixed.add("first", "dir")
    write_layer(changes, io.BytesIO(), collect=mixed)
    assert mixed.entries == [IndexEntry("first", "dir", 0, 0, 0, 0, None, ""), *as_list]
