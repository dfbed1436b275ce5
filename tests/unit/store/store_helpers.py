"""Helpers for the store tests: fake layers and images made of small blobs."""

from __future__ import annotations

import json
from collections.abc import Sequence

from lamina.oci import sha256_digest
from lamina.store import LayerRecord, Store

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


def put_layer(store: Store, content: bytes) -> LayerRecord:
    """A fake layer blob: `content` stands for the compressed bytes, its diff_id is derived."""
    info = store.content.put_bytes(content)
    return LayerRecord(info.digest, sha256_digest(b"diff:" + content), LAYER_TYPE, info.size)


def add_image(
    store: Store, layers: Sequence[LayerRecord], config: bytes = b"{}", tags: Sequence[str] = ()
) -> str:
    """Write config and manifest blobs for `layers` and record the image; its manifest digest."""
    cfg = store.content.put_bytes(config)
    manifest = json.dumps(
        {"config": cfg.digest, "layers": [layer.digest for layer in layers]}, sort_keys=True
    ).encode()
    man = store.content.put_bytes(manifest)
    store.add_image(man.digest, cfg.digest, layers, media_type=MANIFEST_TYPE, tags=tags)
    return man.digest
