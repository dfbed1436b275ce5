"""Waste, exactly: which stored versions of a path the image can never show.

A version of a path in layer i is *hidden* when a later layer writes the same path
again, deletes it (a whiteout), deletes a directory above it (a whiteout of the
directory, or a non-directory written over it), or makes a directory above it opaque.
Wasted bytes are the regular-file bytes of hidden versions only: the surviving version
is never waste. Hardlinks count once: the content of a hardlinked file in layer i is
wasted only when every path linking it in layer i is hidden, and the layer that hid
the last of them made that waste.

The stack is replayed bottom up over each layer's index columns (`LayerColumns`),
keeping the merged tree (path → the live version, an int: layer << 32 | entry). Most
entries of a layer meet no earlier version: set operations over the whole path column
find the few that do (their path is live below, deleted by this layer, or repeated in
it), only those and the whiteouts take the per-entry path, and the rest enter the tree
in one dict update. So 50,000 entries cost a few C loops, not 50,000 Python steps. A
whiteout, an opaque directory or a file over a directory finds the subtree it hides by
bisecting a sorted snapshot of the paths, made only for the layers that need one.
tests/analysis_reference.py keeps the entry-by-entry replay this must
match exactly.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Sequence
from itertools import chain, compress
from operator import itemgetter

from lamina.analysis._model import (
    Duplicate,
    Hidden,
    ImageReport,
    LayerInput,
    LayerReport,
    LineWaste,
    Totals,
)
from lamina.store import IndexEntry, LayerColumns

_Version = int  # (layer index << 32) | entry index in that layer: no tuple per entry
_Hidden = tuple[str, _Version, int, str]  # path, version, hiding layer, kind
_SHIFT = 32
_ENTRY = (1 << _SHIFT) - 1
_MARKERS = ("whiteout", "opaque")
_is_special = "file".__ne__  # entries that are not regular files: few in most layers


def _version(layer: int, entry: int) -> _Version:
    return layer << _SHIFT | entry


def _split(v: _Version) -> tuple[int, int]:
    """(layer index, entry index) of a version."""
    return v >> _SHIFT, v & _ENTRY


def _kind_of_rewrite(cols: Sequence[LayerColumns], old: _Version, new: _Version) -> str:
    (i, j), (k, m) = _split(old), _split(new)
    a, b = cols[i], cols[k]
    digest = a.digests[j]
    same = (
        digest is not None
        and digest == b.digests[m]
        and a.kinds[j] in ("file", "hardlink")
        and b.kinds[m] in ("file", "hardlink")
    )
    return "metadata-only" if same else "overwritten"


def _group(cols: Sequence[LayerColumns], version: _Version, path: str) -> tuple[int, str]:
    """The hardlink group of a version: (layer, the path whose entry holds the content)."""
    layer, j = _split(version)
    c = cols[layer]
    return (layer, c.links[j]) if c.kinds[j] == "hardlink" else (layer, path)


class _Stack:
    """The merged tree while the stack is replayed: path → the live version.

    Subtree queries (a whiteout or opaque directory, a file over a directory) are rare:
    they bisect a sorted snapshot of the paths taken before the layer, made only for
    layers that need one (cheap: the keys are sorted runs, one per layer).
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
        below = layer << _SHIFT
        for p in keys[lo:hi]:
            v = self.live.get(p)
            if v is not None and v < below:
                out.append((p, v))
        return out


def _columns(layers: Sequence[LayerInput]) -> list[LayerColumns]:
    return [LayerColumns.of(layer.entries) for layer in layers]


def analyze_image(image: str, layers: Sequence[LayerInput], base_layers: int = 0,
                  base: str = "") -> ImageReport:  # fmt: skip
    """The full report for an image whose layers (bottom first) are `layers`."""
    cols = _columns(layers)
    replay = _replay(cols)
    return _report(image, layers, cols, replay, base_layers, base)


def live_tree(layers: Sequence[LayerInput]) -> dict[str, tuple[int, IndexEntry]]:
    """What the merged image shows: path → (layer index, entry) of each live path."""
    cols = _columns(layers)
    out = {}
    for path, v in _replay(cols).live.items():
        i, j = _split(v)
        out[path] = (i, cols[i][j])
    return out


def live_paths(layers: Sequence[LayerInput]) -> list[str]:
    """Every path the merged image shows except directories (what --forbid looks at)."""
    cols = _columns(layers)
    return [p for p, v in _replay(cols).live.items() if _kind(cols, v) != "dir"]


def _kind(cols: Sequence[LayerColumns], v: _Version) -> str:
    return cols[v >> _SHIFT].kinds[v & _ENTRY]


class _Replay:
    """What replaying the stack found (see `_replay`)."""

    def __init__(self) -> None:
        self.stack = _Stack()
        self.live = self.stack.live
        self.hidden: list[_Hidden] = []
        self.markers: list[tuple[str, ...]] = []
        self.counts: list[tuple[int, int, int, int]] = []  # added, modified, removed, bytes
        self.links: list[str] = []  # paths written as hardlinks
        self.repeats = False  # a path written twice in one layer


def _replay(cols: Sequence[LayerColumns]) -> _Replay:
    """Replay the stack bottom up. Per layer, only the entries that meet an earlier
    version (their path is live below, deleted by this layer, or repeated in it) and
    the whiteouts take the per-entry path below; every other entry is new, added to the
    merged tree in bulk (set and dict operations over the whole column)."""
    out = _Replay()
    stack, live, hidden = out.stack, out.live, out.hidden
    for i, c in enumerate(cols):
        stack.start_layer()
        paths, kinds, n = c.paths, c.kinds, len(c.paths)
        special = list(compress(range(n), map(_is_special, kinds)))
        deletes = [j for j in special if kinds[j] in _MARKERS]
        pending: dict[str, _Version] = {}
        # Deletions apply to the layers below only: take them first.
        for j in deletes:
            path = paths[j]
            if kinds[j] == "whiteout":
                own = live.get(path)
                if own is not None and own >> _SHIFT < i:
                    pending[path] = live.pop(path)
            for p, v in stack.lower_under(path, i):
                pending[p] = v
                del live[p]
        marks = ["A"] * n
        removed = 0
        for j in deletes:
            if kinds[j] == "whiteout":
                marks[j] = "D"
                removed += 1
            else:
                marks[j] = "M"
        names = set(paths)
        meet = live.keys() & names
        if pending:
            meet |= pending.keys() & names
        if len(names) < n:  # a path twice in one layer: the later entry wins
            out.repeats = True
            meet.update(p for p, k in Counter(paths).items() if k > 1)
        skip = set(deletes)
        modified = 0
        for j in compress(range(n), map(meet.__contains__, paths)) if meet else ():
            if j in skip:
                continue
            path, kind = paths[j], kinds[j]
            old = pending.pop(path, None) if pending else None
            if old is None:
                old = live.get(path)
                if old is not None and kind != "dir" and _kind(cols, old) == "dir":
                    # A non-directory over a directory removes everything below it.
                    for p, v in stack.lower_under(path, i):
                        hidden.append((p, v, i, "deleted"))
                        del live[p]
            if old is not None:
                if not (kind == "dir" and _kind(cols, old) == "dir"):
                    hidden.append((path, old, i, _kind_of_rewrite(cols, old, _version(i, j))))
                marks[j] = "M"
                modified += 1
            live[path] = _version(i, j)
        # The rest is new here (and re-setting the entries just done changes nothing:
        # for a repeated path the last entry wins either way).
        first = _version(i, 0)
        if deletes:
            live.update((paths[j], first + j) for j in range(n) if j not in skip)
        else:
            live.update(zip(paths, range(first, first + n), strict=True))
        for p, v in pending.items():
            hidden.append((p, v, i, "deleted"))
        sizes = c.sizes
        file_bytes = sum(sizes) - sum(sizes[j] for j in special)
        out.links.extend(paths[j] for j in special if kinds[j] == "hardlink")
        out.markers.append(tuple(marks))
        out.counts.append((n - len(deletes) - modified, modified, removed, file_bytes))
    return out


def _report(
    image: str,
    layers: Sequence[LayerInput],
    cols: Sequence[LayerColumns],
    replay: _Replay,
    base_layers: int,
    base: str,
) -> ImageReport:
    live, hidden_raw, counts = replay.live, replay.hidden, replay.counts
    kinds = [c.kinds for c in cols]
    sizes = [c.sizes for c in cols]
    if replay.links or replay.repeats:
        payer = _content_payers(cols, replay)
    else:  # no hardlink, no path twice in a layer: each hidden file pays its own bytes
        payer = {}
        for row, (_path, v, _hider, _how) in enumerate(hidden_raw):
            at, j = v >> _SHIFT, v & _ENTRY
            if kinds[at][j] == "file":
                payer[row] = sizes[at][j]
    hidden: list[Hidden] = []
    stored_waste = [0] * len(layers)
    caused_waste = [0] * len(layers)
    for row, (path, v, hider, how) in enumerate(hidden_raw):
        at, j = v >> _SHIFT, v & _ENTRY
        entry_kind = kinds[at][j]
        if entry_kind in ("dir", "whiteout", "opaque"):
            continue
        wasted = payer.get(row, 0)
        hidden.append(Hidden(path, at, hider, how, wasted, entry_kind))
        stored_waste[at] += wasted
        caused_waste[hider] += wasted
    # Most wasted first, then by path and layer: two stable sorts on C keys.
    hidden.sort(key=itemgetter(0, 1))
    hidden.sort(key=itemgetter(4), reverse=True)
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
        duplicates=_duplicates(cols, live),
        totals=totals,
        user_totals=user_totals,
        base_layers=base_layers,
        base=base,
        lines=_lines(layers, hidden),
        markers=tuple(replay.markers),
    )


def _content_payers(cols: Sequence[LayerColumns], replay: _Replay) -> dict[int, int]:
    """Which hidden rows pay for their content's bytes: a content is a layer's file at a
    path, with every hardlink to it. A hardlinked content is wasted once, when its last
    path goes: by the last hider; content reached by a live hardlink is live even when
    its first path is hidden."""
    live = replay.live
    live_groups = {_group(cols, v, p) for p in replay.links if (v := live.get(p)) is not None}
    group_size: dict[tuple[int, str], int] = {}
    last: dict[tuple[int, str], tuple[int, int]] = {}  # group → (hider, row)
    for row, (path, v, hider, _how) in enumerate(replay.hidden):
        at, j = _split(v)
        entry_kind = cols[at].kinds[j]
        if entry_kind not in ("file", "hardlink"):
            continue
        group = _group(cols, v, path)
        if entry_kind == "file":
            group_size[group] = cols[at].sizes[j]
        if group not in live_groups:
            last[group] = max(last.get(group, (-1, -1)), (hider, row))
    return {row: group_size.get(group, 0) for group, (_hider, row) in last.items()}


def _duplicates(cols: Sequence[LayerColumns], live: dict[str, _Version]) -> tuple[Duplicate, ...]:
    """The same content at several live paths (hardlinks to one file count once).

    Only contents stored more than once anywhere in the stack can be duplicates: those
    are found over the digest columns first, then their live, non-empty paths."""
    digests = list(filter(None, chain.from_iterable(c.digests for c in cols)))
    if len(set(digests)) == len(digests):
        return ()
    twice = {d for d, k in Counter(digests).items() if k > 1}
    paths: dict[str, list[str]] = {}  # digest → its live paths
    for i, c in enumerate(cols):
        for j in compress(range(len(c.digests)), map(twice.__contains__, c.digests)):
            path = c.paths[j]
            if c.sizes[j] and live.get(path) == _version(i, j):
                paths.setdefault(c.digests[j] or "", []).append(path)
    out = []
    for digest, found in paths.items():
        groups: dict[tuple[int, str], list[str]] = {}
        for path in found:
            groups.setdefault(_group(cols, live[path], path), []).append(path)
        if len(groups) > 1:
            shown = tuple(sorted(min(members) for members in groups.values()))
            i, j = _split(live[found[0]])
            out.append(Duplicate(digest, cols[i].sizes[j], shown))
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
                i,
                layers[i].line(),
                layers[i].instruction(),
                sum(h.bytes for h in rows),
                len(rows),
                kinds,
            )
        )
    out.sort(key=lambda w: (-w.bytes, w.layer))
    return tuple(out)
