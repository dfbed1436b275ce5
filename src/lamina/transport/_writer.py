"""Writing images as a docker-archive, an OCI layout directory or an OCI layout tar.

Output is deterministic: entries sorted by name, owner 0:0, fixed modes, one mtime
(0 or SOURCE_DATE_EPOCH), so the same images saved twice give identical bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol, cast

from lamina._rmtree import remove_tree
from lamina.errors import AlreadyExistsError, DigestMismatchError, InvalidInputError
from lamina.layers import Compression, open_layer_reader
from lamina.oci import (
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    Reference,
    digest_hex,
    dump_json,
    sha256_digest,
)
from lamina.store import fsync_dir
from lamina.transport._core import ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME
from lamina.transport._tarwrite import PositionalSource, TarWriter, copy_stream, default_mtime

_CHUNK = 1 << 20
OCI_LAYOUT = dump_json({"imageLayoutVersion": "1.0.0"})


class BlobProvider(Protocol):
    """Where a save reads blobs from (the store): a stream and a size per digest."""

    def open_blob(self, digest: str) -> BinaryIO: ...

    def blob_size(self, digest: str) -> int: ...


@dataclass(frozen=True)
class SaveImage:
    """One image to save: its names, manifest and config as stored, and its layers' facts.

    `uncompressed_sizes[i]` is the size of layer i's tar once decompressed: a
    docker-archive stores layers uncompressed and a tar header needs the size first.
    """

    names: tuple[Reference, ...]
    manifest_bytes: bytes
    manifest: Manifest
    config_bytes: bytes
    diff_ids: tuple[str, ...]
    uncompressed_sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        what = f"image {self.manifest.config.digest}"
        counts = {len(self.manifest.layers), len(self.diff_ids), len(self.uncompressed_sizes)}
        if len(counts) != 1:
            raise InvalidInputError(
                f"{what}: {len(self.manifest.layers)} layers, {len(self.diff_ids)} diff_ids and"
                f" {len(self.uncompressed_sizes)} sizes must be as many"
            )
        actual = sha256_digest(self.config_bytes)
        if actual != self.manifest.config.digest:
            raise DigestMismatchError(f"{what} config", self.manifest.config.digest, actual)

    @property
    def manifest_digest(self) -> str:
        return sha256_digest(self.manifest_bytes)


def _tagged(image: SaveImage) -> list[Reference]:
    return [name for name in image.names if name.tag]


# -- docker-archive ----------------------------------------------------------------------


def _layer_chunks(
    blobs: BlobProvider, layer: Descriptor, diff_id: str, size: int, what: str
) -> Iterator[bytes]:
    """The layer's uncompressed tar, bounded at `size`; its sha256 must be the diff_id."""
    digest = hashlib.sha256()
    with blobs.open_blob(layer.digest) as stream:
        reader = open_layer_reader(stream, max_bytes=size)
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
            yield chunk
    actual = "sha256:" + digest.hexdigest()
    if actual != diff_id:
        raise DigestMismatchError(f"{what} uncompressed", diff_id, actual)


def write_docker_archive(
    out: BinaryIO, images: list[SaveImage], blobs: BlobProvider, *, mtime: int | None = None
) -> None:
    """Write `images` as `docker save` does: manifest.json, repositories, configs, layers.

    Layers are written uncompressed as `<diff_id hex>/layer.tar`, each once however
    many images share it; a stored gzip or zstd layer is decompressed on the way.
    """
    tar = TarWriter(out, default_mtime() if mtime is None else mtime)
    entries: list[dict[str, object]] = []
    repositories: dict[str, dict[str, str]] = {}
    configs: dict[str, bytes] = {}
    layers: dict[str, tuple[Descriptor, str, int]] = {}
    seen_tags: set[str] = set()
    for image in images:
        layer_paths = []
        for layer, diff_id, size in zip(
            image.manifest.layers, image.diff_ids, image.uncompressed_sizes, strict=True
        ):
            layers.setdefault(digest_hex(diff_id), (layer, diff_id, size))
            layer_paths.append(f"{digest_hex(diff_id)}/layer.tar")
        config_name = f"{digest_hex(image.manifest.config.digest)}.json"
        configs[config_name] = image.config_bytes
        tags = []
        for name in _tagged(image):
            if name.familiar() in seen_tags:
                continue  # a tag names one image; the first given keeps it
            seen_tags.add(name.familiar())
            tags.append(name.familiar())
            if image.diff_ids:
                repositories.setdefault(name.familiar_name(), {})[name.tag] = digest_hex(
                    image.diff_ids[-1]
                )
        entries.append({"Config": config_name, "RepoTags": tags, "Layers": layer_paths})

    files: dict[str, bytes | tuple[Descriptor, str, int]] = dict(configs)
    files["manifest.json"] = json.dumps(entries, separators=(",", ":")).encode()
    if repositories:
        files["repositories"] = dump_json(repositories)
    for hex_id, layer_info in layers.items():
        files[f"{hex_id}/layer.tar"] = layer_info
    for member in sorted(files):
        if "/" in member:
            tar.add_dirs([member.split("/")[0]])
        content = files[member]
        if isinstance(content, bytes):
            tar.add_bytes(member, content)
            continue
        layer, diff_id, size = content
        what = f"layer {layer.digest}"
        if Compression.from_media_type(layer.media_type) is Compression.NONE:
            if layer.size != size:
                raise InvalidInputError(
                    f"{what}: an uncompressed layer of {layer.size} bytes said to hold {size}"
                )
            # as stored is as docker save writes it: copied in the kernel when it can be
            with _open_sized(blobs, layer) as stream:
                _add_blob(tar, member, layer.size, stream)
        else:
            tar.add_chunks(member, size, _layer_chunks(blobs, layer, diff_id, size, what))
    tar.finish()


# -- OCI image layout --------------------------------------------------------------------


def _index_for(images: list[SaveImage]) -> bytes:
    descriptors = []
    for image in images:
        config = ImageConfig.from_bytes(image.config_bytes)
        platform = Platform(config.os, config.architecture) if config.os else None
        base = (image.manifest.media_type, image.manifest_digest, len(image.manifest_bytes))
        tagged = _tagged(image)
        if not tagged:
            descriptors.append(Descriptor(*base, platform=platform))
        for name in tagged:
            annotations = {ANNOTATION_REF_NAME: name.tag, ANNOTATION_IMAGE_NAME: str(name)}
            descriptors.append(Descriptor(*base, annotations=annotations, platform=platform))
    return Index(tuple(descriptors)).to_bytes()


def _oci_blobs(images: list[SaveImage]) -> dict[str, bytes | Descriptor]:
    """Every blob once, by digest: small ones as bytes, layers as descriptors to stream."""
    found: dict[str, bytes | Descriptor] = {}
    for image in images:
        found[image.manifest_digest] = image.manifest_bytes
        found[image.manifest.config.digest] = image.config_bytes
        for layer in image.manifest.layers:
            found.setdefault(layer.digest, layer)
    return found


def _add_blob(tar: TarWriter, name: str, size: int, stream: BinaryIO) -> None:
    """A blob's entry: written by the blob itself at its place when it can (a layer rebuilt
    from its snapshot, into a file), else streamed."""
    if tar.takes(stream):
        tar.add_at(name, size, cast(PositionalSource, stream))
    else:
        tar.add_stream(name, size, stream)


def _open_sized(blobs: BlobProvider, layer: Descriptor) -> BinaryIO:
    size = blobs.blob_size(layer.digest)
    if size != layer.size:
        raise InvalidInputError(
            f"blob {layer.digest}: the store holds {size} bytes, the manifest says {layer.size}"
        )
    return blobs.open_blob(layer.digest)


def write_oci_archive(
    out: BinaryIO, images: list[SaveImage], blobs: BlobProvider, *, mtime: int | None = None
) -> None:
    """Write `images` as an OCI image layout in a tar (`oci-archive`), blobs as stored."""
    tar = TarWriter(out, default_mtime() if mtime is None else mtime)
    found = _oci_blobs(images)
    tar.add_dirs(["blobs", "blobs/sha256"])
    for digest in sorted(found):
        name = f"blobs/sha256/{digest_hex(digest)}"
        content = found[digest]
        if isinstance(content, bytes):
            tar.add_bytes(name, content)
        else:
            with _open_sized(blobs, content) as stream:
                _add_blob(tar, name, content.size, stream)
    tar.add_bytes("index.json", _index_for(images))
    tar.add_bytes("oci-layout", OCI_LAYOUT)
    tar.finish()


def _write_file(path: str, content: bytes | BinaryIO, size: int, mtime: int) -> None:
    with open(path, "xb") as out:
        if isinstance(content, bytes):
            out.write(content)
        elif isinstance(content, PositionalSource):
            written = content.write_at(out.fileno(), 0)
            if written != size:
                raise InvalidInputError(f"{path}: {written} bytes written, expected {size}")
        else:
            copy_stream(content, out, size, path)
        out.flush()
        os.fsync(out.fileno())
    os.utime(path, (mtime, mtime))


def write_oci_layout_dir(
    path: str | os.PathLike[str],
    images: list[SaveImage],
    blobs: BlobProvider,
    *,
    mtime: int | None = None,
) -> None:
    """Write `images` as an OCI image layout directory at `path`, which must not exist
    (or be empty). The layout is built beside it and renamed into place at the end."""
    target = os.path.abspath(os.fspath(path))
    if os.path.lexists(target) and not (os.path.isdir(target) and not os.listdir(target)):
        raise AlreadyExistsError(f"{target}: already exists", hint="choose a new directory")
    stamp = default_mtime() if mtime is None else mtime
    parent, base = os.path.split(target)
    work = tempfile.mkdtemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
    try:
        os.chmod(work, 0o755)
        blob_dir = os.path.join(work, "blobs", "sha256")
        os.makedirs(blob_dir)
        for digest, content in sorted(_oci_blobs(images).items()):
            dest = os.path.join(blob_dir, digest_hex(digest))
            if isinstance(content, bytes):
                _write_file(dest, content, len(content), stamp)
            else:
                with _open_sized(blobs, content) as stream:
                    _write_file(dest, stream, content.size, stamp)
        _write_file(os.path.join(work, "index.json"), _index_for(images), 0, stamp)
        _write_file(os.path.join(work, "oci-layout"), OCI_LAYOUT, 0, stamp)
        for directory in (blob_dir, os.path.dirname(blob_dir), work):
            os.utime(directory, (stamp, stamp))
        os.rename(work, target)
    except BaseException:
        remove_tree(work)
        raise
    fsync_dir(parent)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A file to write `path` through: a temporary file beside it, renamed into place
    only when the block ends without an exception, so no half file is ever left (a
    killed save leaves the old file or none, never part of the new one).

    Not fsynced, as `docker save -o` (docker/cli's CopyToFile: temp file, copy, rename)
    and skopeo do not: the bytes go to disk when the kernel writes them back. Forcing
    them out made a save of a snapshot write 400 MB while it read 400 MB from the same
    disk. A caller that needs them on disk before it goes on runs `sync`."""
    target = os.path.abspath(os.fspath(path))
    parent, base = os.path.split(target)
    fd, temp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb", buffering=_CHUNK) as out:
            yield out
            out.flush()
        os.chmod(temp, 0o644)
        os.rename(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
