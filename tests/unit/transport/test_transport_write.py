"""Writing docker-archive and OCI layouts: round trips, determinism, shared layers, atomicity."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from transport_images import DictBlobs, FileBlobs, SnapshotBlobs, build, sha

from lamina.errors import AlreadyExistsError, DigestMismatchError, InvalidInputError
from lamina.transport import (
    SaveImage,
    atomic_output,
    open_archive,
    write_docker_archive,
    write_oci_archive,
    write_oci_layout_dir,
)

BASE = {"bin/sh": b"#!sh\n" * 1000}
ONE = build(["busybox:1.36", "busybox:latest"], [BASE, {"etc/hosts": b"127.0.0.1 x\n"}])
TWO = build(["me/app:v1"], [BASE, {"app": b"app"}])


def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {
            m.name: (tar.extractfile(m).read() if m.isfile() else b"")  # type: ignore[union-attr]
            for m in tar.getmembers()
        }


def _docker(images: list[SaveImage], blobs: DictBlobs | FileBlobs, **kw: int) -> bytes:
    out = io.BytesIO()
    write_docker_archive(out, images, blobs, **kw)
    return out.getvalue()


@pytest.mark.parametrize("compress", ["", "gzip", "zstd"])
def test_docker_archive_round_trip_stores_layers_uncompressed(
    tmp_path: Path, compress: str
) -> None:
    one = build(["busybox:1.36"], [BASE, {"etc/hosts": b"x"}], compress)
    data = _docker([one.save_image()], DictBlobs(one))
    members = _members(data)
    for raw in one.raw_layers:
        assert members[f"{sha(raw)[7:]}/layer.tar"] == raw
    (entry,) = json.loads(members["manifest.json"])
    assert entry["Config"] == f"{sha(one.config)[7:]}.json"
    assert entry["RepoTags"] == ["busybox:1.36"]
    assert json.loads(members["repositories"]) == {"busybox": {"1.36": one.diff_ids[-1][7:]}}
    path = tmp_path / "a.tar"
    path.write_bytes(data)
    with open_archive(path) as archive:
        (image,) = archive.images()
        assert image.config_bytes == one.config
        assert image.diff_ids == tuple(one.diff_ids)
        assert [d.digest for d in image.manifest.layers] == one.diff_ids


def test_docker_archive_writes_shared_layers_once_and_tags_each_image(tmp_path: Path) -> None:
    data = _docker([ONE.save_image(), TWO.save_image()], DictBlobs(ONE, TWO))
    layer_members = [n for n in _members(data) if n.endswith("layer.tar")]
    assert len(layer_members) == 3
    path = tmp_path / "a.tar"
    path.write_bytes(data)
    with open_archive(path) as archive:
        one, two = archive.images()
        assert [n.familiar() for n in one.names] == ["busybox:1.36", "busybox:latest"]
        assert [n.familiar() for n in two.names] == ["me/app:v1"]


def test_docker_archive_of_a_gzip_layer_with_the_wrong_diff_id_fails() -> None:
    one = build(["x:1"], [BASE], "gzip")
    image = one.save_image()
    lying = SaveImage(image.names, image.manifest_bytes, image.manifest, image.config_bytes,
                      ("sha256:" + "1" * 64,), image.uncompressed_sizes)  # fmt: skip
    with pytest.raises(DigestMismatchError, match="uncompressed"):
        _docker([lying], DictBlobs(one))


def test_docker_archive_of_a_layer_bigger_than_said_fails() -> None:
    one = build(["x:1"], [BASE], "zstd")
    image = one.save_image()
    lying = SaveImage(image.names, image.manifest_bytes, image.manifest, image.config_bytes,
                      image.diff_ids, (100,))  # fmt: skip
    with pytest.raises(InvalidInputError):
        _docker([lying], DictBlobs(one))


@pytest.mark.parametrize("form", ["tar", "dir"])
def test_oci_layout_round_trip_keeps_manifests_and_blobs_as_stored(
    tmp_path: Path, form: str
) -> None:
    one = build(["busybox:1.36"], [BASE, {"etc/hosts": b"x"}], "gzip")
    images = [one.save_image(), TWO.save_image()]
    blobs = FileBlobs(tmp_path / "store", one, TWO)
    path = tmp_path / ("layout.tar" if form == "tar" else "layout")
    if form == "tar":
        with atomic_output(path) as out:
            write_oci_archive(out, images, blobs)
    else:
        write_oci_layout_dir(path, images, blobs)
    with open_archive(path) as archive:
        got = archive.images()
        assert [g.manifest_digest for g in got] == [i.manifest_digest for i in images]
        assert [n.familiar() for n in got[0].names] == ["busybox:1.36"]
        assert got[0].ref_name == "1.36"
        for image, source in zip(got, (one, TWO), strict=True):
            for layer, stored in zip(image.manifest.layers, source.layers, strict=True):
                with archive.open_blob(layer) as stream:
                    assert stream.read() == stored


def test_oci_index_annotates_tag_and_full_name(tmp_path: Path) -> None:
    write_oci_layout_dir(tmp_path / "l", [ONE.save_image()], DictBlobs(ONE))
    index = json.loads((tmp_path / "l" / "index.json").read_bytes())
    assert [m["annotations"] for m in index["manifests"]] == [
        {"io.containerd.image.name": "docker.io/library/busybox:1.36",
         "org.opencontainers.image.ref.name": "1.36"},
        {"io.containerd.image.name": "docker.io/library/busybox:latest",
         "org.opencontainers.image.ref.name": "latest"},
    ]  # fmt: skip
    assert json.loads((tmp_path / "l" / "oci-layout").read_bytes()) == {
        "imageLayoutVersion": "1.0.0"
    }


@pytest.mark.parametrize("writer", [write_docker_archive, write_oci_archive])
def test_saving_the_same_images_twice_gives_identical_bytes(
    tmp_path: Path, writer: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = [TWO.save_image(), ONE.save_image()]
    outputs = []
    for n in range(2):
        out = io.BytesIO()
        writer(out, images, FileBlobs(tmp_path / f"s{n}", ONE, TWO))  # type: ignore[operator]
        outputs.append(out.getvalue())
    assert outputs[0] == outputs[1]
    with tarfile.open(fileobj=io.BytesIO(outputs[0])) as tar:
        names = [m.name for m in tar.getmembers()]
    assert names == sorted(names)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    out = io.BytesIO()
    writer(out, images, DictBlobs(ONE, TWO))  # type: ignore[operator]
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        mtimes = {m.mtime for m in tar.getmembers()}
    assert mtimes == {1700000000}
    # A value that is not seconds is an error here too, as for build and import (it
    # used to be a silent 0).
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(InvalidInputError, match="SOURCE_DATE_EPOCH='yesterday'"):
        writer(io.BytesIO(), images, DictBlobs(ONE, TWO))  # type: ignore[operator]


def test_file_to_file_copy_matches_the_in_memory_copy(tmp_path: Path) -> None:
    images = [ONE.save_image()]
    path = tmp_path / "a.tar"
    with atomic_output(path) as out:
        write_oci_archive(out, images, FileBlobs(tmp_path / "store", ONE))
    memory = io.BytesIO()
    write_oci_archive(memory, images, DictBlobs(ONE))
    assert path.read_bytes() == memory.getvalue()


@pytest.mark.parametrize("writer", [write_docker_archive, write_oci_archive])
def test_layers_written_at_their_offsets_give_the_streamed_bytes(
    tmp_path: Path, writer: object
) -> None:
    """Into a file, a layer rebuilt from its snapshot writes itself at its place in the
    archive; into a pipe, or a file opened to append, it streams: the bytes are the same."""
    images = [TWO.save_image(), ONE.save_image()]
    memory = io.BytesIO()
    writer(memory, images, DictBlobs(ONE, TWO))  # type: ignore[operator]
    blobs = SnapshotBlobs(tmp_path / "snapshots", ONE, TWO)
    path = tmp_path / "a.tar"
    with atomic_output(path) as out:
        writer(out, images, blobs)  # type: ignore[operator]
    assert blobs.written_at == 3  # the layers: BASE once, and one of each image's own
    assert path.read_bytes() == memory.getvalue()
    blobs.written_at = 0
    appended = tmp_path / "b.tar"
    appended.write_bytes(b"before")
    with open(appended, "ab") as out:
        writer(out, images, blobs)  # type: ignore[operator]
    assert blobs.written_at == 0
    assert appended.read_bytes() == b"before" + memory.getvalue()
    piped = io.BytesIO()
    writer(piped, images, blobs)  # type: ignore[operator]
    assert blobs.written_at == 0 and piped.getvalue() == memory.getvalue()


def test_layout_dir_layers_written_by_themselves_are_the_stored_bytes(tmp_path: Path) -> None:
    blobs = SnapshotBlobs(tmp_path / "snapshots", ONE)
    write_oci_layout_dir(tmp_path / "l", [ONE.save_image()], blobs)
    assert blobs.written_at == 2
    for raw in ONE.raw_layers:
        assert (tmp_path / "l" / "blobs" / "sha256" / sha(raw)[7:]).read_bytes() == raw


def test_a_changed_snapshot_leaves_no_archive(tmp_path: Path) -> None:
    blobs = SnapshotBlobs(tmp_path / "snapshots", ONE)
    snap, _record = blobs.layers[ONE.diff_ids[0]]
    (snap / "bin" / "sh").write_bytes(b"#!sh\n" * 999 + b"#!sH\n")
    path = tmp_path / "out" / "a.tar"
    path.parent.mkdir()
    with pytest.raises(DigestMismatchError), atomic_output(path) as out:
        write_docker_archive(out, [ONE.save_image()], blobs)
    assert list(path.parent.iterdir()) == []


def test_interrupted_save_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "out.tar"
    broken = DictBlobs(ONE)
    del broken.data[ONE.manifest.layers[1].digest]
    with pytest.raises(KeyError), atomic_output(path) as out:
        write_docker_archive(out, [ONE.save_image()], broken)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_layout_dir_leaves_nothing_and_existing_dir_is_refused(
    tmp_path: Path,
) -> None:
    broken = DictBlobs(ONE)
    del broken.data[ONE.manifest.layers[1].digest]
    with pytest.raises(KeyError):
        write_oci_layout_dir(tmp_path / "l", [ONE.save_image()], broken)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "l").mkdir()
    (tmp_path / "l" / "x").write_bytes(b"")
    with pytest.raises(AlreadyExistsError):
        write_oci_layout_dir(tmp_path / "l", [ONE.save_image()], DictBlobs(ONE))


def test_save_image_refuses_a_config_that_is_not_its_digest() -> None:
    image = ONE.save_image()
    with pytest.raises(DigestMismatchError):
        SaveImage(image.names, image.manifest_bytes, image.manifest, image.config_bytes + b" ",
                  image.diff_ids, image.uncompressed_sizes)  # fmt: skip
