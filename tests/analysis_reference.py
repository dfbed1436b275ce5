"""The analysis as it was first written, entry by entry over `IndexEntry` rows: the
oracle that the columnar analysis (`lamina.analysis`) must match exactly, report for
report (tests/unit/analysis/test_analysis_oracle.py). Not used by lamina itself."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence

from lamina.analysis import (
    ChangeGroup,
    Comparison,
    Duplicate,
    FileChange,
    Hidden,
    ImageReport,
    LayerInput,
    LayerReport,
    LineWaste,
    Totals,
)
from lamina.store import IndexEntry

_Version = tuple[int, IndexEntry]  # (layer index, its entry)
_Hidden = tuple[str, _Version, int, str]  # path, version, hiding layer, kind
_MARKERS = ("whiteout", "opaque")


def _kind_of_rewrite(old: IndexEntry, new: IndexEntry) -> str:
    same = (
        old.digest is not None
        and old.digest == new.digest
        and old.kind in ("file", "hardlink")
        and new.kind in ("file", "hardlink")
    )
    return "metadata-only" if same else "overwritten"


def _group(version: _Version, path: str) -> tuple[int, str]:
    """The hardlink group of a version: (layer, the path whose entry holds the content)."""
    layer, entry = version
    return (layer, entry.link) if entry.kind == "hardlink" else (layer, path)


class _Stack:
    """The merged tree while the stack is replayed: path → the live version.

    Subtree queries (a whiteout or opaque directory, a file over a directory) are rare:
    they bisect a sorted snapshot of the paths taken before the layer, made only for
    layers that need one, so the common entry costs a dict lookup and a store.
    """

    def __init__(self) -> None:
        self.live: dict[str, _Version] = {}
        self._sorted: list[str] | None = None

    def start_layer(self) -> None:
        self._sorted = None

    def lower_under(self, path: str, layer: int) -> list[tuple[str, _Version]]:
        """Live versions from layers below `layer` strictly under directory `path`."""
        if self._sorted is None:
            self._sorted = sorted(self.live)
        keys = self._sorted
        lo = bisect.bisect_left(keys, path + "/")
        hi = bisect.bisect_left(keys, path + "0")  # "0" sorts right after "/"
        out = []
        for p in keys[lo:hi]:
            version = self.live.get(p)
            if version is not None and version[0] < layer:
                out.append((p, version))
        return out


def analyze_image(image: str, layers: Sequence[LayerInput], base_layers: int = 0,
                  base: str = "") -> ImageReport:  # fmt: skip
    """The full report for an image whose layers (bottom first) are `layers`."""
    stack, hidden, markers, counts, links = _replay(layers)
    return _report(image, layers, stack.live, hidden, markers, counts, links, base_layers, base)


def live_tree(layers: Sequence[LayerInput]) -> dict[str, tuple[int, IndexEntry]]:
    """What the merged image shows: path → (layer index, entry) of each live path."""
    return _replay(layers)[0].live


def _replay(
    layers: Sequence[LayerInput],
) -> tuple[_Stack, list[_Hidden], list[tuple[str, ...]], list[tuple[int, int, int, int]],
           list[str]]:  # fmt: skip
    stack = _Stack()
    live = stack.live
    hidden: list[_Hidden] = []
    markers: list[tuple[str, ...]] = []
    counts: list[tuple[int, int, int, int]] = []  # added, modified, removed, file bytes
    links: list[str] = []  # paths written as hardlinks
    for i, layer in enumerate(layers):
        stack.start_layer()
        entries = layer.entries
        pending: dict[str, _Version] = {}
        # Deletions apply to the layers below only: take them first.
        for entry in [e for e in entries if e.kind in _MARKERS]:
            if entry.kind == "whiteout":
                own = live.get(entry.path)
                if own is not None and own[0] < i:
                    pending[entry.path] = live.pop(entry.path)
            for p, v in stack.lower_under(entry.path, i):
                pending[p] = v
                del live[p]
        marks: list[str] = []
        mark = marks.append
        added = modified = removed = file_bytes = 0
        for entry in entries:
            kind = entry.kind
            if kind in _MARKERS:
                if kind == "whiteout":
                    mark("D")
                    removed += 1
                else:
                    mark("M")
                continue
            path = entry.path
            old = pending.pop(path, None) if pending else None
            if old is None:
                old = live.get(path)
                if old is not None and old[1].kind == "dir" and kind != "dir":
                    # A non-directory over a directory removes everything below it.
                    for p, v in stack.lower_under(path, i):
                        hidden.append((p, v, i, "deleted"))
                        del live[p]
            if old is not None and not (kind == "dir" and old[1].kind == "dir"):
                hidden.append((path, old, i, _kind_of_rewrite(old[1], entry)))
            live[path] = (i, entry)
            if kind == "file":
                file_bytes += entry.size
            elif kind == "hardlink":
                links.append(path)
            if old is None:
                mark("A")
                added += 1
            else:
                mark("M")
                modified += 1
        for p, v in pending.items():
            hidden.append((p, v, i, "deleted"))
        markers.append(tuple(marks))
        counts.append((added, modified, removed, file_bytes))
    return stack, hidden, markers, counts, links


def _report(
    image: str,
    layers: Sequence[LayerInput],
    live: dict[str, _Version],
    hidden_raw: list[_Hidden],
    markers: list[tuple[str, ...]],
    counts: list[tuple[int, int, int, int]],
    links: list[str],
    base_layers: int,
    base: str,
) -> ImageReport:
    # Content reached by a live hardlink is live even when its first path is hidden.
    live_groups = {_group(v, p) for p in links if (v := live.get(p)) is not None}
    # A hardlinked content is wasted once, when its last path goes: by the last hider.
    group_size: dict[tuple[int, str], int] = {}
    last: dict[tuple[int, str], tuple[int, int]] = {}  # group → (hider, row)
    for row, (path, version, hider, _kind) in enumerate(hidden_raw):
        entry_kind = version[1].kind
        if entry_kind not in ("file", "hardlink"):
            continue
        group = _group(version, path)
        if entry_kind == "file":
            group_size[group] = version[1].size
        if group not in live_groups:
            last[group] = max(last.get(group, (-1, -1)), (hider, row))
    payer = {row: group_size.get(group, 0) for group, (_hider, row) in last.items()}
    hidden: list[Hidden] = []
    stored_waste = [0] * len(layers)
    caused_waste = [0] * len(layers)
    for row, (path, (at, entry), hider, kind) in enumerate(hidden_raw):
        if entry.kind in ("dir", "whiteout", "opaque"):
            continue
        wasted = payer.get(row, 0)
        hidden.append(Hidden(path, at, hider, kind, wasted, entry.kind))
        stored_waste[at] += wasted
        caused_waste[hider] += wasted
    hidden.sort(key=lambda h: (-h.bytes, h.path, h.layer))
    file_bytes = [c[3] for c in counts]
    total = sum(file_bytes)
    wasted = sum(stored_waste)
    image_bytes = sum(layer.uncompressed_size for layer in layers)
    totals = Totals(image_bytes, total, total - wasted, wasted)
    # The user's layers: the bytes they add, plus base bytes they hide (their doing).
    user_added = sum(file_bytes[base_layers:])
    user_wasted = sum(caused_waste[base_layers:])
    user_hidden_base = sum(h.bytes for h in hidden if h.layer < base_layers <= h.hidden_by)
    user_total = user_added + user_hidden_base
    user_totals = Totals(
        sum(layer.uncompressed_size for layer in layers[base_layers:]),
        user_total,
        user_total - user_wasted,
        user_wasted,
    )
    reports = []
    for i, layer in enumerate(layers):
        added, modified, removed, _bytes = counts[i]
        reports.append(
            LayerReport(
                index=i,
                diff_id=layer.diff_id,
                digest=layer.digest,
                instruction=layer.instruction(),
                line=layer.line(),
                stage=layer.origin.stage if layer.origin is not None else "",
                size=layer.uncompressed_size,
                compressed_size=layer.size,
                file_bytes=file_bytes[i],
                added=added,
                modified=modified,
                removed=removed,
                wasted_bytes=stored_waste[i],
                caused_waste_bytes=caused_waste[i],
                user=i >= base_layers,
            )
        )
    return ImageReport(
        image=image,
        layers=tuple(reports),
        hidden=tuple(hidden),
        duplicates=_duplicates(live),
        totals=totals,
        user_totals=user_totals,
        base_layers=base_layers,
        base=base,
        lines=_lines(layers, hidden),
        markers=tuple(markers),
    )


def _duplicates(live: dict[str, _Version]) -> tuple[Duplicate, ...]:
    """The same content at several live paths (hardlinks to one file count once)."""
    first: dict[str, str] = {}  # digest → the first live path seen with it
    more: dict[str, list[str]] = {}  # digest → every path, once a second one shows up
    for path, (_layer, entry) in live.items():
        digest = entry.digest
        if digest is None or not entry.size:  # dirs, links, empty files
            continue
        seen = first.setdefault(digest, path)
        if seen is not path:
            more.setdefault(digest, [seen]).append(path)
    out = []
    for digest, paths in more.items():
        groups: dict[tuple[int, str], list[str]] = {}
        for path in paths:
            groups.setdefault(_group(live[path], path), []).append(path)
        if len(groups) > 1:
            shown = tuple(sorted(min(members) for members in groups.values()))
            out.append(Duplicate(digest, live[paths[0]][1].size, shown))
    out.sort(key=lambda d: (-d.saveable_bytes, d.paths))
    return tuple(out)


def _lines(layers: Sequence[LayerInput], hidden: Sequence[Hidden]) -> tuple[LineWaste, ...]:
    """Waste per instruction that caused it (the layer whose write or delete hid it)."""
    by_layer: dict[int, list[Hidden]] = defaultdict(list)
    for h in hidden:
        if h.bytes:
            by_layer[h.hidden_by].append(h)
    out = []
    for i, rows in by_layer.items():
        kinds = tuple(sorted({h.kind for h in rows}))
        out.append(
            LineWaste(
                i, layers[i].line(), layers[i].instruction(), sum(h.bytes for h in rows),
                len(rows), kinds,
            )
        )
    out.sort(key=lambda w: (-w.bytes, w.layer))
    return tuple(out)


# -- the comparison, as first written ---------------------------------------------


def _same(a: IndexEntry, b: IndexEntry) -> bool:
    return (a.kind, a.digest, a.mode, a.uid, a.gid, a.link, a.size) == (
        b.kind, b.digest, b.mode, b.uid, b.gid, b.link, b.size
    )  # fmt: skip


def compare_images(
    image: str, layers: Sequence[LayerInput], against: str, other: Sequence[LayerInput]
) -> Comparison:
    """What `image` changes relative to `against` (the baseline)."""
    theirs = {layer.diff_id for layer in other}
    ours = {layer.diff_id for layer in layers}
    shared = tuple(layer.diff_id for layer in layers if layer.diff_id in theirs)
    only_image = tuple(i for i, layer in enumerate(layers) if layer.diff_id not in theirs)
    only_against = tuple(i for i, layer in enumerate(other) if layer.diff_id not in ours)
    mine, base = live_tree(layers), live_tree(other)
    files: list[FileChange] = []
    for path, (i, entry) in mine.items():
        if entry.kind == "dir":
            continue
        old = base.get(path)
        layer = layers[i]
        if old is None or old[1].kind == "dir":
            files.append(FileChange(path, "added", entry.size, layer.line(), layer.instruction()))
        elif not _same(old[1], entry):
            files.append(FileChange(path, "changed", entry.size - old[1].size, layer.line(),
                                    layer.instruction()))  # fmt: skip
    for path, (i, entry) in base.items():
        if entry.kind == "dir" or (path in mine and mine[path][1].kind != "dir"):
            continue
        gone = other[i]
        files.append(FileChange(path, "removed", -entry.size, gone.line(),
                                f"(only in {against}) {gone.instruction()}"))  # fmt: skip
    files.sort(key=lambda f: (-abs(f.size_delta), f.path))
    grouped: dict[tuple[str, str], list[FileChange]] = defaultdict(list)
    for f in files:
        grouped[(f.line, f.instruction)].append(f)
    groups = [
        ChangeGroup(
            line, text,
            sum(f.change == "added" for f in fs), sum(f.change == "removed" for f in fs),
            sum(f.change == "changed" for f in fs), sum(f.size_delta for f in fs),
        )
        for (line, text), fs in grouped.items()
    ]
    groups.sort(key=lambda g: (-abs(g.size_delta), g.line, g.instruction))
    return Comparison(image, against, shared, only_image, only_against, tuple(files),
                      tuple(groups))  # fmt: skip
