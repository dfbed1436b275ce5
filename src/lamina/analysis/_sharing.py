"""`--store`: which images share which layers, what sharing saves, and identical files
stored in different layers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class StoreImage:
    name: str  # a tag, or the short ID
    id: str
    layers: tuple[tuple[str, int], ...]  # (diff_id, uncompressed bytes), bottom first


@dataclass(frozen=True)
class SharedLayer:
    diff_id: str
    size: int
    images: tuple[str, ...]

    @property
    def saved_bytes(self) -> int:
        return self.size * (len(self.images) - 1)


@dataclass(frozen=True)
class SharedFile:
    digest: str
    size: int
    layers: int

    @property
    def saveable_bytes(self) -> int:
        return self.size * (self.layers - 1)


@dataclass(frozen=True)
class StoreReport:
    images: tuple[StoreImage, ...]
    layers: tuple[SharedLayer, ...]  # every distinct layer, most shared first
    files: tuple[SharedFile, ...]  # same content in several layers, largest first

    @property
    def logical_bytes(self) -> int:
        """What the images would take with nothing shared."""
        return sum(size for image in self.images for _, size in image.layers)

    @property
    def stored_bytes(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def saved_bytes(self) -> int:
        return self.logical_bytes - self.stored_bytes

    @property
    def duplicate_file_bytes(self) -> int:
        return sum(f.saveable_bytes for f in self.files)


def store_sharing(
    images: Sequence[StoreImage], shared_files: Sequence[tuple[str, int, int]]
) -> StoreReport:
    users: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    for image in images:
        for diff_id, size in image.layers:
            names = users.setdefault(diff_id, [])
            if image.name not in names:
                names.append(image.name)
            sizes[diff_id] = size
    layers = sorted(
        (SharedLayer(d, sizes[d], tuple(names)) for d, names in users.items()),
        key=lambda s: (-len(s.images), -s.size, s.diff_id),
    )
    files = sorted(
        (SharedFile(d, size, n) for d, size, n in shared_files),
        key=lambda f: (-f.saveable_bytes, f.digest),
    )
    return StoreReport(tuple(images), tuple(layers), tuple(files))
