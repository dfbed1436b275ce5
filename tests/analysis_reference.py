"""The replay and comparison as first written, entry by entry over `IndexEntry` rows:
the oracle whose decisions the columnar analysis (`lamina.analysis`) must match
exactly (tests/unit/analysis/test_analysis_oracle.py). Not used by lamina itself."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import NamedTuple

from lamina.analysis import ChangeGroup, Comparison, Duplicate, FileChange, Hidden, LayerInput
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
    """The merged tree while the stack is replayed: path → the live version. The subtree
    below a directory is found by its definition, a scan of every live path (the oracle
    is for small stacks; lamina bisects a sorted snapshot instead)."""

    def __init__(self) -> None:
        self.live: dict[str, _Version] = {}

    def start_layer(self) -> None:
        pass

    def lower_under(self, path: str, layer: int) -> list[tuple[str, _Version]]:
        """Live versions from layers below `layer` strictly under directory `path`."""
        prefix = path + "/"
        return sorted((p, v) for p, v in self.live.items()
                      if p.startswith(prefix) and v[0] < layer)  # fmt: skip


def replayed(layers: Sequence[LayerInput]) -> Replayed:
    """What the entry-by-entry replay decides for an image whose layers are `layers`."""
    stack, hidden, markers, counts, links = _replay(layers)
    return _report(stack.live, hidden, markers, counts, links)


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


class Replayed(NamedTuple):
    """What the replay decides; the report's totals and lines are sums over these."""

    hidden: tuple[Hidden, ...]
    layers: tuple[tuple[int, ...], ...]  # added, modified, removed, file, wasted, caused bytes
    markers: tuple[tuple[str, ...], ...]
    duplicates: tuple[Duplicate, ...]


def _report(
    live: dict[str, _Version],
    hidden_raw: list[_Hidden],
    markers: list[tuple[str, ...]],
    counts: list[tuple[int, int, int, int]],
    links: list[str],
) -> Replayed:
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
    stored_waste = [0] * len(counts)
    caused_waste = [0] * len(counts)
    for row, (path, (at, entry), hider, kind) in enumerate(hidden_raw):
        if entry.kind in ("dir", "whiteout", "opaque"):
            continue
        wasted = payer.get(row, 0)
        hidden.append(Hidden(path, at, hider, kind, wasted, entry.kind))
        stored_waste[at] += wasted
        caused_waste[hider] += wasted
    hidden.sort(key=lambda h: (-h.bytes, h.path, h.layer))
    per_layer = tuple((*c, stored_waste[i], caused_waste[i]) for i, c in enumerate(counts))
    return Replayed(tuple(hidden), per_layer, tuple(markers), _duplicates(live))


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
            line,
            text,
            sum(f.change == "added" for f in fs),
            sum(f.change == "removed" for f in fs),
            sum(f.change == "changed" for f in fs),
            sum(f.size_delta for f in fs),
        )
        for (line, text), fs in grouped.items()
    ]
    groups.sort(key=lambda g: (-abs(g.size_delta), g.line, g.instruction))
    return Comparison(image, against, shared, only_image, only_against, tuple(files),
                      tuple(groups))  # fmt: skip
