"""The file index in the metadata db: whole or absent per layer, kept once, readable as
written, and collected by prune with the last record of its layer."""

from __future__ import annotations

from lamina.store import IndexEntry, LayerOrigin, Store

ROWS = [
    IndexEntry("etc", "dir", 0, 0o755, 0, 0, None, ""),
    IndexEntry("etc/passwd", "file", 12, 0o644, 0, 0, "ab" * 32, ""),
    IndexEntry("etc/old", "whiteout", 0, 0, 0, 0, None, ""),
    IndexEntry("bin/sh", "symlink", 0, 0o777, 0, 0, None, "busybox"),
]
DIFF_ID = "sha256:" + "2" * 64


def test_a_layers_index_reads_back_as_written_and_is_kept_once(store: Store) -> None:
    assert store.file_index.missing([DIFF_ID]) == [DIFF_ID]
    store.file_index.put(DIFF_ID, ROWS)
    store.file_index.put(DIFF_ID, ROWS[:1])  # already indexed: nothing changes
    assert store.file_index.entries(DIFF_ID) == ROWS
    assert store.file_index.has(DIFF_ID) and store.file_index.missing([DIFF_ID]) == []
    assert store.file_index.entries("sha256:" + "3" * 64) == []


def test_origins_and_bases(store: Store) -> None:
    origin = LayerOrigin("Dockerfile", 7, "build", "RUN make")
    store.file_index.put_origin(DIFF_ID, origin)
    assert store.file_index.origins([DIFF_ID, "sha256:" + "4" * 64]) == {DIFF_ID: origin}
    assert origin.where() == "Dockerfile:7"
    store.file_index.put_base("sha256:" + "5" * 64, 2, "busybox")
    assert store.file_index.base("sha256:" + "5" * 64) == (2, "busybox")
    assert store.file_index.base("sha256:" + "6" * 64) is None


def test_prune_drops_the_index_of_a_layer_the_store_no_longer_holds(store: Store) -> None:
    store.file_index.put(DIFF_ID, ROWS)
    store.prune()
    assert not store.file_index.has(DIFF_ID)
    assert store.file_index.entries(DIFF_ID) == []


def test_identical_files_in_different_layers(store: Store) -> None:
    other = "sha256:" + "7" * 64
    store.file_index.put(DIFF_ID, ROWS)
    store.file_index.put(other, [ROWS[1]._replace(path="copy")])
    assert store.file_index.shared_files() == [("ab" * 32, 12, 2)]
