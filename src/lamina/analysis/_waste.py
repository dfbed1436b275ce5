"""Waste, exactly: which stored versions of a path the image can never show.

A version of a path in layer i is *hidden* when a later layer writes the same path
again, deletes it (a whiteout), deletes a directory above it (a whiteout of the
directory, or a non-directory written over it), or makes a directory above it opaque.
Wasted bytes are the regular-file bytes of hidden versions only: the surviving version
is never waste. Hardlinks count once: the content of a hardlinked file in layer i is
wasted only when every path linking it in layer i is hidden, and the layer that hid
the last of them made that waste.

The stack is replayed bottom up over the index rows, keeping the merged tree (path →
the live version): a dict lookup per entry. A whiteout, an opaque directory or a file
over a directory finds the subtree it hides by bisecting a sorted snapshot of the
paths, made only for the layers that need one.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence

from lamina.analysis._model import (
    Duplicate,
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
