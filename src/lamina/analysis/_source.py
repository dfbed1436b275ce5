"""Reading an image's layers for analysis: the store's layer records and file index."""

from __future__ import annotations

from collections.abc import Sequence

from lamina.analysis._model import LayerInput
from lamina.store import ImageRecord, Store


def image_layers(
    store: Store, image: ImageRecord, created_by: Sequence[str] = ()
) -> list[LayerInput]:
    """The image's layers with their index rows. `created_by`: the config history's
    text per layer (bottom first), used where no build recorded the Dockerfile line."""
    origins = store.file_index.origins(layer.diff_id for layer in image.layers)
    out = []
    for i, layer in enumerate(image.layers):
        out.append(
            LayerInput(
                diff_id=layer.diff_id,
                digest=layer.digest,
                size=layer.size,
                uncompressed_size=layer.uncompressed_size
                if layer.uncompressed_size is not None
                else layer.size,
                created_by=created_by[i] if i < len(created_by) else "",
                origin=origins.get(layer.diff_id),
                entries=store.file_index.columns(layer.diff_id),
            )
        )
    return out


def base_layer_count(image: ImageRecord, base: ImageRecord) -> int:
    """How many bottom layers `image` shares with `base`, in order (by diff_id)."""
    count = 0
    for mine, theirs in zip(image.layers, base.layers, strict=False):
        if mine.diff_id != theirs.diff_id:
            break
        count += 1
    return count
