"""Hostile archives through the whole `load` path: a clear error, nothing listed,
nothing written outside the store, and the store still consistent."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from api_helpers import outside_listing

from lamina.api import Lamina
from lamina.errors import DigestMismatchError, InvalidInputError, LaminaError, NotFoundError

pytestmark = pytest.mark.integration


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tar(
    members: dict[str, bytes], extra: Callable[[tarfile.TarFile], None] | None = None
) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if extra:
            extra(tar)
    return buf.getvalue()


def _layer(files: dict[str, bytes]) -> bytes:
    return _tar(files)


def _config(diff_ids: list[str]) -> bytes:
    return json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": "test"} for _ in diff_ids],
        }
    ).encode()


def docker_archive(
    layers: list[bytes],
    *,
    diff_ids: list[str] | None = None,
    layer_names: list[str] | None = None,
    manifest: bytes | None = None,
) -> bytes:
    config = _config(diff_ids if diff_ids is not None else [_sha(layer) for layer in layers])
    names = layer_names or [f"{n}/layer.tar" for n in range(len(layers))]
    members = {f"{_sha(config)[7:]}.json": config}
    members.update(dict(zip(names, layers, strict=False)))
    members["manifest.json"] = (
        manifest
        or json.dumps(
            [{"Config": f"{_sha(config)[7:]}.json", "RepoTags": ["evil:1"], "Layers": names}]
        ).encode()
    )
    return _tar(members)


GOOD_LAYER = _layer({"ok.txt": b"fine\n"})


def _gzip_bomb() -> bytes:
    # 64 MiB of zeros in a tar: compresses to ~64 KiB, decompresses past the 16 MiB limit.
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("zeros")
        info.size = 64 << 20
        tar.addfile(info, io.BytesIO(bytes(64 << 20)))
    return gzip.compress(raw.getvalue(), compresslevel=9)


CASES: dict[str, tuple[Callable[[], bytes], type[LaminaError]]] = {
    "manifest_layer_path_traversal": (
        lambda: docker_archive([GOOD_LAYER], layer_names=["../../etc/passwd"]),
        LaminaError,
    ),
    "manifest_absolute_config_path": (
        lambda: docker_archive(
            [GOOD_LAYER],
            manifest=json.dumps([{"Config": "/etc/passwd", "Layers": ["0/layer.tar"]}]).encode(),
        ),
        LaminaError,
    ),
    "diff_id_lies": (
        lambda: docker_archive([GOOD_LAYER], diff_ids=[_sha(b"something else")]),
        DigestMismatchError,
    ),
    "diff_id_lies_about_a_big_layer": (
        # > 4 MiB of many files: hashed on a thread, files written on another
        lambda: docker_archive(
            [_layer({f"d/f{n}": bytes([n % 251]) * 60_000 for n in range(100)})],
            diff_ids=[_sha(b"something else")],
        ),
        DigestMismatchError,
    ),
    "missing_layer_member": (
        lambda: docker_archive([], diff_ids=[_sha(GOOD_LAYER)], layer_names=["0/layer.tar"]),
        LaminaError,
    ),
    "more_layers_than_diff_ids": (
        lambda: docker_archive([GOOD_LAYER, GOOD_LAYER], diff_ids=[_sha(GOOD_LAYER)]),
        InvalidInputError,
    ),
    "deeply_nested_manifest": (
        lambda: docker_archive([GOOD_LAYER], manifest=b"[" * 50_000 + b"]" * 50_000),
        InvalidInputError,
    ),
    "gzip_bomb_layer": (
        lambda: docker_archive([_gzip_bomb()], diff_ids=[_sha(b"x")]),
        InvalidInputError,
    ),
    "truncated_gzip_layer": (
        lambda: docker_archive([gzip.compress(GOOD_LAYER)[:-20]], diff_ids=[_sha(GOOD_LAYER)]),
        InvalidInputError,
    ),
    "layer_entry_escapes_with_dotdot": (
        lambda: (lambda layer: docker_archive([layer]))(_layer({"../../../../tmp/evil": b"x"})),
        InvalidInputError,
    ),
    "not_an_archive": (lambda: b"this is not a tar file at all" * 100, InvalidInputError),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_archive_is_refused_and_changes_nothing(tmp_path: Path, case: str) -> None:
    make, error = CASES[case]
    lamina = Lamina(tmp_path / "root", max_layer_bytes=16 << 20)
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "keep").write_text("untouched")
    archive = tmp_path / "in" / "evil.tar"
    archive.parent.mkdir()
    archive.write_bytes(make())
    before_images = lamina.images()
    before_outside = outside_listing(sentinel, archive.parent, Path("/tmp/evil").parent / "evil-x")
    with pytest.raises(error) as raised:
        lamina.load(archive)
    assert str(raised.value)  # a message a user can act on
    assert lamina.images() == before_images
    assert outside_listing(sentinel, archive.parent, Path("/tmp/evil").parent / "evil-x") == (
        before_outside
    )
    assert not Path("/tmp/evil").exists()
    assert lamina.fsck().ok


def test_blob_that_lies_about_its_digest_in_an_oci_layout(tmp_path: Path) -> None:
    lamina = Lamina(tmp_path / "root")
    layout = tmp_path / "layout"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    config = _config([_sha(GOOD_LAYER)])
    layer_digest = _sha(GOOD_LAYER)
    (blobs / layer_digest[7:]).write_bytes(GOOD_LAYER.replace(b"fine", b"EVIL"))
    (blobs / _sha(config)[7:]).write_bytes(config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _sha(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest,
                    "size": len(GOOD_LAYER),
                }
            ],
        }
    ).encode()
    (blobs / _sha(manifest)[7:]).write_bytes(manifest)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": _sha(manifest),
                        "size": len(manifest),
                        "annotations": {"org.opencontainers.image.ref.name": "1"},
                    }
                ],
            }
        )
    )
    with pytest.raises(DigestMismatchError):
        lamina.load(layout)
    assert lamina.images() == []
    assert not any(
        p.name == layer_digest[7:] for p in (tmp_path / "root" / "blobs" / "sha256").iterdir()
    )
    assert lamina.fsck().ok


def test_missing_blob_in_an_oci_layout(tmp_path: Path) -> None:
    lamina = Lamina(tmp_path / "root")
    layout = tmp_path / "layout"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    digest = _sha(b"nothing")
    (layout / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": digest,
                        "size": 7,
                    }
                ],
            }
        )
    )
    with pytest.raises(NotFoundError):
        lamina.load(layout)
    assert lamina.images() == []
