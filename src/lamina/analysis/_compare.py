"""`--against`: two images compared by content — layers by diff_id, files by what each
image shows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from lamina.analysis._model import LayerInput
from lamina.analysis._waste import _ENTRY, _SHIFT, _columns, _kind, _replay, _split
from lamina.store import LayerColumns


@dataclass(frozen=True)
class FileChange:
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
    theirs = {layer.diff_id for layer in other}
    ours = {layer.diff_id for layer in layers}
    shared = tuple(layer.diff_id for layer in layers if layer.diff_id in theirs)
    only_image = tuple(i for i, layer in enumerate(layers) if layer.diff_id not in theirs)
    only_against = tuple(i for i, layer in enumerate(other) if layer.diff_id not in ours)
    cols, other_cols = _columns(layers), _columns(other)
    mine, base = _replay(cols).live, _replay(other_cols).live
    # A version is an entry of a layer: the same layer (by diff_id) in both images shows
    # the same entry, with nothing to compare. Versions as (diff_id, entry index):
    ids = [layer.diff_id for layer in layers]
    other_ids = [layer.diff_id for layer in other]
    same = {p for p, v in mine.items() if (w := base.get(p)) is not None
            and w & _ENTRY == v & _ENTRY
            and other_ids[w >> _SHIFT] == ids[v >> _SHIFT]}  # fmt: skip
    files: list[FileChange] = []
    for path in mine.keys() - same:
        i, j = _split(mine[path])
        c = cols[i]
        if c.kinds[j] == "dir":
            continue
        old = base.get(path)
        layer = layers[i]
        if old is None or _kind(other_cols, old) == "dir":
            files.append(FileChange(path, "added", c.sizes[j], layer.line(),
                                    layer.instruction()))  # fmt: skip
            continue
        k, m = _split(old)
        if not _same(other_cols[k], m, c, j):
            files.append(FileChange(path, "changed", c.sizes[j] - other_cols[k].sizes[m],
                                    layer.line(), layer.instruction()))  # fmt: skip
    for path in base.keys() - same:
        i, j = _split(base[path])
        c = other_cols[i]
        if c.kinds[j] == "dir" or ((v := mine.get(path)) is not None
                                   and _kind(cols, v) != "dir"):  # fmt: skip
            continue
        gone = other[i]
        files.append(FileChange(path, "removed", -c.sizes[j], gone.line(),
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
