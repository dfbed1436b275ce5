"""Waste, exactly: which stored versions of a path the image can never show.

A version of a path in layer i is *hidden* when a later layer writes the same path
again, deletes it (a whiteout), deletes a directory above it (a whiteout of the
directory, or a non-directory written over it), or makes a directory above it opaque.
Wasted bytes are the regular-file bytes of hidden versions only: the surviving version
is never waste. Hardlinks count once: the content of a hardlinked file in layer i is
wasted only when every path linking it in layer i is hidden.

The stack is replayed bottom up over the index rows, keeping the merged tree (path →
the live version) and each directory's children, so a whiteout or opaque directory
hides a subtree in time proportional to its size.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

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


@dataclass(slots=True)
class _Version:
    layer: int
    entry: IndexEntry
    group: tuple[int, str]  # hardlink group: (layer, the path holding the content)


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


class _Tree:
    """The merged tree: the live version of each path and each directory's children."""

    def __init__(self) -> None:
        self.live: dict[str, _Version] = {}
        self.children: dict[str, set[str]] = defaultdict(set)

    def put(self, path: str, version: _Version) -> None:
        self.live[path] = version
        # Link every ancestor too: a tar need not hold its parent directories' entries,
        # and a whiteout of `usr` must still find `usr/bin/x`.
        child = path
        while child:
            kids = self.children[_parent(child)]
            if child in kids:
                break
            kids.add(child)
            child = _parent(child)

    def pop_subtree(self, path: str, include_self: bool) -> list[tuple[str, _Version]]:
        """Remove `path`'s descendants (and `path` itself if asked); return them."""
        out: list[tuple[str, _Version]] = []
        stack = list(self.children.pop(path, ()))
        while stack:
            p = stack.pop()
            version = self.live.pop(p, None)
            if version is not None:
                out.append((p, version))
            stack.extend(self.children.pop(p, ()))
        if include_self:
            version = self.live.pop(path, None)
            if version is not None:
                out.append((path, version))
                self.children[_parent(path)].discard(path)
        return out


def _kind_of_rewrite(old: IndexEntry, new: IndexEntry) -> str:
    same = (
        old.digest is not None
        and old.digest == new.digest
        and old.kind in ("file", "hardlink")
        and new.kind in ("file", "hardlink")
    )
    return "metadata-only" if same else "overwritten"


def analyze_image(image: str, layers: Sequence[LayerInput], base_layers: int = 0,
                  base: str = "") -> ImageReport:  # fmt: skip
    """The full report for an image whose layers (bottom first) are `layers`."""
    tree, hidden, markers, counts = _replay(layers)
    return _report(image, layers, tree, hidden, markers, counts, base_layers, base)


def live_tree(layers: Sequence[LayerInput]) -> dict[str, tuple[int, IndexEntry]]:
    """What the merged image shows: path → (layer index, entry) of each live path."""
    tree = _replay(layers)[0]
    return {path: (v.layer, v.entry) for path, v in tree.live.items()}


def _replay(
    layers: Sequence[LayerInput],
) -> tuple[
    _Tree,
    list[tuple[str, _Version, int, str]],
    list[tuple[tuple[str, str], ...]],
    list[tuple[int, int, int]],
]:
    tree = _Tree()
    hidden: list[tuple[str, _Version, int, str]] = []  # path, version, hider, kind
    markers: list[tuple[tuple[str, str], ...]] = []
    counts: list[tuple[int, int, int]] = []
    for i, layer in enumerate(layers):
        pending: dict[str, _Version] = {}
        marks: list[tuple[str, str]] = []
        added = modified = removed = 0
        # Deletions apply to the layers below only: take them first.
        for entry in layer.entries:
            if entry.kind == "whiteout":
                for p, v in tree.pop_subtree(entry.path, include_self=True):
                    pending[p] = v
                marks.append(("D", entry.path))
                removed += 1
            elif entry.kind == "opaque":
                for p, v in tree.pop_subtree(entry.path, include_self=False):
                    pending[p] = v
        seen_dirs: set[str] = set()
        for entry in layer.entries:
            if entry.kind in ("whiteout", "opaque"):
                if entry.kind == "opaque" and entry.path not in seen_dirs:
                    seen_dirs.add(entry.path)
                    marks.append(("M", entry.path))
                    modified += 1
                continue
            path = entry.path
            old = pending.pop(path, None)
            if old is None:
                old = tree.live.get(path)
                if old is not None and (entry.kind != "dir" or old.entry.kind != "dir"):
                    # A non-directory over a directory removes all below it, and the
                    # reverse replaces the file: the old version goes either way.
                    for p, v in tree.pop_subtree(path, include_self=False):
                        hidden.append((p, v, i, "deleted"))
                    tree.live.pop(path, None)
            if old is not None and old.layer < i:
                if not (old.entry.kind == "dir" and entry.kind == "dir"):
                    hidden.append((path, old, i, _kind_of_rewrite(old.entry, entry)))
            elif old is not None:  # the same path twice in one layer: the first is hidden
                hidden.append((path, old, i, _kind_of_rewrite(old.entry, entry)))
            group = (i, entry.link) if entry.kind == "hardlink" else (i, path)
            if entry.kind == "dir":
                seen_dirs.add(path)
            tree.put(path, _Version(i, entry, group))
            if old is None:
                marks.append(("A", path))
                added += 1
            else:
                marks.append(("M", path))
                modified += 1
        for p, v in pending.items():
            hidden.append((p, v, i, "deleted"))
        markers.append(tuple(marks))
        counts.append((added, modified, removed))
    return tree, hidden, markers, counts


def _report(
    image: str,
    layers: Sequence[LayerInput],
    tree: _Tree,
    hidden_raw: list[tuple[str, _Version, int, str]],
    markers: list[tuple[tuple[str, str], ...]],
    counts: list[tuple[int, int, int]],
    base_layers: int,
    base: str,
) -> ImageReport:
    live_groups: set[tuple[int, str]] = {v.group for v in tree.live.values()}
    # A hardlinked content is wasted once, when its last path goes: by the last hider.
    group_size: dict[tuple[int, str], int] = {}
    last: dict[tuple[int, str], tuple[int, int]] = {}  # group → (hider, row)
    for row, (_path, version, hider, _kind) in enumerate(hidden_raw):
        if version.entry.kind == "file":
            group_size[version.group] = version.entry.size
        if version.entry.kind in ("file", "hardlink") and version.group not in live_groups:
            last[version.group] = max(last.get(version.group, (-1, -1)), (hider, row))
    payer = {row: group_size.get(group, 0) for group, (_hider, row) in last.items()}
    hidden: list[Hidden] = []
    stored_waste = [0] * len(layers)
    caused_waste = [0] * len(layers)
    for row, (path, version, hider, kind) in enumerate(hidden_raw):
        entry = version.entry
        if entry.kind in ("dir", "whiteout", "opaque"):
            continue
        wasted = payer.get(row, 0)
        hidden.append(Hidden(path, version.layer, hider, kind, wasted, entry.kind))
        stored_waste[version.layer] += wasted
        caused_waste[hider] += wasted
    hidden.sort(key=lambda h: (-h.bytes, h.path, h.layer))
    file_bytes = [sum(e.size for e in layer.entries if e.kind == "file") for layer in layers]
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
        added, modified, removed = counts[i]
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
        duplicates=_duplicates(tree),
        totals=totals,
        user_totals=user_totals,
        base_layers=base_layers,
        base=base,
        lines=_lines(layers, hidden),
        markers=tuple(markers),
    )


def _duplicates(tree: _Tree) -> tuple[Duplicate, ...]:
    """The same content at several live paths (hardlinks to one file count once)."""
    by_digest: dict[str, dict[tuple[int, str], list[str]]] = defaultdict(dict)
    sizes: dict[str, int] = {}
    for path, version in tree.live.items():
        entry = version.entry
        if entry.kind in ("file", "hardlink") and entry.digest is not None and entry.size > 0:
            by_digest[entry.digest].setdefault(version.group, []).append(path)
            sizes[entry.digest] = entry.size
    out = []
    for digest, groups in by_digest.items():
        if len(groups) > 1:
            paths = tuple(sorted(min(paths) for paths in groups.values()))
            out.append(Duplicate(digest, sizes[digest], paths))
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
