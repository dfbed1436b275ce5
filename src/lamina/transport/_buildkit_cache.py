"""BuildKit's distributable build cache format, as lamina reads and writes it.

The cache is an OCI image manifest (BuildKit's `image-manifest=true`, its default now)
whose config is an `application/vnd.buildkit.cacheconfig.v0` document and whose layers
are the cached layer blobs, each annotated with its uncompressed digest
(`containerd.io/uncompressed`) and creation time (`buildkit/createdat`). BuildKit's
older form, an index listing the config among the blobs, is read too.

The config (BuildKit's `cache/remotecache/v1` spec)::

    {"layers":  [{"blob": "sha256:…", "parent": -1, "annotations": {…}}, …],
     "records": [{"digest": "sha256:<cache key>",
                  "layers": [{"layer": <index of the top of a layer chain>, "createdAt": …}],
                  "chains": [{"layers": [], "createdAt": …}],   (a step with no layer)
                  "inputs": [[{"link": <index of the record before>}]]}, …]}

A record's digest is lamina's cache key, so a lamina build on another machine finds
its steps there; BuildKit's own keys are computed differently, so the two builders
share the format and the registry, not each other's hits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lamina.errors import InvalidInputError
from lamina.oci import (
    Descriptor,
    check_digest,
    dump_json,
    is_digest,
    load_json_object,
    media_types,
    sha256_digest,
)

CACHE_CONFIG_MEDIA_TYPE = "application/vnd.buildkit.cacheconfig.v0"
ANNOTATION_UNCOMPRESSED = "containerd.io/uncompressed"
# lamina's own: a layer's tar size, so an import can record the layer without its bytes.
ANNOTATION_TAR_SIZE = "io.lamina.layer.uncompressed-size"
ANNOTATION_CREATED = "buildkit/createdat"
_MAX_RECORDS = 100_000


@dataclass(frozen=True)
class CacheLayer:
    """A cached layer blob: digest, diff_id, media type and size."""

    digest: str
    diff_id: str
    media_type: str
    size: int
    uncompressed_size: int | None = None
    """The tar's size (lamina's annotation): an import records the layer without it."""

    def descriptor(self, created: str = "") -> Descriptor:
        annotations = {ANNOTATION_UNCOMPRESSED: self.diff_id}
        if self.uncompressed_size is not None:
            annotations[ANNOTATION_TAR_SIZE] = str(self.uncompressed_size)
        if created:
            annotations[ANNOTATION_CREATED] = created
        return Descriptor(self.media_type, self.digest, self.size, annotations)


@dataclass(frozen=True)
class CacheEntry:
    """One build step's cache entry: its key, the key before it, the image's layers after
    it (bottom first; empty when the step made no layer) and when it was made."""

    key: str
    parent: str
    layers: tuple[CacheLayer, ...]
    created: str

    @property
    def layer(self) -> CacheLayer | None:
        """The step's own layer: the top of its chain."""
        return self.layers[-1] if self.layers else None


def encode_cache(entries: Sequence[CacheEntry]) -> tuple[bytes, bytes]:
    """(config bytes, manifest bytes) for `entries`."""
    nodes: dict[tuple[str, int], int] = {}
    layers_json: list[dict[str, Any]] = []
    blobs: dict[str, Descriptor] = {}

    def node(chain: tuple[CacheLayer, ...], created: str) -> int:
        parent = -1
        for layer in chain:
            found = nodes.get((layer.digest, parent))
            if found is None:
                found = len(layers_json)
                nodes[(layer.digest, parent)] = found
                annotations = {"mediaType": layer.media_type, "diffID": layer.diff_id,
                               "size": layer.size}  # fmt: skip
                layers_json.append({"blob": layer.digest, "parent": parent,
                                    "annotations": annotations})  # fmt: skip
                blobs.setdefault(layer.digest, layer.descriptor(created))
            parent = found
        return parent

    records: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    keys = {e.key for e in entries}
    for entry in entries:
        if entry.parent and entry.parent not in keys and entry.parent not in index:
            index[entry.parent] = len(records)
            records.append({"digest": entry.parent})
    for entry in entries:
        record: dict[str, Any] = {"digest": entry.key}
        if entry.layers:
            record["layers"] = [{"layer": node(entry.layers, entry.created),
                                 "createdAt": entry.created}]  # fmt: skip
        else:
            record["chains"] = [{"layers": [], "createdAt": entry.created}]
        index[entry.key] = len(records)
        records.append(record)
    for entry, record in zip(entries, records[len(records) - len(entries) :], strict=True):
        if entry.parent in index:
            record["inputs"] = [[{"link": index[entry.parent]}]]
    config = dump_json({"layers": layers_json, "records": records})
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_types.OCI_MANIFEST,
        "config": {
            "mediaType": CACHE_CONFIG_MEDIA_TYPE,
            "digest": sha256_digest(config),
            "size": len(config),
        },
        "layers": [d.to_json() for d in blobs.values()],
    }
    return config, dump_json(manifest)


def cache_manifest_parts(data: bytes, what: str) -> tuple[Descriptor, dict[str, Descriptor]]:
    """A cache manifest (or BuildKit's older index form): its config descriptor and its
    blobs by digest."""
    doc = load_json_object(data, what)
    items = doc.get("layers") if "config" in doc else doc.get("manifests")
    if not isinstance(items, list) or len(items) > _MAX_RECORDS:
        raise InvalidInputError(f"{what}: not a BuildKit cache manifest")
    descriptors = [Descriptor.from_json(d, f"{what} blob {n}") for n, d in enumerate(items)]
    if "config" in doc:
        config = Descriptor.from_json(doc["config"], f"{what} config")
    else:
        found = [d for d in descriptors if d.media_type == CACHE_CONFIG_MEDIA_TYPE]
        if len(found) != 1:
            raise InvalidInputError(f"{what}: no {CACHE_CONFIG_MEDIA_TYPE} in the index")
        config = found[0]
    if config.media_type != CACHE_CONFIG_MEDIA_TYPE:
        raise InvalidInputError(
            f"{what}: config type {config.media_type!r} is not a BuildKit cache",
            hint="--cache-from names a cache written with --cache-to, not an image",
        )
    return config, {d.digest: d for d in descriptors if d.digest != config.digest}


def decode_cache(config_bytes: bytes, blobs: dict[str, Descriptor], what: str) -> list[CacheEntry]:
    """The entries of a cache config whose layers are blobs of its manifest."""
    doc = load_json_object(config_bytes, what)
    raw_layers = doc.get("layers") or []
    raw_records = doc.get("records") or []
    if not isinstance(raw_layers, list) or not isinstance(raw_records, list):
        raise InvalidInputError(f"{what}: layers and records must be lists")
    if len(raw_layers) > _MAX_RECORDS or len(raw_records) > _MAX_RECORDS:
        raise InvalidInputError(f"{what}: too many layers or records")
    nodes: list[tuple[CacheLayer, int]] = []
    for n, item in enumerate(raw_layers):
        if not isinstance(item, dict):
            raise InvalidInputError(f"{what}: layer {n} is not an object")
        digest = check_digest(item.get("blob"), f"{what} layer {n}")
        parent = item.get("parent", 0)
        if not isinstance(parent, int) or not -1 <= parent < n:
            raise InvalidInputError(f"{what}: layer {n} has parent {parent!r}, not an earlier one")
        desc = blobs.get(digest)
        if desc is None:
            raise InvalidInputError(f"{what}: layer {n} blob {digest} is not in the manifest")
        notes = item.get("annotations")
        if not isinstance(notes, dict):
            notes = {}
        diff_id = desc.annotations.get(ANNOTATION_UNCOMPRESSED) or str(notes.get("diffID", ""))
        if not is_digest(diff_id):
            raise InvalidInputError(f"{what}: layer {n} ({digest}) has no uncompressed digest")
        if not media_types.is_layer_type(desc.media_type):
            raise InvalidInputError(f"{what}: layer {n} has media type {desc.media_type!r}")
        said = desc.annotations.get(ANNOTATION_TAR_SIZE, "")
        tar_size = int(said) if said.isdigit() and len(said) < 20 else None
        nodes.append((CacheLayer(digest, diff_id, desc.media_type, desc.size, tar_size), parent))

    def chain(top: int) -> tuple[CacheLayer, ...]:
        out: list[CacheLayer] = []
        while top != -1:
            layer, top = nodes[top]
            out.append(layer)
        return tuple(reversed(out))

    keys: list[str] = []
    for n, record in enumerate(raw_records):
        if not isinstance(record, dict):
            raise InvalidInputError(f"{what}: record {n} is not an object")
        keys.append(check_digest(record.get("digest"), f"{what} record {n}"))
    entries: list[CacheEntry] = []
    for n, record in enumerate(raw_records):
        parent = ""
        inputs = record.get("inputs") or []
        if isinstance(inputs, list) and inputs and isinstance(inputs[0], list) and inputs[0]:
            link = inputs[0][0].get("link") if isinstance(inputs[0][0], dict) else None
            if isinstance(link, int) and 0 <= link < len(keys):
                parent = keys[link]
        for result in record.get("layers") or []:
            top = result.get("layer") if isinstance(result, dict) else None
            if not isinstance(top, int) or not 0 <= top < len(nodes):
                raise InvalidInputError(f"{what}: record {n} names layer {top!r}")
            created = str(result.get("createdAt", ""))
            entries.append(CacheEntry(keys[n], parent, chain(top), created))
            break
        else:
            for result in record.get("chains") or []:
                if isinstance(result, dict) and result.get("layers") == []:
                    entries.append(
                        CacheEntry(keys[n], parent, (), str(result.get("createdAt", "")))
                    )
                    break
    return entries


def parse_cache_option(text: str, flag: str) -> dict[str, str]:
    """`type=registry,ref=R,mode=max` → a dict; only type=registry is supported."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise InvalidInputError(f"{flag} {text!r}: want key=value pairs (type=registry,ref=…)")
        fields[key.strip()] = value.strip()
    if fields.get("type", "registry") != "registry":
        raise InvalidInputError(
            f"{flag} {text!r}: only type=registry is supported",
            hint=f"{flag} type=registry,ref=REGISTRY/REPO:TAG",
        )
    if not fields.get("ref"):
        raise InvalidInputError(f"{flag} {text!r}: ref=REGISTRY/REPO:TAG is required")
    if fields.get("mode", "min") not in ("min", "max"):
        raise InvalidInputError(f"{flag} {text!r}: mode is min or max")
    return fields
