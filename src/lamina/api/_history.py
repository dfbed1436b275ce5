"""`docker image history` rows from an image config, as pure data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lamina.oci import ImageConfig

MISSING = "<missing>"


@dataclass(frozen=True)
class HistoryRow:
    """One step of an image: newest first; `id` is the image ID on the top row only."""

    id: str
    created: str
    created_by: str
    size: int
    comment: str
    empty_layer: bool


def history_rows(
    image_id: str, config: ImageConfig, layer_sizes: Sequence[int]
) -> list[HistoryRow]:
    """Pair each history entry with the layer it added (empty_layer entries add none).

    Docker shows the image ID on the newest row and `<missing>` below it, since the
    intermediate configs are not images of their own. Layers without a history entry
    (an image made without one) get a row each, with no text.
    """
    rows: list[HistoryRow] = []
    layer = 0
    for entry in config.history:
        size = 0
        if not entry.empty_layer:
            size = layer_sizes[layer] if layer < len(layer_sizes) else 0
            layer += 1
        rows.append(
            HistoryRow(
                MISSING, entry.created, entry.created_by, size, entry.comment, entry.empty_layer
            )
        )
    for size in layer_sizes[layer:]:
        rows.append(HistoryRow(MISSING, config.created, "", size, "", False))
    rows.reverse()
    if rows:
        top = rows[0]
        rows[0] = HistoryRow(
            image_id, top.created, top.created_by, top.size, top.comment, top.empty_layer
        )
    return rows
