"""Manifests, indexes and configs: decoded from hostile bytes with bounds, encoded canonically."""

from __future__ import annotations

import json

import pytest

from lamina.errors import InvalidInputError
from lamina.oci import (
    Descriptor,
    History,
    ImageConfig,
    Index,
    Manifest,
    chain_id,
    media_types,
    sha256_digest,
)

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def _manifest(**overrides: object) -> bytes:
    doc: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": media_types.OCI_MANIFEST,
        "config": {"mediaType": media_types.OCI_CONFIG, "digest": D1, "size": 10},
        "layers": [{"mediaType": media_types.OCI_LAYER_GZIP, "digest": D2, "size": 20}],
    }
    doc.update(overrides)
    return json.dumps(doc).encode()


def test_manifest_round_trip_is_canonical() -> None:
    manifest = Manifest.from_bytes(_manifest())
    assert manifest.layers[0] == Descriptor(media_types.OCI_LAYER_GZIP, D2, 20)
    again = Manifest.from_bytes(manifest.to_bytes())
    assert again == manifest
    assert again.to_bytes() == manifest.to_bytes()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"schemaVersion": 1}, "schemaVersion"),
        ({"mediaType": "text/plain"}, "not an image manifest"),
        ({"layers": "x"}, "layers must be a list"),
        ({"layers": [{"mediaType": "x", "digest": "../../etc/passwd", "size": 1}]}, "not a sha256"),
        ({"layers": [{"mediaType": "x", "digest": D2, "size": -1}]}, "non-negative"),
        ({"config": {"mediaType": "text/plain", "digest": D1, "size": 1}}, "not an image config"),
    ],
)
def test_manifest_refuses_malformed(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Manifest.from_bytes(_manifest(**overrides))


def test_deeply_nested_json_is_bad_input_not_a_crash() -> None:
    with pytest.raises(InvalidInputError, match="nested deeper"):
        Manifest.from_bytes(b"[" * 100_000 + b"]" * 100_000)


def test_oversize_document_is_refused_before_parsing() -> None:
    with pytest.raises(InvalidInputError, match="larger than"):
        Index.from_bytes(b" " * (9 * 1024 * 1024))


def test_config_with_layer_and_metadata_step() -> None:
    config = ImageConfig.new(created="2024-01-01T00:00:00Z")
    config = config.with_layer(D1, History(created_by="ADD rootfs"))
    config = config.with_container_config(Cmd=["/bin/sh"])
    config = config.with_layer(None, History(created_by='CMD ["/bin/sh"]'))
    assert config.diff_ids == (D1,)
    assert [h.empty_layer for h in config.history] == [False, True]
    decoded = ImageConfig.from_bytes(config.to_bytes())
    assert decoded == config
    assert decoded.digest() == sha256_digest(config.to_bytes())
    assert decoded.container_config == {"Cmd": ["/bin/sh"]}


def test_config_refuses_bad_diff_ids() -> None:
    with pytest.raises(InvalidInputError, match="diff_id 0"):
        ImageConfig.from_bytes(b'{"rootfs": {"type": "layers", "diff_ids": ["nope"]}}')


def test_chain_id_follows_the_spec() -> None:
    assert chain_id([D1]) == D1
    assert chain_id([D1, D2]) == sha256_digest(f"{D1} {D2}".encode())


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("linux/amd64", "linux/amd64"),
        ("Linux/AMD64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/x86-64", "linux/amd64"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/armel", "linux/arm/v6"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/7", "linux/arm/v7"),
        ("linux/i386", "linux/386"),
        ("arm64", "linux/arm64"),
        ("s390x", "linux/s390x"),
        ("macos/arm64", "darwin/arm64"),
    ],
)
def test_platforms_are_normalised_as_containerd_does(text: str, want: str) -> None:
    from lamina.oci import Platform

    assert str(Platform.parse(text)) == want


def test_an_os_alone_means_this_machines_architecture() -> None:
    from lamina.oci import Platform, host_platform

    assert Platform.parse("linux") == host_platform()


@pytest.mark.parametrize(
    "text", ["", "/", "linux/", "linux/arm64/v8/x", "nonsense", "li nux/amd64"]
)
def test_a_platform_that_is_no_platform_is_refused(text: str) -> None:
    from lamina.oci import Platform

    with pytest.raises(ValueError, match="platform"):
        Platform.parse(text)
