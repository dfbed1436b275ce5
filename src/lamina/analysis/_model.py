"""The values analysis works on and returns: plain, frozen, JSON-ready."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from lamina.store import IndexEntry, LayerOrigin

FIXES = {
    "metadata-only": "set mode/owner where the file is written (COPY --chmod/--chown, or "
    "in the RUN that made it): a later chmod/chown stores the whole file again",
    "overwritten": "write the file once: drop the earlier copy or make it in one step",
    "deleted": "remove it in the same RUN that created it (or never add it): a later "
    "delete hides the bytes but still ships them",
}
"""The fix for each kind of hidden version."""


@dataclass(frozen=True)
class LayerInput:
    """One layer of an image as analysis sees it: store facts plus its index rows."""

    diff_id: str
    digest: str
    size: int  # stored (compressed) bytes
    uncompressed_size: int
    created_by: str
    origin: LayerOrigin | None
    entries: Sequence[IndexEntry]

    def line(self) -> str:
        """`Dockerfile:12` when lamina built it, else ''."""
        return self.origin.where() if self.origin is not None else ""

    def instruction(self) -> str:
        return self.origin.instruction if self.origin is not None else self.created_by


class Hidden(NamedTuple):
    """A version of `path` stored in layer `layer` that layer `hidden_by` hides (a tuple:
    a `chmod -R` or `rm -rf` over a big tree hides 50,000 of them)."""

    path: str
    layer: int
    hidden_by: int
    kind: str  # metadata-only | overwritten | deleted
    bytes: int  # wasted bytes (0 when a hardlink to the same content stays visible)
    entry_kind: str


@dataclass(frozen=True)
class LayerReport:
    index: int
    diff_id: str
    digest: str
    instruction: str
    line: str  # Dockerfile:LINE where known
    stage: str
    size: int  # uncompressed tar bytes
    compressed_size: int
    file_bytes: int  # regular-file bytes the layer stores
    added: int
    modified: int
    removed: int
    wasted_bytes: int  # bytes stored in this layer that later layers hide
    caused_waste_bytes: int  # bytes of lower layers this layer hides
    user: bool


@dataclass(frozen=True)
class Totals:
    """`total` = live + wasted regular-file bytes; efficiency = live ÷ total."""

    image_bytes: int
    total_bytes: int
    live_bytes: int
    wasted_bytes: int

    @property
    def efficiency(self) -> float:
        return self.live_bytes / self.total_bytes if self.total_bytes else 1.0

    @property
    def wasted_percent(self) -> float:
        return 100.0 * self.wasted_bytes / self.total_bytes if self.total_bytes else 0.0


@dataclass(frozen=True)
class Duplicate:
    digest: str
    size: int
    paths: tuple[str, ...]

    @property
    def saveable_bytes(self) -> int:
        return self.size * (len(self.paths) - 1)


@dataclass(frozen=True)
class LineWaste:
    """Waste caused by one instruction (the layer that hid the bytes)."""

    layer: int
    line: str
    instruction: str
    bytes: int
    paths: int
    kinds: tuple[str, ...]


@dataclass(frozen=True)
class ImageReport:
    """Everything `lamina analyze IMAGE` says (see README: the JSON fields)."""

    image: str
    layers: tuple[LayerReport, ...]
    hidden: tuple[Hidden, ...]
    duplicates: tuple[Duplicate, ...]
    totals: Totals
    user_totals: Totals
    base_layers: int
    base: str
    lines: tuple[LineWaste, ...]
    markers: tuple[tuple[str, ...], ...] = field(default=(), repr=False)
    """Per layer, A|M|D for each of its entries, in entry order (opaque markers: M)."""
