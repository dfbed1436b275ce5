"""`load` and `save`: archives in and out of the store."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, cast

from lamina.api._transfer_types import LoadResult
from lamina.errors import DigestMismatchError, InvalidInputError, NotFoundError
from lamina.layers import Compression, EntryCollector, Limits, open_layer_reader, scan_layer
from lamina.oci import Descriptor, Manifest, Reference, media_types
from lamina.store import ImageRecord, LayerRecord, Lease, Store, Writer, write_image
from lamina.transport import (
    BlobSource,
    ImageSource,
    SaveImage,
    SourceImage,
    atomic_output,
    open_archive,
    write_docker_archive,
    write_oci_archive,
    write_oci_layout_dir,
)

_CHUNK = 1 << 20


class _Tee(io.RawIOBase):
    """Reads from `source` and writes every byte read to `sink` on the way."""

    def __init__(self, source: BinaryIO, sink: Writer) -> None:
        self._source = source
        self._sink = sink

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._source.read(len(buffer))
        buffer[: len(data)] = data
        if data:
            self._sink.write(data)
        return len(data)


def _scan(
    stream: BinaryIO,
    max_bytes: int,
    diff_id: str | None = None,
    collect: EntryCollector | None = None,
) -> tuple[str, int]:
    """diff_id and size of a layer blob stream, read through as the applier would read it.

    Every entry is checked (names, whiteouts, bounds), so a layer that could never be
    unpacked is refused before any image points at it. Reads `stream` to its end. A
    known `diff_id` (an uncompressed blob, whose digest is checked elsewhere) is not
    hashed again. `collect` gathers the layer's file index on the way.
    """
    tar = open_layer_reader(stream, max_bytes)
    plain = tar.compression is Compression.NONE and diff_id is not None
    limits = Limits(max_total_bytes=max_bytes)
    stats = scan_layer(tar, limits=limits, digest=not plain, collect=collect)
    while tar.read(_CHUNK):
        pass
    if plain and diff_id is not None:
        return diff_id, stats.size
    assert stats.diff_id is not None
    return stats.diff_id, stats.size


def _uncompressed(
    store: Store, layer: Descriptor, max_bytes: int, collect: EntryCollector | None = None
) -> tuple[str, int]:
    """diff_id and size of a stored layer (see `_scan`)."""
    with store.content.open(layer.digest) as blob:
        # The verifying reader checks the digest at EOF: a plain tar's diff_id is it.
        return _scan(blob, max_bytes, layer.digest, collect)


def _ingest_layer(
    archive: BlobSource,
    layer: Descriptor,
    store: Store,
    lease: Lease,
    max_bytes: int,
    *,
    resumable: bool = False,
    collect: EntryCollector | None = None,
) -> tuple[str, int]:
    """Copy a layer blob into the store, checking it in the same pass; nothing is kept
    unless the digest and every entry check out. `collect` gathers its file index.

    `resumable` (a pull): the partial blob stays in ingest/ if the copy fails, and the
    next attempt asks the source only for the bytes after it; the layer is then checked
    from the store once the blob is complete.
    """
    ref = f"layer {layer.digest}" if resumable else None
    with store.content.writer(layer.digest, layer.size, lease=lease, ref=ref) as writer:
        if writer.offset:
            # The digest covers the bytes from before too: the writer re-hashed them.
            with archive.open_blob(layer, verify=False, offset=writer.offset) as source:
                while chunk := source.read(_CHUNK):
                    writer.write(chunk)
            writer.commit()
            return _uncompressed(store, layer, max_bytes, collect)
        # The writer checks the digest as it commits, so the source's stream need not.
        try:
            with archive.open_blob(layer, verify=False) as source:
                # Large reads below the tar reader: the store's hashing runs on 1 MiB
                # chunks rather than on each entry's pieces.
                tee = io.BufferedReader(_Tee(source, writer), buffer_size=_CHUNK)
                diff_id, size = _scan(cast(BinaryIO, tee), max_bytes, layer.digest, collect)
                while tee.read(_CHUNK):
                    pass
        except InvalidInputError as exc:
            # Bad bytes, not a broken transfer: nothing of them is worth resuming from.
            writer.close(keep=False)
            if isinstance(exc, DigestMismatchError) or layer.digest in exc.message:
                raise
            raise InvalidInputError(f"layer {layer.digest}: {exc.message}", exc.hint) from None
        writer.commit()
    return diff_id, size


def _known(store: Store, layer: Descriptor) -> LayerRecord | None:
    try:
        return store.layer(layer.digest)
    except NotFoundError:
        return None


def _same_content(store: Store, diff_id: str, lease: Lease) -> LayerRecord | None:
    known = store.layer_by_diff_id(diff_id)
    if known is None:
        return None
    lease.add_blob(known.digest)  # before looking: a prune running now cannot take it
    return known if store.content.has(known.digest) else None


def layer_record(
    store: Store,
    image: SourceImage,
    position: int,
    source: ImageSource,
    lease: Lease,
    max_bytes: int,
    *,
    resumable: bool = False,
) -> tuple[LayerRecord, bool]:
    """Layer `position` of `image` in the store (ingested unless there): its record and
    whether its blob was written. The diff_id must be the one the config lists."""
    layer = image.manifest.layers[position]
    diff_id = image.diff_ids[position]
    if layer.media_type not in media_types.LAYER_TYPES:
        raise InvalidInputError(
            f"layer {position} ({layer.digest}): media type {layer.media_type!r} is not a layer"
        )
    if image.synthesized and (same := _same_content(store, diff_id, lease)) is not None:
        # A docker-archive names layers by content only: one already stored, in any
        # compression, is the same layer and is not stored twice.
        return same, False
    lease.add_blob(layer.digest)
    written = False
    known = _known(store, layer) if store.content.has(layer.digest) else None
    # The file index is gathered in the pass that reads the layer anyway.
    index = None if store.file_index.has(diff_id) else EntryCollector()
    if known is not None and known.uncompressed_size is not None and index is None:
        # Checked when it was first stored; the blob is verified on every read.
        actual, size = known.diff_id, known.uncompressed_size
    elif store.content.has(layer.digest):
        actual, size = _uncompressed(store, layer, max_bytes, index)
    else:
        actual, size = _ingest_layer(
            source, layer, store, lease, max_bytes, resumable=resumable, collect=index
        )
        written = True
    if actual != diff_id:
        raise DigestMismatchError(
            f"layer {position} ({layer.digest}): diff_id in the config", diff_id, actual
        )
    if index is not None:
        store.file_index.put(diff_id, index.entries)
    return LayerRecord(layer.digest, diff_id, layer.media_type, layer.size, size), written


def _layer_records(
    store: Store, image: SourceImage, archive: ImageSource, lease: Lease, max_bytes: int
) -> tuple[list[LayerRecord], int]:
    records: list[LayerRecord] = []
    written = 0
    for position in range(len(image.manifest.layers)):
        record, new = layer_record(store, image, position, archive, lease, max_bytes)
        records.append(record)
        written += new
    return records, written


def load_archive(store: Store, path: Path, max_layer_bytes: int) -> list[LoadResult]:
    """Load every image of an archive; all their blobs go in before any image is listed.

    Blobs the store has are not written again. Any bad blob, digest or diff_id
    stops the load before an image is recorded, so none is ever half there.
    """
    results: list[LoadResult] = []
    with open_archive(path) as archive, store.lease() as lease:
        pending = []
        for image in archive.images():
            layers, written = _layer_records(store, image, archive, lease, max_layer_bytes)
            store.content.put_bytes(image.config_bytes, image.config_digest, lease=lease)
            if not image.synthesized:
                store.content.put_bytes(image.manifest_bytes, image.manifest_digest, lease=lease)
            pending.append((image, layers, written))
        for image, layers, written in pending:
            names = tuple(str(name) for name in image.names)
            if image.synthesized:
                # No manifest came with it: write one over the blobs the store holds.
                record = write_image(store, image.config_bytes, layers, lease=lease, tags=names)
            else:
                record = store.add_image(
                    image.manifest_digest,
                    image.config_digest,
                    layers,
                    media_type=image.manifest.media_type,
                    tags=names,
                )
            results.append(
                LoadResult(
                    tuple(n.familiar() for n in image.names),
                    record.id,
                    record.digest,
                    written,
                    len(layers) - written,
                )
            )
    return results


class _StoreBlobs:
    """The store as the transport's BlobProvider."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def open_blob(self, digest: str) -> BinaryIO:
        return self._store.content.open(digest)

    def blob_size(self, digest: str) -> int:
        return self._store.content.size(digest)


def save_images(
    store: Store,
    images: Sequence[tuple[ImageRecord, tuple[Reference, ...]]],
    output: Path | BinaryIO,
    fmt: str,
    max_layer_bytes: int,
) -> None:
    """Write `images` (each with the names to save it under) as a docker-archive or OCI layout."""
    to_save = []
    for image, names in images:
        manifest_bytes = store.manifest_bytes(image)
        manifest = Manifest.from_bytes(manifest_bytes, f"manifest {image.digest}")
        config_bytes = store.config_bytes(image)
        sizes = []
        diff_ids = []
        for layer, record in zip(manifest.layers, image.layers, strict=True):
            size = record.uncompressed_size
            if size is None:
                _, size = _uncompressed(store, layer, max_layer_bytes)
            sizes.append(size)
            diff_ids.append(record.diff_id)
        to_save.append(
            SaveImage(names, manifest_bytes, manifest, config_bytes, tuple(diff_ids), tuple(sizes))
        )
    blobs = _StoreBlobs(store)
    if fmt == "oci-dir":
        if not isinstance(output, Path):
            raise InvalidInputError("--format oci-dir needs an output directory")
        write_oci_layout_dir(output, to_save, blobs)
        return
    writer = write_docker_archive if fmt == "docker-archive" else write_oci_archive
    if not isinstance(output, Path):
        writer(output, to_save, blobs)
        return
    with atomic_output(output) as out:
        writer(out, to_save, blobs)
