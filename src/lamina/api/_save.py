"""`save`: images out of the store, as a docker-archive or an OCI layout.

Apart from `load` (`_transfer`): a save loads the archive writers and a layer's way out
of the store, none of the archive readers or the unpacking code.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, cast

from lamina.errors import InvalidInputError, LaminaError, NotFoundError
from lamina.layers import Compression
from lamina.oci import Descriptor, Manifest, Reference, media_types
from lamina.store import ImageRecord, Lease, Store
from lamina.transport import (
    SaveImage,
    atomic_output,
    digest_changed_note,
    layer_blob,
    open_layer_tar,
    write_docker_archive,
    write_oci_archive,
    write_oci_layout_dir,
)


class _StoreBlobs:
    """The store as the transport's BlobProvider: blobs from the content store, and
    uncompressed layers (digest = diff_id) rebuilt from their snapshots, verified."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def open_blob(self, digest: str) -> BinaryIO:
        if self._store.content.has(digest):
            return self._store.content.open(digest)
        return cast(BinaryIO, open_layer_tar(self._store, digest))

    def blob_size(self, digest: str) -> int:
        if self._store.content.has(digest):
            return self._store.content.size(digest)
        size = self._store.layer_size(digest)
        if size is None:
            raise NotFoundError(f"blob {digest} is not in the store")
        return size


def _layers_for_save(
    store: Store,
    lease: Lease,
    manifest: Manifest,
    image: ImageRecord,
    compression: Compression,
    notes: list[str],
) -> tuple[Descriptor, ...]:
    docker = manifest.media_type == media_types.DOCKER_MANIFEST
    if docker and compression is Compression.ZSTD:
        raise InvalidInputError(
            f"image {image.id}: a Docker schema2 manifest cannot name zstd layers",
            hint="save it with --compression gzip",
        )
    out = []
    for desc, record in zip(manifest.layers, image.layers, strict=True):
        if not store.has_layer(record.diff_id):
            if store.content.has(desc.digest):
                out.append(desc)  # an older store not migrated yet: the blob is the layer
                continue
            raise NotFoundError(f"layer {record.diff_id} of image {image.id} is not in the store")
        try:
            was = Compression.from_media_type(desc.media_type)
        except InvalidInputError:
            was = Compression.NONE
        if was is compression and store.content.has(desc.digest):
            out.append(desc)  # kept as it arrived, or cached from an earlier send
            continue
        blob = layer_blob(store, lease, record.diff_id, compression, docker_media_type=docker)
        if was is compression and blob.descriptor.digest != desc.digest:
            notes.append(digest_changed_note(record.diff_id, desc.digest, blob.descriptor.digest))
        out.append(blob.descriptor)
    return tuple(out)


def save_images(
    store: Store,
    images: Sequence[tuple[ImageRecord, tuple[Reference, ...]]],
    output: Path | BinaryIO,
    fmt: str,
    compression: Compression = Compression.GZIP,
) -> list[str]:
    """Write `images` (each with the names to save it under) as a docker-archive or OCI layout.

    A docker-archive holds uncompressed layers, rebuilt from the snapshots and checked
    against their diff_ids as they stream. An OCI layout holds each layer compressed with
    `compression` (gzip by default; `Compression.NONE` for plain tars): the blob it arrived
    as if that was kept, else the same blob every time (deterministic compression, cached).
    Returns notes for the user (a layer whose digest changed because its original blob was
    not kept, as podman says). Nothing is written if a snapshot was changed on disk.
    """
    notes: list[str] = []
    into = _output_target(output) if isinstance(output, Path) and fmt != "oci-dir" else None
    with store.lease() as lease:
        to_save = []
        for image, names in images:
            store.fetch_remote(image.layers, lease)  # lazy layers: their bytes are needed
            manifest_bytes = store.manifest_bytes(image)
            manifest = Manifest.from_bytes(manifest_bytes, f"manifest {image.digest}")
            config_bytes = store.config_bytes(image)
            want = Compression.NONE if fmt == "docker-archive" else compression
            layers = _layers_for_save(store, lease, manifest, image, want, notes)
            if layers != manifest.layers:
                manifest = dataclasses.replace(manifest, layers=layers)
                manifest_bytes = manifest.to_bytes()
            sizes = []
            for layer, record in zip(layers, image.layers, strict=True):
                size = store.layer_size(record.diff_id) or record.uncompressed_size
                if size is None:
                    raise NotFoundError(f"layer {record.diff_id}: size unknown")
                if layer.digest == record.diff_id and layer.size != size:
                    raise InvalidInputError(f"layer {record.diff_id}: sizes disagree")
                sizes.append(size)
            diff_ids = tuple(record.diff_id for record in image.layers)
            to_save.append(
                SaveImage(names, manifest_bytes, manifest, config_bytes, diff_ids, tuple(sizes))
            )
        blobs = _StoreBlobs(store)
        if fmt == "oci-dir":
            if not isinstance(output, Path):
                raise InvalidInputError("--format oci-dir needs an output directory")
            write_oci_layout_dir(output, to_save, blobs)
            return notes
        writer = write_docker_archive if fmt == "docker-archive" else write_oci_archive
        where = str(output) if isinstance(output, Path) else "stdout"
        try:
            if into is None:
                writer(cast(BinaryIO, output), to_save, blobs)
            elif into[1]:  # a FIFO: written into, as a shell's `>` does, never replaced
                with open(into[0], "wb") as out:
                    writer(out, to_save, blobs)
            else:
                with atomic_output(into[0]) as out:
                    writer(out, to_save, blobs)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise LaminaError(
                f"failed to save image: {exc.filename or where}: {exc.strerror or exc}"
            ) from exc
    return notes


def _output_target(output: Path) -> tuple[str, bool]:
    """Where `save -o` writes and whether that is a FIFO, checked first as docker save
    checks its output path (docker/cli's ValidateOutputPath). A regular file is replaced
    whole by a temporary file renamed over it; a symlink to one is written through (the
    link stays); a directory, a device or a socket is refused, never replaced."""
    shown = os.path.abspath(output)
    target = os.path.realpath(shown)
    bad = "failed to save image: invalid output path: "
    try:
        info = os.stat(target)
    except FileNotFoundError:
        parent = os.path.dirname(target)
        if not os.path.isdir(parent):
            raise InvalidInputError(
                f'{bad}directory "{os.path.dirname(shown)}" does not exist'
            ) from None
        return target, False
    except OSError as exc:
        raise LaminaError(f"failed to save image: {shown}: {exc.strerror or exc}") from exc
    if stat.S_ISREG(info.st_mode):
        return target, False
    if stat.S_ISFIFO(info.st_mode):
        return target, True
    if stat.S_ISDIR(info.st_mode):
        raise InvalidInputError(f'{bad}"{shown}" is a directory', hint="give a file name")
    kind = "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else "a socket"
    raise InvalidInputError(f'{bad}"{shown}" must be a regular file: got {kind}')
