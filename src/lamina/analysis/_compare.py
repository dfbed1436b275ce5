"""`--against`: two images compared by content — layers by diff_id, files by what each
image shows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import NamedTuple

from lamina.analysis._model import LayerInput
from lamina.analysis._waste import _ENTRY, _SHIFT, _columns, _kind, _replay
from lamina.store import LayerColumns


class FileChange(NamedTuple):
    """One path the two images show differently (a tuple: a comparison may list 50,000)."""

    path: str
    change: str  # added | removed | changed
    size_delta: int
    line: str  # Dockerfile:LINE of the layer that made it ('' if unknown)
    instruction: str


@dataclass(frozen=True)
class ChangeGroup:
    line: str
    instruction: str
    added: int
    removed: int
    changed: int
    size_delta: int


@dataclass(frozen=True)
class Comparison:
    image: str
    against: str
    shared_layers: tuple[str, ...]  # diff_ids in both, in the image's order
    only_image: tuple[int, ...]  # layer positions only the image has
    only_against: tuple[int, ...]
    files: tuple[FileChange, ...]
    groups: tuple[ChangeGroup, ...]

    @property
    def size_delta(self) -> int:
        return sum(f.size_delta for f in self.files)


def _same(a: LayerColumns, i: int, b: LayerColumns, j: int) -> bool:
    return (a.kinds[i], a.digests[i], a.sizes[i], a.links[i]) == (
        b.kinds[j], b.digests[j], b.sizes[j], b.links[j]
    ) and (a.modes[i], a.uids[i], a.gids[i]) == (b.modes[j], b.uids[j], b.gids[j])  # fmt: skip


def compare_images(
    image: str, layers: Sequence[LayerInput], against: str, other: Sequence[LayerInput]
) -> Comparison:
    """What `image` changes relative to `against` (the baseline)."""
    ids = [layer.diff_id for layer in layers]
    other_ids = [layer.diff_id for layer in other]
    theirs, ours = set(other_ids), set(ids)
    shared = tuple(d for d in ids if d in theirs)
    only_image = tuple(i for i, d in enumerate(ids) if d not in theirs)
    only_against = tuple(i for i, d in enumerate(other_ids) if d not in ours)
    cols, other_cols = _columns(layers), _columns(other)
    mine, base = _replay(cols).live, _replay(other_cols).live
    # A version is an entry of a layer, and a layer (by diff_id) is the same in both
    # images: the paths that show the same version need no comparing. Below the first
    # layer the images do not share at the same position, equal versions are those.
    prefix = 0
    for a, b in zip(ids, other_ids, strict=False):
        if a != b:
            break
        prefix += 1
    bound = prefix << _SHIFT
    same = {p for p, v in mine.items() & base.items() if v < bound}
    # One row per path: (-|delta|, path, change, delta, who); `who` >= 0 is the image's
    # layer that made it, -1 - k the baseline's layer k whose path is gone.
    rows: list[tuple[int, str, str, int, int]] = []
    for path, v in mine.items():  # in layer order: paths in sorted runs, quick to sort
        if path in same:
            continue
        i, j = v >> _SHIFT, v & _ENTRY
        c = cols[i]
        if c.kinds[j] == "dir":
            continue
        w = base.get(path)
        if w is None or _kind(other_cols, w) == "dir":
            size = c.sizes[j]
            rows.append((-abs(size), path, "added", size, i))
            continue
        k, m = w >> _SHIFT, w & _ENTRY
        if (ids[i] == other_ids[k] and j == m) or _same(other_cols[k], m, c, j):
            continue
        delta = c.sizes[j] - other_cols[k].sizes[m]
        rows.append((-abs(delta), path, "changed", delta, i))
    for path, w in base.items():
        if path in same:
            continue
        k, m = w >> _SHIFT, w & _ENTRY
        c = other_cols[k]
        if c.kinds[m] == "dir" or ((now := mine.get(path)) is not None
                                   and _kind(cols, now) != "dir"):  # fmt: skip
            continue
        size = c.sizes[m]
        rows.append((-abs(size), path, "removed", -size, -1 - k))
    # Largest change first, then by path (each path is in one row): two stable sorts on
    # C keys, the first over nearly sorted paths.
    rows.sort(key=itemgetter(1))
    rows.sort(key=itemgetter(0))
    labels = {i: (layer.line(), layer.instruction()) for i, layer in enumerate(layers)}
    for k, gone in enumerate(other):
        labels[-1 - k] = (gone.line(), f"(only in {against}) {gone.instruction()}")
    files = list(map(FileChange._make, ((path, change, delta, *labels[who])
                                        for _, path, change, delta, who in rows)))  # fmt: skip
    totals: dict[tuple[str, str], list[int]] = {}  # (line, text) → added, removed, changed, delta
    column = {"added": 0, "removed": 1, "changed": 2}
    for _, _path, change, delta, who in rows:
        sums = totals.get(labels[who])
        if sums is None:
            sums = totals[labels[who]] = [0, 0, 0, 0]
        sums[column[change]] += 1
        sums[3] += delta
    groups = [ChangeGroup(line, text, *sums) for (line, text), sums in totals.items()]
    groups.sort(key=lambda g: (-abs(g.size_delta), g.line, g.instruction))
    return Comparison(image, against, shared, only_image, only_against, tuple(files),
                      tuple(groups))  # fmt: skip
