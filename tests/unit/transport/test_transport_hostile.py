"""Hostile archives, one per threat: each must fail with a clear, typed error."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transport_images import build, config_json, docker_files, layer_tar, oci_files, sha, tar_bytes

from lamina.errors import DigestMismatchError, InvalidInputError, LaminaError, NotFoundError
from lamina.oci import Descriptor, dump_json, media_types
from lamina.transport import open_archive

IMAGE = build(["busybox:1"], [{"bin/sh": b"#!sh\n"}, {"etc/passwd": b"root:x:0:0\n"}])
Members = dict[str, bytes | tuple[str, str]]


def _docker(**entry_changes: object) -> Members:
    files: Members = docker_files([IMAGE])
    entries = json.loads(cast(bytes, files["manifest.json"]))
    entries[0].update(entry_changes)
    files["manifest.json"] = json.dumps(entries).encode()
    return files


def _oci(changes: dict[str, bytes | None] | None = None) -> Members:
    files: Members = dict(oci_files([IMAGE]))
    for name, data in (changes or {}).items():
        if data is None:
            del files[name]
        else:
            files[name] = data
    return files


def _blob(digest: str) -> str:
    return f"blobs/sha256/{digest[7:]}"


def _index(desc: dict[str, object]) -> bytes:
    return json.dumps({"schemaVersion": 2, "manifests": [desc]}).encode()


def _manifest_with(config: bytes, layers: list[bytes]) -> bytes:
    return dump_json(
        {"schemaVersion": 2, "mediaType": media_types.OCI_MANIFEST,
         "config": Descriptor(media_types.OCI_CONFIG, sha(config), len(config)).to_json(),
         "layers": [Descriptor(media_types.OCI_LAYER, sha(b), len(b)).to_json()
                    for b in layers]}
    )  # fmt: skip


def _pointing_at(manifest: bytes, extra: Members | None = None) -> Members:
    """An OCI layout whose index names `manifest` (stored as its digest says)."""
    files = _oci()
    files[f"blobs/sha256/{sha(manifest)[7:]}"] = manifest
    files["index.json"] = _index(
        {"mediaType": media_types.OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest)}
    )
    files.update(extra or {})
    return files


def _counts_mismatch_oci() -> Members:
    raw = layer_tar({"a": b"1"})
    config = config_json([sha(raw), sha(raw)])
    return _pointing_at(
        _manifest_with(config, [raw]),
        {f"blobs/sha256/{sha(config)[7:]}": config, f"blobs/sha256/{sha(raw)[7:]}": raw},
    )


def _manifest_digest_mismatch() -> Members:
    manifest = IMAGE.manifest.to_bytes()
    files = _oci()
    # same length, one layer digest changed: only the digest check can tell
    files[f"blobs/sha256/{sha(manifest)[7:]}"] = manifest.replace(L0[-4:].encode(), b"0000")
    return files


def _self_referencing_index() -> Members:
    # an index blob cannot name its own digest, so build a chain deeper than allowed
    files = _oci()
    inner = json.loads(files["index.json"])["manifests"][0]  # type: ignore[arg-type]
    inner["platform"] = {"os": "linux", "architecture": "amd64"}
    desc: dict[str, object] = inner
    for _ in range(6):
        data = dump_json({"schemaVersion": 2, "mediaType": media_types.OCI_INDEX,
                          "manifests": [desc]})  # fmt: skip
        files[f"blobs/sha256/{sha(data)[7:]}"] = data
        desc = {"mediaType": media_types.OCI_INDEX, "digest": sha(data), "size": len(data),
                "platform": {"os": "linux", "architecture": "amd64"}}  # fmt: skip
    files["index.json"] = _index(desc)
    return files


def _duplicate_member() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in [*docker_files([IMAGE]).items(), ("./manifest.json", b"[]")]:
            assert isinstance(data, bytes)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _huge_manifest_json() -> Members:
    files: Members = docker_files([IMAGE])
    entries = json.loads(cast(bytes, files["manifest.json"]))
    entries[0]["Padding"] = "x" * (9 << 20)
    files["manifest.json"] = json.dumps(entries).encode()
    return files


def _config_size_lies() -> Members:
    manifest = json.loads(IMAGE.manifest.to_bytes())
    manifest["config"]["size"] -= 1
    return _pointing_at(dump_json(manifest))


def _non_layer_media_type() -> Members:
    manifest = json.loads(IMAGE.manifest.to_bytes())
    manifest["layers"][0]["mediaType"] = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    return _pointing_at(dump_json(manifest))


IMAGE_HEX = sha(IMAGE.config)[7:]
WRONG_HEX = "0" * 64
L0 = sha(IMAGE.layers[0])

CASES: list[tuple[str, Callable[[], Members | bytes], type[Exception], str]] = [
    ("config_path_traversal", lambda: _docker(Config="../../etc/passwd"),
     InvalidInputError, "outside the archive"),
    ("layer_path_traversal", lambda: _docker(Layers=["../../etc/passwd", "x"]),
     InvalidInputError, "outside the archive"),
    ("layer_absolute_path", lambda: _docker(Layers=["/etc/passwd", "x"]),
     InvalidInputError, "absolute path"),
    ("layer_path_not_a_string", lambda: _docker(Layers=[{"a": 1}, "x"]),
     InvalidInputError, "not a path"),
    ("layer_symlink_out_of_archive",
     lambda: {**_docker(Layers=["evil/layer.tar", f"{L0[7:]}/layer.tar"]),
              "evil/layer.tar": ("sym", "../../../etc/passwd")},
     InvalidInputError, "outside the archive"),
    ("layer_absolute_symlink",
     lambda: {**_docker(Layers=["evil/layer.tar", f"{L0[7:]}/layer.tar"]),
              "evil/layer.tar": ("sym", "/etc/passwd")},
     InvalidInputError, "outside the archive"),
    ("layer_hardlink_out_of_archive",
     lambda: {**_docker(Layers=["evil/layer.tar", f"{L0[7:]}/layer.tar"]),
              "evil/layer.tar": ("hard", "../etc/passwd")},
     InvalidInputError, "outside the archive"),
    ("symlink_loop",
     lambda: {**_docker(Layers=["a/layer.tar", f"{L0[7:]}/layer.tar"]),
              "a/layer.tar": ("sym", "../b/layer.tar"), "b/layer.tar": ("sym", "../a/layer.tar")},
     InvalidInputError, "too many levels"),
    ("missing_layer_member", lambda: _docker(Layers=["gone/layer.tar", "x"]),
     NotFoundError, "gone/layer.tar"),
    ("missing_config_member", lambda: _docker(Config=f"{WRONG_HEX}.json"),
     NotFoundError, WRONG_HEX),
    ("config_named_by_another_digest",
     lambda: {**_docker(Config=f"{WRONG_HEX}.json"), f"{WRONG_HEX}.json": IMAGE.config},
     DigestMismatchError, IMAGE_HEX),
    ("fewer_layers_than_diff_ids", lambda: _docker(Layers=[f"{L0[7:]}/layer.tar"]),
     InvalidInputError, "1 files but the config lists 2"),
    ("layers_not_a_list", lambda: _docker(Layers="x"), InvalidInputError, "must be a list"),
    ("repo_tag_not_a_reference", lambda: _docker(RepoTags=["../../x:y"]),
     InvalidInputError, "RepoTags"),
    ("repo_tag_with_a_digest", lambda: _docker(RepoTags=["x@sha256:" + "0" * 64]),
     InvalidInputError, "invalid tag 'x@sha256:"),
    ("repo_tag_with_tag_and_digest", lambda: _docker(RepoTags=["x:1@sha256:" + "0" * 64]),
     InvalidInputError, "invalid tag 'x:1@sha256:"),
    ("repo_tag_without_a_tag", lambda: _docker(RepoTags=["x"]), InvalidInputError,
     "invalid tag 'x'"),
    ("manifest_json_not_a_list",
     lambda: {**docker_files([IMAGE]), "manifest.json": b'{"a": 1}'},
     InvalidInputError, "list of objects"),
    ("manifest_json_deeply_nested",
     lambda: {**docker_files([IMAGE]), "manifest.json": b"[" * 100000 + b"]" * 100000},
     InvalidInputError, "nested deeper"),
    ("manifest_json_huge", _huge_manifest_json, InvalidInputError, "allowed"),
    ("manifest_json_not_json", lambda: {**docker_files([IMAGE]), "manifest.json": b"[{"},
     InvalidInputError, "not valid JSON"),
    ("duplicate_member", _duplicate_member, InvalidInputError, "appears twice"),
    ("truncated_archive", lambda: tar_bytes(docker_files([IMAGE]))[:1500],
     InvalidInputError, "truncated"),
    ("index_json_deeply_nested", lambda: _oci({"index.json": b'{"a":' * 5000 + b"1" + b"}" * 5000}),
     InvalidInputError, "nested deeper"),
    ("index_non_sha256_digest",
     lambda: _oci({"index.json": _index({"mediaType": media_types.OCI_MANIFEST,
                                      "digest": "sha512:" + "ab" * 64, "size": 3})}),
     InvalidInputError, "not a sha256 digest"),
    ("index_digest_with_path",
     lambda: _oci({"index.json": _index({"mediaType": media_types.OCI_MANIFEST,
                                      "digest": "sha256:../../../../etc/passwd", "size": 3})}),
     InvalidInputError, "not a sha256 digest"),
    ("missing_manifest_blob",
     lambda: _oci({_blob(sha(IMAGE.manifest.to_bytes())): None}), NotFoundError, "no "),
    ("missing_config_blob", lambda: _oci({_blob(sha(IMAGE.config)): None}),
     NotFoundError, "no "),
    ("missing_layer_blob", lambda: _oci({_blob(L0): None}), NotFoundError, L0),
    ("manifest_digest_mismatch", _manifest_digest_mismatch, DigestMismatchError, "index.json"),
    ("config_digest_mismatch",
     lambda: _oci({_blob(sha(IMAGE.config)): IMAGE.config.replace(b"amd64", b"arm64")}),
     DigestMismatchError, sha(IMAGE.config)),
    ("config_size_lies", _config_size_lies, InvalidInputError, "descriptor says"),
    ("layers_and_diff_ids_counts_differ", _counts_mismatch_oci,
     InvalidInputError, "1 layers but the config lists 2"),
    ("index_nesting_too_deep", _self_referencing_index, InvalidInputError, "nested more than"),
    ("foreign_layer_media_type", _non_layer_media_type, InvalidInputError, "not a layer"),
    ("oci_layout_file_not_json", lambda: _oci({"oci-layout": b"nope"}),
     InvalidInputError, "oci-layout"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("threat", "make", "error", "message"), CASES, ids=[case[0] for case in CASES]
)
def test_hostile_archive_is_refused(
    tmp_path: Path,
    threat: str,
    make: Callable[[], Members | bytes],
    error: type[Exception],
    message: str,
) -> None:
    made = make()
    path = tmp_path / f"{threat}.tar"
    path.write_bytes(made if isinstance(made, bytes) else tar_bytes(made))
    with pytest.raises(error) as caught:
        open_archive(path).close()
    assert message in str(caught.value)
    assert sorted(os.listdir(tmp_path)) == [path.name]  # reading wrote nothing


def test_hostile_layer_content_fails_while_streaming(tmp_path: Path) -> None:
    files = _oci()
    layer = IMAGE.layers[0]
    files[f"blobs/sha256/{L0[7:]}"] = layer[:-1] + bytes([layer[-1] ^ 1])
    path = tmp_path / "a.tar"
    path.write_bytes(tar_bytes(files))
    with open_archive(path) as archive:
        (image,) = archive.images()
        with (
            archive.open_blob(image.manifest.layers[0]) as stream,
            pytest.raises(DigestMismatchError, match=f"blobs/sha256/{L0[7:]}"),
        ):
            stream.read()


def test_blob_larger_than_its_descriptor_is_refused(tmp_path: Path) -> None:
    files = _oci()
    files[f"blobs/sha256/{L0[7:]}"] = IMAGE.layers[0] + b"\0" * 512
    path = tmp_path / "a.tar"
    path.write_bytes(tar_bytes(files))
    with open_archive(path) as archive:
        (image,) = archive.images()
        with pytest.raises(InvalidInputError, match="descriptor says"):
            archive.open_blob(image.manifest.layers[0])


def test_blob_not_in_the_archive_is_not_found(tmp_path: Path) -> None:
    path = tmp_path / "a.tar"
    path.write_bytes(tar_bytes(docker_files([IMAGE])))
    with open_archive(path) as archive, pytest.raises(NotFoundError):
        archive.open_blob(Descriptor(media_types.OCI_LAYER, "sha256:" + WRONG_HEX, 1))


def _layout(tmp_path: Path) -> Path:
    root = tmp_path / "layout"
    for name, data in oci_files([IMAGE]).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_oci_dir_blob_symlink_out_of_the_layout_is_refused(tmp_path: Path) -> None:
    root = _layout(tmp_path)
    secret = tmp_path / "secret"
    secret.write_bytes(IMAGE.config)
    blob = root / "blobs" / "sha256" / sha(IMAGE.config)[7:]
    blob.unlink()
    blob.symlink_to(secret)
    with pytest.raises(InvalidInputError, match="symlink"):
        open_archive(root)


def test_oci_dir_blobs_dir_symlink_out_of_the_layout_is_refused(tmp_path: Path) -> None:
    root = _layout(tmp_path)
    (root / "blobs").rename(tmp_path / "elsewhere")
    (root / "blobs").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InvalidInputError, match="symlink"):
        open_archive(root)


def test_oci_dir_fifo_as_blob_is_refused_without_hanging(tmp_path: Path) -> None:
    root = _layout(tmp_path)
    blob = root / "blobs" / "sha256" / sha(IMAGE.config)[7:]
    blob.unlink()
    os.mkfifo(blob)
    with pytest.raises(InvalidInputError, match="not a file"):
        open_archive(root)


_VALID = {
    "docker": tar_bytes(docker_files([IMAGE])),
    "oci": tar_bytes(_oci()),
}


@pytest.mark.slow
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(sorted(_VALID)),
    flips=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(1, 255)), min_size=1, max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 1 << 20)),
)
def test_corrupted_archives_fail_only_with_lamina_errors(
    tmp_path: Path, kind: str, flips: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(_VALID[kind])
    for position, mask in flips:
        data[position % len(data)] ^= mask
    if cut is not None:
        del data[cut % len(data) :]
    path = tmp_path / "fuzz.tar"
    path.write_bytes(bytes(data))
    try:
        with open_archive(path) as archive:
            for image in archive.images():
                for desc in (image.manifest.config, *image.manifest.layers):
                    with archive.open_blob(desc) as stream:
                        stream.read()
    except LaminaError:
        pass  # a typed, explained refusal is the only acceptable failure


def test_uncompressed_layer_that_is_not_its_diff_id_fails_while_streaming(
    tmp_path: Path,
) -> None:
    # A plain layer's digest is its diff_id, taken from the config and checked on read.
    path = tmp_path / "a.tar"
    path.write_bytes(tar_bytes(_docker(Layers=[f"{sha(IMAGE.layers[1])[7:]}/layer.tar"] * 2)))
    with open_archive(path) as archive:
        (image,) = archive.images()
        with (
            archive.open_blob(image.manifest.layers[0]) as stream,
            pytest.raises(DigestMismatchError),
        ):
            stream.read()


def _named_oci(name: str) -> Members:
    """The OCI layout of IMAGE whose index names it `name` (containerd's annotation)."""
    files = _oci()
    index = json.loads(cast(bytes, files["index.json"]))
    index["manifests"][0]["annotations"] = {"io.containerd.image.name": name}
    files["index.json"] = json.dumps(index).encode()
    return files


def test_oci_name_with_another_digest_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "named.tar"
    path.write_bytes(tar_bytes(_named_oci(f"x@{sha(b'other')}")))
    with pytest.raises(InvalidInputError) as caught:
        open_archive(path).close()
    assert f"x@{sha(b'other')}" in str(caught.value)


@pytest.mark.parametrize(("suffix", "names"), [("", []), (":1", ["docker.io/library/x:1"])])
def test_oci_name_with_its_own_digest_keeps_only_a_tag(
    tmp_path: Path, suffix: str, names: list[str]
) -> None:
    digest = sha(IMAGE.manifest.to_bytes())
    path = tmp_path / "named.tar"
    path.write_bytes(tar_bytes(_named_oci(f"x{suffix}@{digest}")))
    with open_archive(path) as archive:
        (image,) = archive.images()
        assert image.manifest_digest == digest
        assert [str(name) for name in image.names] == names
