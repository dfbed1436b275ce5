"""Recording a new image: config and manifest blobs, then the image record."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lamina.errors import InvalidInputError
from lamina.oci import MAX_DOCUMENT_BYTES, Descriptor, ImageConfig, Manifest, media_types
from lamina.store._content import BlobLease
from lamina.store._records import ImageRecord, LayerRecord

if TYPE_CHECKING:
    from lamina.store._store import Store


# An OCI manifest names OCI layer types; Docker's equal ones are renamed, not converted.
_OCI_LAYER_TYPE = {
    media_types.DOCKER_LAYER_GZIP: media_types.OCI_LAYER_GZIP,
    media_types.DOCKER_LAYER: media_types.OCI_LAYER,
}


def write_image(
    store: Store,
    config: ImageConfig | bytes,
    layers: Sequence[LayerRecord],
    *,
    lease: BlobLease,
    tags: Sequence[str] = (),
) -> ImageRecord:
    """Write `config` and an OCI manifest over `layers` (blobs already stored), then
    record the image and its `tags` in one transaction.

    The layers' blobs must be committed and held by `lease`; the config and
    manifest are added to it before they are written. Config bytes are stored as
    given (the image ID is their digest); an ImageConfig is encoded canonically.
    """
    config_bytes = config if isinstance(config, bytes) else config.to_bytes()
    if len(config_bytes) > MAX_DOCUMENT_BYTES:  # every later read of it would refuse it
        raise InvalidInputError(
            f"the image config would be {len(config_bytes)} bytes, more than the "
            f"{MAX_DOCUMENT_BYTES} lamina reads back",
            hint="keep ENV, LABEL and other settings small; put data in files",
        )
    config_blob = store.content.put_bytes(config_bytes, lease=lease)
    manifest = Manifest(
        config=Descriptor(media_types.OCI_CONFIG, config_blob.digest, config_blob.size),
        layers=tuple(
            Descriptor(
                _OCI_LAYER_TYPE.get(layer.media_type, layer.media_type), layer.digest, layer.size
            )
            for layer in layers
        ),
    )
    manifest_blob = store.content.put_bytes(manifest.to_bytes(), lease=lease)
    return store.add_image(
        manifest_blob.digest,
        config_blob.digest,
        layers,
        media_type=media_types.OCI_MANIFEST,
        tags=tags,
    )
