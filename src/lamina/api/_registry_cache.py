"""`build --cache-to/--cache-from type=registry`: the build cache through a registry.

Export writes every layer step of the build (`mode=max`: all stages; `min`, the
default: the target stage) as BuildKit's cache manifest and pushes it with its layer
blobs; only what the registry lacks travels, as for any push. Import reads such a
manifest and records its entries in this store's build cache, so the build that
follows finds its steps there and runs none of them. The layers of the entries are not
downloaded: each is recorded as a lazy layer (`_registry_lazy`: where its blob lives) and
fetched, verified, into its snapshot only when a step that runs or a command needs its
bytes. A cache that does not say a layer's tar size (BuildKit's) has that layer fetched
at import, since the image's manifest needs the size.
Built layers exist only as snapshots: they are exported as their gzip blobs (made once,
the same digest every time) and recorded on import as a build records them (by diff_id),
so the image built from the cache is the same image, manifest included.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from lamina.api._registry import layer_blob_for_push, open_client
from lamina.api._transfer import ingest_blob
from lamina.errors import DigestMismatchError, LaminaError
from lamina.layers import Compression
from lamina.oci import MAX_DOCUMENT_BYTES, Descriptor, Manifest, media_types, parse_reference
from lamina.store import BlobInfo, LayerRecord, Lease, RemoteLayer, Store
from lamina.transport import (
    CacheEntry,
    CacheLayer,
    LayerLimits,
    RegistryBlobs,
    RegistryClient,
    cache_manifest_parts,
    decode_cache,
    encode_cache,
    fetch_manifest,
    layer_blob,
    parse_cache_option,
    push_image,
)

if TYPE_CHECKING:
    from lamina.builder import BuildResult

Warn = Callable[[str], None]


def export_cache(store: Store, root: Path, result: BuildResult, spec: str) -> str:
    """Push the build's cache as `spec` says; the cache manifest's digest."""
    fields = parse_cache_option(spec, "--cache-to")
    ref = parse_reference(fields["ref"])
    steps = [
        s for s in result.cache_steps
        if fields.get("mode", "min") == "max" or s.stage == result.target_stage
    ]  # fmt: skip
    with store.lease() as lease:
        entries: dict[str, CacheEntry] = {}
        for step in steps:
            layers = tuple(_exported(store, lease, layer) for layer in step.layers)
            entries.setdefault(step.key, CacheEntry(step.key, step.parent, layers, step.created))
        config_bytes, manifest_bytes = encode_cache(list(entries.values()))
        config_desc, blobs = cache_manifest_parts(manifest_bytes, "cache manifest")
        manifest = Manifest(config_desc, tuple(blobs.values()))

        def open_at(desc: Descriptor, offset: int) -> BinaryIO:
            if desc.digest == manifest.config.digest:
                return io.BytesIO(config_bytes[offset:])
            return layer_blob_for_push(store, desc, offset, root)

        with open_client(root, ref.domain, store=store) as client:
            report = push_image(
                client, ref.path, ref.tag or "latest", manifest_bytes, media_types.OCI_MANIFEST,
                store.registry, open_at, manifest=manifest,
            )  # fmt: skip
    return report.manifest_digest


def _exported(store: Store, lease: Lease, layer: LayerRecord) -> CacheLayer:
    """A step's layer as the cache names it: a compressed blob, as BuildKit's are (its
    original one if the store kept it, else gzipped from the snapshot, deterministic)."""
    try:
        compressed = Compression.from_media_type(layer.media_type) is not Compression.NONE
    except LaminaError:
        compressed = False
    tar_size = store.layer_size(layer.diff_id) or layer.uncompressed_size
    if compressed and store.content.has(layer.digest):
        lease.add_blob(layer.digest)
        return CacheLayer(layer.digest, layer.diff_id, layer.media_type, layer.size, tar_size)
    if not store.has_layer(layer.diff_id):
        # A lazy layer: its blob is in a registry; the push mounts it or streams it through.
        for place in store.registry.remote_layers(layer.diff_id):
            return CacheLayer(place.digest, layer.diff_id, place.media_type, place.size,
                              tar_size)  # fmt: skip
    blob = layer_blob(store, lease, layer.diff_id, Compression.GZIP).descriptor
    return CacheLayer(blob.digest, layer.diff_id, blob.media_type, blob.size, tar_size)


def import_cache(store: Store, root: Path, spec: str, limits: LayerLimits, warn: Warn) -> int:
    """Record the entries of the cache `spec` names in this store; how many.

    A cache that does not exist (yet) is a warning, as BuildKit makes it: the build
    goes on without it.
    """
    fields = parse_cache_option(spec, "--cache-from")
    ref = parse_reference(fields["ref"])
    try:
        with open_client(root, ref.domain, store=store) as client:
            return _import(store, client, ref.path, ref.digest or ref.tag, limits)
    except LaminaError as exc:
        if isinstance(exc, DigestMismatchError):
            raise
        warn(f"--cache-from {fields['ref']}: {exc.message}; building without it")
        return 0


def _import(
    store: Store, client: RegistryClient, repository: str, target: str, limits: LayerLimits
) -> int:
    data, _, _ = fetch_manifest(client, repository, target)
    what = f"cache {client.domain}/{repository}:{target}"
    config_desc, blobs = cache_manifest_parts(data, what)
    source = RegistryBlobs(client, repository)
    if config_desc.size > MAX_DOCUMENT_BYTES:
        raise LaminaError(f"{what}: config of {config_desc.size} bytes is too large")
    entries = decode_cache(source.read_blob(config_desc, f"{what} config"), blobs, what)
    count = 0
    with store.lease() as lease:
        sizes: dict[str, int] = {}
        for entry in entries:
            layer = entry.layer
            record = None
            if layer is not None:
                if layer.digest not in sizes:
                    sizes[layer.digest] = _cache_layer(store, lease, source, layer, limits)
                    _remember_blob(store, layer)
                size = sizes[layer.digest]
                # Recorded as the build that made it records it: the snapshot is the layer.
                record = LayerRecord(layer.diff_id, layer.diff_id, media_types.OCI_LAYER,
                                     size, size)  # fmt: skip
            if store.get_cache(entry.key) is None:
                value = {"layer": asdict(record) if record else None, "created": entry.created}
                store.put_cache(entry.key, value, snapshots=[record.diff_id] if record else [])
                count += 1
        store.registry.remember(client.domain, repository, list(sizes))
    return count


def _cache_layer(
    store: Store,
    lease: Lease,
    source: RegistryBlobs,
    layer: CacheLayer,
    limits: LayerLimits,
) -> int:
    """A cache entry's layer in this store: its tar size. Not downloaded when the cache
    says its tar size (lamina's caches do): recorded as lazy (where its blob is) and
    fetched when a step or command needs its bytes. Otherwise (BuildKit's caches do not
    say) it is fetched now, since the image's manifest needs the size."""
    lease.add_snapshot(layer.diff_id)
    known = store.layer_size(layer.diff_id) if store.has_layer(layer.diff_id) else None
    if known is not None:
        return known
    client = source.client
    if layer.uncompressed_size is not None:
        store.registry.remember_layers([RemoteLayer(
            layer.diff_id, client.domain, source.repository, layer.digest, layer.size,
            layer.media_type)])  # fmt: skip
        return layer.uncompressed_size
    desc = Descriptor(layer.media_type, layer.digest, layer.size)
    size, _ = ingest_blob(
        store, lease, source, desc, layer.diff_id, limits, resumable=True,
        what=f"cache layer {desc.digest}",
    )  # fmt: skip
    return size


def _remember_blob(store: Store, layer: CacheLayer) -> None:
    """The cache's blob for this layer, so a later push or cache export of the layer names
    (and the registry is known to hold) the same digest instead of a new compression."""
    try:
        compression = Compression.from_media_type(layer.media_type)
    except LaminaError:
        return
    if compression is Compression.NONE:
        return
    store.remember_layer_blob(
        layer.diff_id, "registry:" + compression.value, BlobInfo(layer.digest, layer.size),
        layer.media_type,
    )  # fmt: skip


def import_caches(
    store: Store, root: Path, specs: Sequence[str], limits: LayerLimits, warn: Warn
) -> int:
    return sum(import_cache(store, root, spec, limits, warn) for spec in specs)
