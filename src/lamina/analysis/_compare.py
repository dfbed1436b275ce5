"""`--against`: two images compared by content — layers by diff_id, files by what each
image shows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from lamina.analysis._model import LayerInput
from lamina.analysis._waste import live_tree
from lamina.store import IndexEntry


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
