"""BuildKit's cache manifest: what lamina writes, it reads back; hostile configs refused."""

from __future__ import annotations

import json

import pytest

from lamina.errors import InvalidInputError
from lamina.oci import media_types, sha256_digest
from lamina.transport import (
    CACHE_CONFIG_MEDIA_TYPE,
    CacheEntry,
    CacheLayer,
    cache_manifest_parts,
    decode_cache,
    encode_cache,
    parse_cache_option,
)


def _d(n: int) -> str:
    return "sha256:" + f"{n:x}".rjust(64, "0")


BASE = CacheLayer(_d(1), _d(101), media_types.OCI_LAYER_GZIP, 10)
RUN = CacheLayer(_d(2), _d(102), media_types.OCI_LAYER_GZIP, 20)
COPY = CacheLayer(_d(3), _d(103), media_types.OCI_LAYER_GZIP, 30)
ENTRIES = [
    CacheEntry(_d(11), _d(10), (BASE, RUN), "2024-01-01T00:00:00Z"),
    CacheEntry(_d(12), _d(11), (), "2024-01-01T00:00:01Z"),  # a step that made no layer
    CacheEntry(_d(13), _d(12), (BASE, RUN, COPY), "2024-01-01T00:00:02Z"),
]


def test_round_trip_keeps_keys_parents_layers_and_times() -> None:
    config, manifest = encode_cache(ENTRIES)
    doc = json.loads(manifest)
    assert doc["mediaType"] == media_types.OCI_MANIFEST
    assert doc["config"] == {
        "mediaType": CACHE_CONFIG_MEDIA_TYPE,
        "digest": sha256_digest(config),
        "size": len(config),
    }
    assert [layer["digest"] for layer in doc["layers"]] == [_d(1), _d(2), _d(3)]
    assert doc["layers"][1]["annotations"]["containerd.io/uncompressed"] == _d(102)
    config_desc, blobs = cache_manifest_parts(manifest, "cache")
    assert config_desc.digest == sha256_digest(config)
    assert decode_cache(config, blobs, "cache") == ENTRIES
    # The shared chain is written once: BASE → RUN → COPY, three nodes.
    assert [n["parent"] for n in json.loads(config)["layers"]] == [-1, 0, 1]


def test_a_layer_tar_size_travels_so_an_import_needs_no_bytes() -> None:
    import dataclasses

    sized = dataclasses.replace(RUN, uncompressed_size=4096)
    entries = [CacheEntry(_d(11), _d(10), (BASE, sized), "2024-01-01T00:00:00Z")]
    config, manifest = encode_cache(entries)
    assert decode_cache(config, cache_manifest_parts(manifest, "c")[1], "c") == entries
    # A size that is not a plain number of bytes is ignored (the layer is then fetched).
    doc = json.loads(manifest)
    for bad in ("-1", "1e9", "12 ", "9" * 30):
        doc["layers"][1]["annotations"]["io.lamina.layer.uncompressed-size"] = bad
        blobs = cache_manifest_parts(json.dumps(doc).encode(), "c")[1]
        assert decode_cache(config, blobs, "c")[0].layers[1].uncompressed_size is None


def test_an_image_manifest_is_not_a_cache() -> None:
    manifest = json.dumps({"schemaVersion": 2, "config": {"mediaType": media_types.OCI_CONFIG,
                           "digest": _d(5), "size": 1}, "layers": []}).encode()  # fmt: skip
    with pytest.raises(InvalidInputError, match="not a BuildKit cache"):
        cache_manifest_parts(manifest, "cache")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c["layers"][0].update(parent=5),  # a parent after itself: a loop
        lambda c: c["layers"][0].update(blob=_d(99)),  # a blob the manifest lacks
        lambda c: c["records"][0].update(digest="not-a-digest"),
        lambda c: c["records"][1]["layers"][0].update(layer=42),
    ],
    ids=["parent-loop", "foreign-blob", "bad-key", "layer-out-of-range"],
)
def test_hostile_cache_configs_are_refused(mutate: object) -> None:
    config, manifest = encode_cache(ENTRIES)
    _, blobs = cache_manifest_parts(manifest, "cache")
    doc = json.loads(config)
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(InvalidInputError):
        decode_cache(json.dumps(doc).encode(), blobs, "cache")


def test_cache_options_take_only_registries() -> None:
    assert parse_cache_option("type=registry,ref=r/x:1,mode=max", "--cache-to")["mode"] == "max"
    with pytest.raises(InvalidInputError, match="only type=registry"):
        parse_cache_option("type=local,dest=/tmp/x", "--cache-to")
    with pytest.raises(InvalidInputError, match="ref="):
        parse_cache_option("type=registry", "--cache-from")
