"""The columnar analysis against the oracle: the same decisions (hidden versions and
their bytes, per-layer counts, markers, duplicates, live tree, comparisons) as the
first entry-by-entry implementation (tests/analysis_reference.py) for random layer stacks,
including what a careless or hostile writer makes: entries out of path order, a path
twice in one layer, a file over a directory, hardlinks, whiteouts of what is not there."""

from __future__ import annotations

import hashlib
import itertools

import analysis_reference as oracle
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.analysis import LayerInput, analyze_image, compare_images, live_paths, live_tree
from lamina.store import IndexEntry, LayerColumns, LayerOrigin

_ids = itertools.count(1 << 20)
PATHS = ["a", "b", "a/x", "a/y", "b/z", "a/x/q", "c"]
entry = st.tuples(
    st.sampled_from(["file", "file", "dir", "whiteout", "opaque", "hardlink", "symlink"]),
    st.sampled_from(PATHS),
    st.integers(0, 40),  # size
    st.sampled_from(["p", "q", "r"]),  # content
    st.sampled_from([0o644, 0o600]),
)
stacks = st.lists(st.lists(entry, max_size=8), min_size=1, max_size=5)


def _layer(spec: list[tuple[str, str, int, str, int]], n: int) -> LayerInput:
    entries: list[IndexEntry] = []
    files: list[IndexEntry] = []
    for kind, path, size, content, mode in spec:
        digest = hashlib.sha256(f"{content}{size}".encode()).hexdigest()
        if kind == "file":
            e = IndexEntry(path, "file", size, mode, 0, 0, digest, "")
            files.append(e)
        elif kind == "hardlink":
            if not files:
                continue
            target = files[size % len(files)]
            e = IndexEntry(path, "hardlink", target.size, target.mode, 0, 0, target.digest,
                           target.path)  # fmt: skip
        elif kind == "symlink":
            e = IndexEntry(path, "symlink", 0, 0o777, 0, 0, None, content)
        else:
            e = IndexEntry(path, kind, 0, 0o755 if kind == "dir" else 0, 0, 0, None, "")
        entries.append(e)
    i = next(_ids)
    origin = LayerOrigin("Dockerfile", n + 2, "0", f"RUN step {n}") if n % 2 else None
    return LayerInput(f"sha256:{i:064x}", f"sha256:{i:064x}", 10 * len(entries), 20 * len(entries),
                      f"RUN {n}", origin, entries)  # fmt: skip


def _stack(spec: list[list[tuple[str, str, int, str, int]]]) -> list[LayerInput]:
    return [_layer(layer, n) for n, layer in enumerate(spec)]


def _as_columns(layers: list[LayerInput]) -> list[LayerInput]:
    """The same layers as the store hands them to analysis: as `LayerColumns`."""
    return [LayerInput(la.diff_id, la.digest, la.size, la.uncompressed_size, la.created_by,
                       la.origin, LayerColumns.of(la.entries)) for la in layers]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(stacks, st.integers(0, 5))
def test_reports_match_the_entry_by_entry_oracle(
    spec: list[list[tuple[str, str, int, str, int]]], base: int
) -> None:
    layers = _stack(spec)
    base = min(base, len(layers))
    want = oracle.replayed(layers)
    for stack in (layers, _as_columns(layers)):
        report = analyze_image("img", stack, base, "base")
        assert report.hidden == want.hidden
        assert report.markers == want.markers
        assert report.duplicates == want.duplicates
        assert [(la.added, la.modified, la.removed, la.file_bytes, la.wasted_bytes,
                 la.caused_waste_bytes) for la in report.layers] == list(want.layers)  # fmt: skip
        assert report.totals.wasted_bytes == sum(h.bytes for h in want.hidden)
    tree = oracle.live_tree(layers)
    assert live_tree(layers) == tree
    assert sorted(live_paths(layers)) == sorted(p for p, (_, e) in tree.items() if e.kind != "dir")


@settings(max_examples=300, deadline=None)
@given(stacks, stacks, st.integers(0, 3))
def test_comparisons_match_the_oracle(
    mine: list[list[tuple[str, str, int, str, int]]],
    theirs: list[list[tuple[str, str, int, str, int]]],
    shared: int,
) -> None:
    # Images that share their first layers (by content), as images FROM one base do.
    common = _stack(mine[:shared])
    image = common + _stack(mine[shared:])
    other = common + _stack(theirs)
    want = oracle.compare_images("new", image, "old", other)
    got = compare_images("new", _as_columns(image), "old", other)
    assert got.files == want.files
    assert got == want
    # The same layer at another position is still the same content.
    moved = _stack(theirs[:1]) + image
    assert compare_images("new", image, "old", moved) == oracle.compare_images(
        "new", image, "old", moved)  # fmt: skip
