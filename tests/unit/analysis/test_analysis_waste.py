"""Waste, exactly, over hand-written index rows: each hiding rule, hardlinks, duplicates,
the user's layers, and a property: live + wasted == every layer's regular-file bytes,
and live == the bytes of an independently merged tree."""

from __future__ import annotations

import hashlib
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.analysis import (
    Budgets,
    LayerInput,
    analyze_image,
    check_budgets,
    compare_images,
    live_tree,
)
from lamina.store import IndexEntry, LayerOrigin

MB = 1_000_000
_ids = itertools.count()


def digest(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def f(path: str, size: int, content: str = "", mode: int = 0o644) -> IndexEntry:
    return IndexEntry(path, "file", size, mode, 0, 0, digest(content or path), "")


def d(path: str) -> IndexEntry:
    return IndexEntry(path, "dir", 0, 0o755, 0, 0, None, "")


def wh(path: str) -> IndexEntry:
    return IndexEntry(path, "whiteout", 0, 0, 0, 0, None, "")


def opq(path: str) -> IndexEntry:
    return IndexEntry(path, "opaque", 0, 0, 0, 0, None, "")


def link(path: str, target: str, of: IndexEntry) -> IndexEntry:
    return IndexEntry(path, "hardlink", of.size, of.mode, 0, 0, of.digest, target)


def layer(*entries: IndexEntry, line: int | None = None, text: str = "RUN x") -> LayerInput:
    n = next(_ids)
    origin = LayerOrigin("Dockerfile", line, "0", text) if line is not None else None
    size = sum(e.size for e in entries) + 512 * len(entries)
    return LayerInput(f"sha256:{n:064x}", f"sha256:{n:064x}", size // 2, size, text, origin,
                      entries)  # fmt: skip


def test_chmod_in_a_later_layer_is_metadata_only_waste_attributed_to_that_line() -> None:
    big = f("big", 10 * MB, "zeros")
    layers = [
        layer(big, f("keep", 5), line=2),
        layer(big._replace(mode=0o600), line=3, text="RUN chmod 600 /big"),
    ]
    report = analyze_image("app", layers)
    assert report.totals.wasted_bytes == 10 * MB
    assert report.totals.live_bytes == 10 * MB + 5
    (hidden,) = report.hidden
    assert (hidden.path, hidden.layer, hidden.hidden_by) == ("big", 0, 1)
    assert hidden.kind == "metadata-only"
    (line,) = report.lines
    assert (line.line, line.bytes, line.kinds) == ("Dockerfile:3", 10 * MB, ("metadata-only",))
    assert report.layers[0].wasted_bytes == 10 * MB
    assert report.layers[1].caused_waste_bytes == 10 * MB
    assert report.layers[1].modified == 1 and report.layers[1].added == 0


def test_file_whiteout_directory_whiteout_and_opaque_directory_each_hide_what_they_cover() -> None:
    layers = [
        layer(
            d("a"),
            f("a/one", 100),
            d("b"),
            d("b/c"),
            f("b/c/two", 200),
            d("o"),
            f("o/three", 300),
            f("o/four", 400),
            f("stay", 7),
        ),
        layer(wh("a/one"), wh("b"), d("o"), opq("o"), f("o/four", 40, "new")),
    ]
    report = analyze_image("img", layers)
    kinds = {h.path: (h.kind, h.bytes) for h in report.hidden if h.entry_kind == "file"}
    assert kinds == {
        "a/one": ("deleted", 100),
        "b/c/two": ("deleted", 200),
        "o/three": ("deleted", 300),
        "o/four": ("overwritten", 400),
    }
    assert report.totals.wasted_bytes == 1000
    assert report.totals.live_bytes == 47
    assert report.layers[1].removed == 2
    assert set(live_tree(layers)) == {"a", "o", "o/four", "stay"}


def test_an_overwritten_file_wastes_the_old_version_never_the_survivor() -> None:
    layers = [layer(f("x", 50, "v1")), layer(f("x", 70, "v2")), layer(f("x", 90, "v3"))]
    report = analyze_image("img", layers)
    assert [(h.layer, h.hidden_by, h.kind, h.bytes) for h in report.hidden] == [
        (1, 2, "overwritten", 70),
        (0, 1, "overwritten", 50),
    ]
    assert report.totals.live_bytes == 90


def test_hardlinked_content_is_wasted_only_when_every_link_is_hidden() -> None:
    a = f("a", 1000)
    first = [layer(a, link("b", "a", a))]
    hide_a = analyze_image("img", [*first, layer(wh("a"))])
    assert hide_a.totals.wasted_bytes == 0
    assert hide_a.totals.live_bytes == 1000
    hide_both = analyze_image("img", [*first, layer(wh("a")), layer(wh("b"))])
    assert hide_both.totals.wasted_bytes == 1000
    # Wasted when the last link went: the layer that removed /b made the waste.
    assert [(h.path, h.bytes, h.hidden_by) for h in hide_both.hidden] == [
        ("b", 1000, 2), ("a", 0, 1)
    ]  # fmt: skip
    assert [w.layer for w in hide_both.lines] == [2]
    assert hide_both.duplicates == ()
    assert analyze_image("img", first).duplicates == ()


def test_duplicate_content_at_two_live_paths() -> None:
    report = analyze_image("img", [layer(f("x", 300, "same"), f("y", 300, "same"), f("z", 1))])
    (dup,) = report.duplicates
    assert dup.paths == ("x", "y") and dup.saveable_bytes == 300


def test_the_base_images_own_waste_is_not_the_users() -> None:
    layers = [
        layer(f("base-junk", 5000)),
        layer(wh("base-junk")),  # the base deleted its own file: its waste
        layer(f("app", 100), line=3),
        layer(f("app", 100, "other"), line=4),  # the user's waste: 100
    ]
    report = analyze_image("app", layers, base_layers=2, base="base")
    assert report.totals.wasted_bytes == 5100
    assert report.user_totals.wasted_bytes == 100
    assert report.user_totals.total_bytes == 200
    assert report.user_totals.wasted_percent == 50.0
    assert [layer.user for layer in report.layers] == [False, False, True, True]


def test_budgets_pass_at_the_threshold_and_fail_beyond() -> None:
    layers = [layer(f("x", 300, "a")), layer(f("x", 100, "b"))]
    report = analyze_image("img", layers)  # wasted 300, live 100, efficiency 0.25
    at = check_budgets(report, Budgets(max_wasted_bytes=300, min_efficiency=0.25,
                                       max_wasted_percent=75.0), ["x"])  # fmt: skip
    assert [r.passed for r in at] == [True, True, True]
    over = check_budgets(report, Budgets(max_wasted_bytes=299, min_efficiency=0.26,
                                         max_wasted_percent=74.9), ["x"])  # fmt: skip
    assert [(r.rule, r.passed) for r in over] == [
        ("max-wasted-bytes", False), ("max-wasted-percent", False), ("min-efficiency", False)
    ]  # fmt: skip
    assert "wasted 300 bytes (budget 299)" in over[0].message


def test_compare_matches_layers_by_content_not_position() -> None:
    shared = layer(f("lib", 10))
    old = [layer(f("other-base", 1)), shared, layer(f("app", 5, "v1"), f("gone", 3))]
    new = [shared, layer(f("app", 8, "v2"), f("added", 2), line=7)]
    c = compare_images("new", new, "old", old)
    assert c.shared_layers == (shared.diff_id,)
    assert c.only_image == (1,) and c.only_against == (0, 2)
    changes = {x.path: (x.change, x.size_delta) for x in c.files}
    assert changes == {"app": ("changed", 3), "added": ("added", 2), "gone": ("removed", -3),
                       "other-base": ("removed", -1)}  # fmt: skip
    assert c.size_delta == 1
    assert any(g.line == "Dockerfile:7" and g.added == 1 and g.changed == 1 for g in c.groups)


# -- the property: an independent model of the merged tree -------------------------------

names = st.sampled_from(["a", "b", "a/x", "a/y", "b/z", "a/x/q"])
ops = st.lists(
    st.tuples(
        st.sampled_from(["file", "dir", "whiteout", "opaque", "link"]),
        names,
        st.integers(0, 50),
        st.sampled_from(["p", "q"]),
    ),
    max_size=6,
)


def _layers_from(spec: list[list[tuple[str, str, int, str]]]) -> list[LayerInput]:
    """Layers as a real writer makes them: one entry per path, parent directories listed
    (a layer whose entry sits below a file of the same layer is skipped, as no tree has it)."""
    out = []
    for ops_ in spec:
        entries: dict[tuple[str, str], IndexEntry] = {}
        kinds: dict[str, str] = {}
        files: dict[str, IndexEntry] = {}
        for kind, path, size, content in ops_:
            parents = ["/".join(path.split("/")[:n]) for n in range(1, path.count("/") + 1)]
            if path in kinds or any(kinds.get(p, "dir") != "dir" for p in parents):
                continue  # one entry per path; parents must be directories
            for p in parents:
                if p not in kinds:
                    kinds[p] = "dir"
                    entries[(p, "entry")] = d(p)
            if kind == "file":
                e = f(path, size, content + str(size))
                files[path] = e
            elif kind == "dir":
                e = d(path)
            elif kind == "whiteout":
                e = wh(path)
            elif kind == "opaque":
                entries[(path, "entry")] = d(path)
                e = opq(path)
            else:
                if not files:
                    continue
                target = sorted(files)[0]
                e = link(path, target, files[target])
            kinds[path] = "dir" if kind == "opaque" else kind
            entries[(path, "marker" if kind in ("whiteout", "opaque") else "entry")] = e
        out.append(layer(*entries.values()))
    return out


def _model_live_bytes(layers: list[LayerInput]) -> int:
    """Merge like overlayfs, by brute force: the visible paths, content counted per
    (layer, file) once however many hardlinks show it."""
    tree: dict[str, tuple[int, IndexEntry]] = {}
    for i, lay in enumerate(layers):
        lower = dict(tree)
        for e in lay.entries:
            if e.kind == "whiteout":
                for p in list(lower):
                    if p == e.path or p.startswith(e.path + "/"):
                        tree.pop(p, None)
            elif e.kind == "opaque":
                for p in list(lower):
                    if p.startswith(e.path + "/"):
                        tree.pop(p, None)
        for e in lay.entries:
            if e.kind in ("whiteout", "opaque"):
                continue
            old = tree.get(e.path)
            if old is not None and not (old[1].kind == "dir" and e.kind == "dir"):
                for p in list(tree):
                    if p.startswith(e.path + "/"):
                        del tree[p]
            tree[e.path] = (i, e)
    contents = {}
    for i, e in tree.values():
        if e.kind == "file":
            contents[(i, e.path)] = e.size
        elif e.kind == "hardlink":
            contents[(i, e.link)] = e.size
    return sum(contents.values())


@settings(max_examples=300, deadline=None)
@given(st.lists(ops, min_size=1, max_size=5))
def test_live_plus_wasted_is_every_stored_byte_and_live_is_the_merged_tree(
    spec: list[list[tuple[str, str, int, str]]],
) -> None:
    layers = _layers_from(spec)
    report = analyze_image("img", layers)
    stored = sum(e.size for lay in layers for e in lay.entries if e.kind == "file")
    assert report.totals.live_bytes + report.totals.wasted_bytes == stored
    assert report.totals.live_bytes == _model_live_bytes(layers)
    assert sum(h.bytes for h in report.hidden) == report.totals.wasted_bytes


def test_a_whiteout_hides_files_whose_parent_directories_the_tar_never_listed() -> None:
    report = analyze_image("img", [layer(f("usr/bin/x", 10)), layer(wh("usr"))])
    assert report.totals.wasted_bytes == 10
    assert [(h.path, h.kind) for h in report.hidden] == [("usr/bin/x", "deleted")]


def test_the_fast_json_text_is_the_documented_document() -> None:
    import json

    from lamina.analysis import dumps, image_json

    a = f('dir/é "quoted" <x>', 5, "v1")
    layers = [layer(d("dir"), a, link("dir/hard", a.path, a)),
              layer(wh("dir/hard"), opq("dir"), a._replace(mode=0o600), line=2,
                    text='RUN "@entries-0-0@"')]  # fmt: skip
    report = analyze_image("img", layers)
    full = image_json(report, layers)
    assert json.loads(dumps(image_json(report, layers, entries=False), report, layers)) == full
    assert [e["change"] for e in full["layers"][1]["entries"]] == ["D", "M", "M"]


def test_the_fast_comparison_text_is_the_documented_document() -> None:
    import json

    from lamina.analysis import comparison_json, dumps, image_json

    old = [layer(f("app", 5, "v1"), f('gone "quoted" é', 3))]
    new = [layer(f("app", 8, "v2"), f("added", 2), line=7, text='RUN "@files-x@"')]
    c = compare_images("new", new, "old", old)
    assert len(c.files) == 3
    report = analyze_image("new", new)
    doc = image_json(report, new, entries=False)
    doc["against"] = comparison_json(c, files=False)
    full = image_json(report, new)
    full["against"] = comparison_json(c)
    assert json.loads(dumps(doc, report, new, c)) == full
    assert json.loads(dumps(comparison_json(c, files=False), comparison=c)) == comparison_json(c)
    assert doc["against"]["files"] == [] and "entries" not in doc["layers"][0]  # left as given
