"""`lamina analyze`: the store's file index → reports (see `lamina.analysis`).

Layers that entered the store before the index existed (or by a path that does not
index yet) are indexed here on first use, from their stored blob, once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from lamina.analysis import (
    ImageReport,
    LayerInput,
    analyze_image,
    base_layer_count,
    image_layers,
)
from lamina.api._lamina import familiar
from lamina.errors import DigestMismatchError
from lamina.oci import Descriptor, ImageConfig, short_id
from lamina.store import ImageRecord, LayerRecord, Store

if TYPE_CHECKING:
    from lamina.analysis import Comparison, StoreReport

Progress = Callable[[int, int, str], None]
"""progress(done, total, diff_id): called before each layer is indexed and at the end."""


def index_layers(
    store: Store, layers: Sequence[LayerRecord], max_bytes: int, progress: Progress | None
) -> int:
    """Index every layer of `layers` that is not indexed yet; returns how many were."""
    todo: dict[str, LayerRecord] = {}
    for layer in layers:
        if layer.diff_id not in todo and not store.file_index.has(layer.diff_id):
            todo[layer.diff_id] = layer
    if not todo:
        return 0
    # Lazy layers (a registry holds them) are fetched, which indexes them on the way.
    with store.lease() as lease:
        store.fetch_remote(list(todo.values()), lease)
    todo = {d: layer for d, layer in todo.items() if not store.file_index.has(d)}
    # Reading layers takes the transport's and layers' code: loaded only when needed.
    from lamina.api._transfer import _uncompressed
    from lamina.layers import EntryCollector

    for done, layer in enumerate(todo.values()):
        if progress is not None:
            progress(done, len(todo), layer.diff_id)
        collector = EntryCollector()
        descriptor = Descriptor(layer.media_type, layer.digest, layer.size)
        with store.lease() as lease:
            lease.add_blob(layer.digest)
            diff_id, _size = _uncompressed(store, descriptor, max_bytes, collector)
        if diff_id != layer.diff_id:
            raise DigestMismatchError(f"layer {layer.digest}: diff_id", layer.diff_id, diff_id)
        store.file_index.put(diff_id, collector.entries)
    if progress is not None:
        progress(len(todo), len(todo), "")
    return len(todo)


def created_by(config: ImageConfig) -> list[str]:
    """The history text of each layer, bottom first (empty_layer entries skipped)."""
    return [h.created_by for h in config.history if not h.empty_layer]


def analyze(
    store: Store,
    name: str,
    image: ImageRecord,
    config: ImageConfig,
    base: ImageRecord | None,
    base_name: str | None,
) -> tuple[ImageReport, list[LayerInput]]:
    """The report for `image`; the user's layers start above `base` (or above the FROM
    image lamina recorded when it built `image`)."""
    layers = image_layers(store, image, created_by(config))
    if base is not None:
        count, shown = base_layer_count(image, base), base_name or short_id(base.id)
    else:
        count, shown = store.file_index.base(image.id) or (0, "")
    return analyze_image(name, layers, count, shown), layers


def compare(
    store: Store,
    name: str,
    image: ImageRecord,
    config: ImageConfig,
    against_name: str,
    against: ImageRecord,
    against_config: ImageConfig,
    layers: Sequence[LayerInput] | None = None,
) -> Comparison:
    from lamina.analysis import compare_images

    mine = layers if layers is not None else image_layers(store, image, created_by(config))
    theirs = image_layers(store, against, created_by(against_config))
    return compare_images(name, mine, against_name, theirs)


def store_report(store: Store) -> StoreReport:
    from lamina.analysis import StoreImage, store_sharing

    images = []
    for record in store.list_images():
        names = sorted(":".join(familiar(tag)) for tag in record.tags)
        name = names[0] if names else short_id(record.id)
        layers = tuple(
            (layer.diff_id, layer.uncompressed_size if layer.uncompressed_size is not None
             else layer.size)
            for layer in record.layers
        )  # fmt: skip
        images.append(StoreImage(name, record.id, layers))
    images.sort(key=lambda i: i.name)
    return store_sharing(images, store.file_index.shared_files())
