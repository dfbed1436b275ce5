"""`build --cache-to/--cache-from type=registry`: the build cache through a registry.

Export writes every layer step of the build (`mode=max`: all stages; `min`, the
default: the target stage) as BuildKit's cache manifest and pushes it with its layer
blobs; only what the registry lacks travels, as for any push. Import reads such a
manifest and records its entries in this store's build cache, so the build that
follows finds its steps there and runs none of them. The layers of the entries are
fetched (verified, through the same ingest as a pull) before they are recorded,
since a cache record must point at content the store holds.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from lamina.api._registry import layer_blob_for_push, open_client
from lamina.api._transfer import _ingest_layer, _uncompressed
from lamina.errors import DigestMismatchError, LaminaError
from lamina.oci import MAX_DOCUMENT_BYTES, Descriptor, Manifest, media_types, parse_reference
from lamina.store import LayerRecord, Lease, Store
from lamina.transport import (
    CacheEntry,
    CacheLayer,
    RegistryBlobs,
    RegistryClient,
    cache_manifest_parts,
    decode_cache,
    encode_cache,
    fetch_manifest,
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
    entries: dict[str, CacheEntry] = {}
    for step in steps:
        layers = tuple(
            CacheLayer(layer.digest, layer.diff_id, layer.media_type, layer.size)
            for layer in step.layers
        )
        entries.setdefault(step.key, CacheEntry(step.key, step.parent, layers, step.created))
    config_bytes, manifest_bytes = encode_cache(list(entries.values()))
    config_desc, blobs = cache_manifest_parts(manifest_bytes, "cache manifest")
    manifest = Manifest(config_desc, tuple(blobs.values()))

    def open_at(desc: Descriptor, offset: int) -> BinaryIO:
        if desc.digest == manifest.config.digest:
            return io.BytesIO(config_bytes[offset:])
        return layer_blob_for_push(store, desc, offset)

    with open_client(root, ref.domain) as client:
        report = push_image(
            client, ref.path, ref.tag or "latest", manifest_bytes, media_types.OCI_MANIFEST,
            store.registry, open_at, manifest=manifest,
        )  # fmt: skip
    return report.manifest_digest


def import_cache(store: Store, root: Path, spec: str, max_bytes: int, warn: Warn) -> int:
    """Record the entries of the cache `spec` names in this store; how many.

    A cache that does not exist (yet) is a warning, as BuildKit makes it: the build
    goes on without it.
    """
    fields = parse_cache_option(spec, "--cache-from")
    ref = parse_reference(fields["ref"])
    try:
        with open_client(root, ref.domain) as client:
            return _import(store, client, ref.path, ref.digest or ref.tag, max_bytes)
    except LaminaError as exc:
        if isinstance(exc, DigestMismatchError):
            raise
        warn(f"--cache-from {fields['ref']}: {exc.message}; building without it")
        return 0


def _import(
    store: Store, client: RegistryClient, repository: str, target: str, max_bytes: int
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
                desc = Descriptor(layer.media_type, layer.digest, layer.size)
                lease.add_blob(layer.digest)
                if layer.digest not in sizes:
                    sizes[layer.digest] = _fetch_layer(store, source, desc, layer, lease, max_bytes)
                record = LayerRecord(layer.digest, layer.diff_id, layer.media_type, layer.size,
                                     sizes[layer.digest])  # fmt: skip
            if store.get_cache(entry.key) is None:
                value = {"layer": asdict(record) if record else None, "created": entry.created}
                store.put_cache(entry.key, value, blobs=[record.digest] if record else [])
                count += 1
        store.registry.remember(client.domain, repository, list(sizes))
    return count


def _fetch_layer(
    store: Store, source: RegistryBlobs, desc: Descriptor, layer: CacheLayer, lease: Lease,
    max_bytes: int,
) -> int:  # fmt: skip
    """The layer in the store (fetched unless there), its diff_id checked: its size."""
    if store.content.has(desc.digest):
        try:
            known = store.layer(desc.digest)
            if known.uncompressed_size is not None and known.diff_id == layer.diff_id:
                return known.uncompressed_size
        except LaminaError:
            pass
        diff_id, size = _uncompressed(store, desc, max_bytes)
    else:
        diff_id, size = _ingest_layer(source, desc, store, lease, max_bytes, resumable=True)
    if diff_id != layer.diff_id:
        raise DigestMismatchError(f"cache layer {desc.digest}: diff_id", layer.diff_id, diff_id)
    return size


def import_caches(
    store: Store, root: Path, specs: Sequence[str], max_bytes: int, warn: Warn
) -> int:
    return sum(import_cache(store, root, spec, max_bytes, warn) for spec in specs)
