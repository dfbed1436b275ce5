"""Values `load` returns, apart from the code that makes them (kept light to import)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LoadResult:
    """One image loaded: its names, its ID, and how many layer blobs were new."""

    names: tuple[str, ...]
    image_id: str
    digest: str
    layers_written: int
    layers_present: int
