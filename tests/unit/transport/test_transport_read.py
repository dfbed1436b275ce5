"""Reading archives: format detection, synthesized manifests, verified blob streams."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from transport_images import (
    build,
    config_json,
    docker_files,
    layer_tar,
    oci_files,
    sha,
    tar_bytes,
    write_tree,
)

import lamina.transport
from lamina.errors import DigestMismatchError, InvalidInputError, NotFoundError
from lamina.oci import (
    Descriptor,
    Index,
    Manifest,
    dump_json,
    host_platform,
    media_types,
    parse_reference,
)
from lamina.transport import open_archive

BUSYBOX = build(["busybox:1.36"], [{"bin/sh": b"#!sh\n"}, {"etc/passwd": b"root:x:0:0\n"}])
APP = build(["me/app:v1", "registry.local:5000/app:v1"], [{"bin/sh": b"#!sh\n"}, {"app": b"x"}])


def test_public_surface_is_all() -> None:
    public = {n for n in dir(lamina.transport) if not n.startswith("_")}
    assert set(lamina.transport.__all__) == public


def _read_all(reader: lamina.transport.ArchiveReader, desc: Descriptor) -> bytes:
    with reader.open_blob(desc) as stream:
        return stream.read()


def test_docker_archive_is_detected_and_gets_a_synthesized_manifest(tmp_path: Path) -> None:
    path = tmp_path / "a.tar"
    path.write_bytes(tar_bytes(docker_files([BUSYBOX, APP])))
    with open_archive(path) as archive:
        assert archive.format == "docker-archive"
        first, second = archive.images()
        assert first.synthesized and second.synthesized
        assert first.names == (parse_reference("busybox:1.36"),)
        assert [str(n) for n in second.names] == [
            "docker.io/me/app:v1",
            "registry.local:5000/app:v1",
        ]
        assert first.manifest.config == Descriptor(
            media_types.OCI_CONFIG, sha(BUSYBOX.config), len(BUSYBOX.config)
        )
        assert first.manifest.layers == BUSYBOX.manifest.layers
        assert first.diff_ids == tuple(BUSYBOX.diff_ids)
        assert first.config_bytes == BUSYBOX.config
        assert Manifest.from_bytes(first.manifest_bytes) == first.manifest
        for layer, raw in zip(first.manifest.layers, BUSYBOX.raw_layers, strict=True):
            assert _read_all(archive, layer) == raw
        assert _read_all(archive, first.manifest.config) == BUSYBOX.config


@pytest.mark.parametrize(
    ("compress", "media_type"),
    [("", media_types.OCI_LAYER), ("gzip", media_types.OCI_LAYER_GZIP),
     ("zstd", media_types.OCI_LAYER_ZSTD)],
)  # fmt: skip
def test_synthesized_layer_media_type_comes_from_magic_bytes(
    tmp_path: Path, compress: str, media_type: str
) -> None:
    image = build(["x:1"], [{"f": b"data" * 100}], compress)
    path = tmp_path / "a.tar"
    path.write_bytes(tar_bytes(docker_files([image])))
    with open_archive(path) as archive:
        (got,) = archive.images()
        (layer,) = got.manifest.layers
        assert layer.media_type == media_type
        assert layer.digest == sha(image.layers[0])
        assert layer.size == len(image.layers[0])
        assert _read_all(archive, layer) == image.layers[0]


def test_docker_save_symlinked_repeat_layer_is_followed_inside_the_archive(tmp_path: Path) -> None:
    raw = layer_tar({"f": b"same"})
    cfg = config_json([sha(raw), sha(raw)])
    files: dict[str, bytes | tuple[str, str]] = {
        "aaa/layer.tar": raw,
        "bbb/layer.tar": ("sym", "../aaa/layer.tar"),
        f"{sha(cfg)[7:]}.json": cfg,
        "manifest.json": json.dumps(
            [{"Config": f"{sha(cfg)[7:]}.json", "RepoTags": None,
              "Layers": ["aaa/layer.tar", "bbb/layer.tar"]}]
        ).encode(),
    }  # fmt: skip
    path = tmp_path / "a.tar"
    path.write_bytes(tar_bytes(files))
    with open_archive(path) as archive:
        (image,) = archive.images()
        assert image.names == ()
        assert [d.digest for d in image.manifest.layers] == [sha(raw), sha(raw)]
        assert _read_all(archive, image.manifest.layers[1]) == raw


@pytest.mark.parametrize("form", ["dir", "tar"])
def test_oci_layout_is_detected_with_names_from_annotations(tmp_path: Path, form: str) -> None:
    files = oci_files([BUSYBOX, APP])
    if form == "dir":
        path = tmp_path / "layout"
        write_tree(path, files)
    else:
        path = tmp_path / "layout.tar"
        path.write_bytes(tar_bytes(dict(files)))
    with open_archive(path) as archive:
        assert archive.format == ("oci-dir" if form == "dir" else "oci-archive")
        first, second = archive.images()
        assert not first.synthesized
        assert first.names == (parse_reference("busybox:1.36"),)
        assert first.ref_name == "1.36"
        assert first.manifest_bytes == BUSYBOX.manifest.to_bytes()
        assert second.names == (parse_reference("me/app:v1"),)
        assert _read_all(archive, second.manifest.layers[1]) == APP.layers[1]


def test_docker25_archive_prefers_the_oci_index_and_merges_repo_tags(tmp_path: Path) -> None:
    files: dict[str, bytes | tuple[str, str]] = dict(oci_files([BUSYBOX], tag_names=False))
    layers = [f"blobs/sha256/{sha(b)[7:]}" for b in BUSYBOX.layers]
    files["manifest.json"] = json.dumps(
        [{"Config": f"blobs/sha256/{sha(BUSYBOX.config)[7:]}", "RepoTags": ["busybox:1.36"],
          "Layers": layers}]
    ).encode()  # fmt: skip
    path = tmp_path / "a.tar"
    path.write_bytes(tar_bytes(files))
    with open_archive(path) as archive:
        assert archive.format == "docker-archive"
        (image,) = archive.images()
        assert not image.synthesized
        assert image.manifest_bytes == BUSYBOX.manifest.to_bytes()
        assert image.names == (parse_reference("busybox:1.36"),)


def test_same_manifest_listed_twice_is_one_image_with_both_names(tmp_path: Path) -> None:
    files = oci_files([BUSYBOX])
    index = json.loads(files["index.json"])
    second = dict(index["manifests"][0])
    second["annotations"] = {"io.containerd.image.name": "docker.io/library/busybox:latest"}
    index["manifests"].append(second)
    files["index.json"] = json.dumps(index).encode()
    write_tree(tmp_path, files)
    with open_archive(tmp_path) as archive:
        (image,) = archive.images()
        assert [n.familiar() for n in image.names] == ["busybox:1.36", "busybox:latest"]


def _nested(tmp_path: Path, arches: list[str]) -> Path:
    files = oci_files([BUSYBOX], tag_names=False)
    index = json.loads(files["index.json"])
    children = []
    for arch in arches:
        child = dict(index["manifests"][0])
        child["platform"] = {"os": "linux", "architecture": arch}
        children.append(child)
    inner = dump_json({"schemaVersion": 2, "mediaType": media_types.OCI_INDEX,
                       "manifests": children})  # fmt: skip
    files[f"blobs/sha256/{sha(inner)[7:]}"] = inner
    files["index.json"] = json.dumps(
        {"schemaVersion": 2, "manifests": [
            {"mediaType": media_types.OCI_INDEX, "digest": sha(inner), "size": len(inner),
             "annotations": {"io.containerd.image.name": "docker.io/library/multi:1"}}]}
    ).encode()  # fmt: skip
    write_tree(tmp_path, files)
    return tmp_path


def test_nested_index_resolves_to_this_machines_platform(tmp_path: Path) -> None:
    path = _nested(tmp_path, ["s390x", host_platform().architecture])
    with open_archive(path) as archive:
        (image,) = archive.images()
        assert image.names == (parse_reference("multi:1"),)
        assert image.manifest_bytes == BUSYBOX.manifest.to_bytes()


def test_nested_index_without_this_platform_is_not_found(tmp_path: Path) -> None:
    path = _nested(tmp_path, ["s390x", "riscv64"])
    arch = host_platform().architecture
    with pytest.raises(NotFoundError, match=f"no matching manifest for linux/{arch}"):
        open_archive(path)


def test_a_layer_whose_bytes_change_fails_at_eof_naming_blob_and_member(tmp_path: Path) -> None:
    write_tree(tmp_path, oci_files([BUSYBOX]))
    layer = BUSYBOX.manifest.layers[0]
    blob = tmp_path / "blobs" / "sha256" / layer.digest[7:]
    with open_archive(tmp_path) as archive:
        data = bytearray(blob.read_bytes())
        data[600] ^= 1
        blob.write_bytes(bytes(data))
        stream = archive.open_blob(layer)
        stream.read(100)  # no verdict before the end
        with pytest.raises(DigestMismatchError) as caught:
            stream.read()
        assert layer.digest in str(caught.value) and layer.digest[7:] in str(caught.value)


def test_reading_writes_nothing(tmp_path: Path) -> None:
    write_tree(tmp_path / "layout", oci_files([BUSYBOX, APP]))
    (tmp_path / "a.tar").write_bytes(tar_bytes(docker_files([BUSYBOX])))

    def snapshot() -> list[tuple[str, int, int]]:
        return sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in tmp_path.rglob("*"))

    before = snapshot()
    for path in (tmp_path / "layout", tmp_path / "a.tar"):
        with open_archive(path) as archive:
            for image in archive.images():
                for layer in image.manifest.layers:
                    _read_all(archive, layer)
    assert snapshot() == before


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (b"just text, not a tar" * 100, InvalidInputError, "tar"),
        (gzip.compress(tar_bytes({"manifest.json": b"[]"})), InvalidInputError, "compressed"),
        (tar_bytes({"hello": b"x"}), InvalidInputError, "neither an OCI layout"),
    ],
)
def test_what_is_not_an_archive_is_refused(
    tmp_path: Path, content: bytes, error: type[Exception], message: str
) -> None:
    path = tmp_path / "x"
    path.write_bytes(content)
    with pytest.raises(error, match=message):
        open_archive(path)


def test_missing_path_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        open_archive(tmp_path / "nope.tar")


def test_empty_dir_is_not_a_layout(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="neither"):
        open_archive(tmp_path)
    assert os.listdir(tmp_path) == []


def test_index_value_round_trips_through_lamina_oci(tmp_path: Path) -> None:
    write_tree(tmp_path, oci_files([APP]))
    index = Index.from_bytes((tmp_path / "index.json").read_bytes())
    with open_archive(tmp_path) as archive:
        assert archive.images()[0].manifest_digest == index.manifests[0].digest
