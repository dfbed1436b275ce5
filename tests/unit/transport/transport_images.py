"""Small images and archives built in memory for the transport tests."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import zstandard

from lamina.layers import RebuiltTar, SplitRecorder, apply_layer
from lamina.oci import Descriptor, Manifest, dump_json, media_types, parse_reference
from lamina.transport import SaveImage


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def config_json(diff_ids: list[str], arch: str = "amd64") -> bytes:
    return dump_json(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": "test"} for _ in diff_ids],
        }
    )


def tar_bytes(members: dict[str, bytes | tuple[str, str]]) -> bytes:
    """A tar of regular files (bytes) and links (("sym"|"hard", target)), in given order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple):
                kind, target = content
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = target
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


@dataclass
class Built:
    """An image with its blobs; `save_image()` is what `lamina save` would be given."""

    names: list[str]
    layers: list[bytes]  # as stored (maybe compressed)
    raw_layers: list[bytes]  # uncompressed tars
    media_types: list[str]
    config: bytes

    @property
    def manifest(self) -> Manifest:
        layers = tuple(
            Descriptor(mt, sha(blob), len(blob))
            for mt, blob in zip(self.media_types, self.layers, strict=True)
        )
        config = Descriptor(media_types.OCI_CONFIG, sha(self.config), len(self.config))
        return Manifest(config, layers)

    @property
    def diff_ids(self) -> list[str]:
        return [sha(raw) for raw in self.raw_layers]

    def save_image(self) -> SaveImage:
        manifest = self.manifest
        return SaveImage(
            tuple(parse_reference(n) for n in self.names),
            manifest.to_bytes(),
            manifest,
            self.config,
            tuple(self.diff_ids),
            tuple(len(r) for r in self.raw_layers),
        )

    def blobs(self) -> dict[str, bytes]:
        out = {sha(blob): blob for blob in self.layers}
        out[sha(self.config)] = self.config
        out[sha(self.manifest.to_bytes())] = self.manifest.to_bytes()
        return out


def build(names: list[str], contents: list[dict[str, bytes]], compress: str = "") -> Built:
    raw = [layer_tar(c) for c in contents]
    if compress == "gzip":
        stored = [gzip.compress(r, mtime=0) for r in raw]
        types = [media_types.OCI_LAYER_GZIP] * len(raw)
    elif compress == "zstd":
        stored = [zstandard.ZstdCompressor().compress(r) for r in raw]
        types = [media_types.OCI_LAYER_ZSTD] * len(raw)
    else:
        stored, types = list(raw), [media_types.OCI_LAYER] * len(raw)
    return Built(names, stored, raw, types, config_json([sha(r) for r in raw]))


class DictBlobs:
    """A BlobProvider over a dict."""

    def __init__(self, *images: Built) -> None:
        self.data: dict[str, bytes] = {}
        for image in images:
            self.data.update(image.blobs())

    def open_blob(self, digest: str) -> BinaryIO:
        return io.BytesIO(self.data[digest])

    def blob_size(self, digest: str) -> int:
        return len(self.data[digest])


class FileBlobs:
    """A BlobProvider over files, so writers take their in-kernel copy path."""

    def __init__(self, root: Path, *images: Built) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        for image in images:
            for digest, data in image.blobs().items():
                (root / digest.split(":")[1]).write_bytes(data)

    def open_blob(self, digest: str) -> BinaryIO:
        return open(self.root / digest.split(":")[1], "rb")

    def blob_size(self, digest: str) -> int:
        return os.stat(self.root / digest.split(":")[1]).st_size


class SnapshotBlobs(DictBlobs):
    """A BlobProvider as the lean store is one: each plain layer is a snapshot plus its
    tar-split record, opened as a `RebuiltTar` (which can write itself at an offset);
    `written_at` counts the layers that did."""

    def __init__(self, root: Path, *images: Built) -> None:
        super().__init__(*images)
        self.written_at = 0
        self.layers: dict[str, tuple[Path, Path]] = {}
        for image in images:
            for raw in image.raw_layers:
                digest = sha(raw)
                snap, record = root / digest[7:], root / f"{digest[7:]}.tar-split"
                if digest in self.layers or digest not in self.data:
                    continue
                snap.mkdir(parents=True)
                with open(record, "wb") as f:
                    recorder = SplitRecorder(f)
                    apply_layer(io.BytesIO(raw), snap, overlay=True, record=recorder)
                    recorder.close()
                self.layers[digest] = (snap, record)

    def open_blob(self, digest: str) -> BinaryIO:
        if digest not in self.layers:
            return super().open_blob(digest)
        blobs = self

        class Counted(RebuiltTar):
            def write_at(self, fd: int, offset: int) -> int:
                blobs.written_at += 1
                return super().write_at(fd, offset)

        snap, record = self.layers[digest]
        return cast(BinaryIO, Counted(snap, record, digest, len(self.data[digest])))


def oci_files(images: list[Built], tag_names: bool = True) -> dict[str, bytes]:
    """The files of an OCI layout holding `images`, by hand (not through lamina)."""
    files: dict[str, bytes] = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}'}
    manifests = []
    for image in images:
        for digest, data in image.blobs().items():
            files[f"blobs/sha256/{digest.split(':')[1]}"] = data
        m = image.manifest.to_bytes()
        desc: dict[str, object] = {
            "mediaType": media_types.OCI_MANIFEST,
            "digest": sha(m),
            "size": len(m),
        }
        if tag_names and image.names:
            ref = parse_reference(image.names[0])
            desc["annotations"] = {
                "io.containerd.image.name": str(ref),
                "org.opencontainers.image.ref.name": ref.tag,
            }
        manifests.append(desc)
    files["index.json"] = json.dumps({"schemaVersion": 2, "manifests": manifests}).encode()
    return files


def docker_files(images: list[Built]) -> dict[str, bytes | tuple[str, str]]:
    """The files of a legacy `docker save` archive, by hand."""
    files: dict[str, bytes | tuple[str, str]] = {}
    entries = []
    for image in images:
        layers = []
        for blob in image.layers:
            name = f"{sha(blob).split(':')[1]}/layer.tar"
            files[name] = blob
            layers.append(name)
        config_name = f"{sha(image.config).split(':')[1]}.json"
        files[config_name] = image.config
        entries.append({"Config": config_name, "RepoTags": image.names, "Layers": layers})
    files["manifest.json"] = json.dumps(entries).encode()
    return files


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
