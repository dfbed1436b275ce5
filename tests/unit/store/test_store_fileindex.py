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


def test_columns_read_back_every_entry_in_layer_order(store: Store) -> None:
    # Not sorted by path, empty and non-ASCII text, commas, a hardlink, big numbers: the
    # columns come back entry by entry as `entries` reads them, whatever order and text.
    rows = [
        IndexEntry("z/last-written-first", "file", 3, 0o600, 1000, 1000, "cd" * 32, ""),
        IndexEntry("a", "dir", 0, 0o755, 0, 0, None, ""),
        IndexEntry('a/é, "quoted"\nname', "file", 1 << 40, 0o4755, 2**32 - 2, 7, "ef" * 32, ""),
        IndexEntry("a/hard", "hardlink", 1 << 40, 0o4755, 0, 0, "ef" * 32, 'a/é, "quoted"\nname'),
        IndexEntry("", "dir", 0, 0o755, 0, 0, None, ""),
        *ROWS,
    ]
    store.file_index.put(DIFF_ID, rows)
    columns = store.file_index.columns(DIFF_ID)
    assert list(columns) == rows == store.file_index.entries(DIFF_ID)
    assert len(columns) == len(rows) and columns[3] == rows[3] and columns[1:3] == rows[1:3]
    assert columns.paths == [r.path for r in rows]
    assert columns.digests == [r.digest for r in rows]
    assert columns.gids == [r.gid for r in rows]  # read on first use
    assert len(store.file_index.columns("sha256:" + "3" * 64)) == 0


def test_columns_of_a_hostile_index_with_a_nul_in_a_path_are_read_row_by_row(
    store: Store,
) -> None:
    # No tar name holds a NUL, but the db is only trusted so far: the joined text would
    # split into too many pieces, so the rows are read one by one instead.
    rows = [IndexEntry("a\0b", "file", 1, 0o644, 0, 0, "ab" * 32, "x\0y"), *ROWS]
    store.file_index.put(DIFF_ID, rows)
    assert list(store.file_index.columns(DIFF_ID)) == rows
