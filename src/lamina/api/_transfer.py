"""`load` and `save`: archives in and out of the store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, cast

from lamina._rmtree import remove_tree
from lamina.api._transfer_types import LoadResult
from lamina.errors import DigestMismatchError, InvalidInputError, NotFoundError
from lamina.layers import (
    Compression,
    EntryCollector,
    Limits,
    open_layer_reader,
    scan_layer,
    sniff_compression,
)
from lamina.oci import Descriptor, Manifest, media_types
from lamina.store import ImageRecord, LayerRecord, Lease, Store, write_image
from lamina.transport import (
    BlobSource,
    ImageSource,
    LayerLimits,
    SourceImage,
    ingest_layer,
    layer_blob,
    open_archive,
    open_layer_tar,
)

_CHUNK = 1 << 20
_PLAIN = (media_types.OCI_LAYER, media_types.DOCKER_LAYER)


def _scan(
    stream: BinaryIO,
    max_bytes: int,
    diff_id: str | None = None,
    collect: EntryCollector | None = None,
) -> tuple[str, int]:
    """diff_id and size of a layer blob stream, read through as the applier would read it.

    Every entry is checked (names, whiteouts, bounds). Reads `stream` to its end. A known
    `diff_id` (an uncompressed blob, whose digest is checked elsewhere) is not hashed
    again. `collect` gathers the layer's file index on the way.
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
    """diff_id and size of a stored layer (see `_scan`): read as its snapshot's rebuilt
    tar (checked against its diff_id) when the store has it, else from its blob."""
    known = store.layer(layer.digest).diff_id if _recorded(store, layer.digest) else None
    if known is not None and store.has_layer(known):
        with open_layer_tar(store, known) as rebuilt:
            stats = scan_layer(
                rebuilt, limits=Limits(max_total_bytes=max_bytes), digest=False, collect=collect
            )
            while rebuilt.read(_CHUNK):
                pass
        return known, stats.size
    with store.content.open(layer.digest) as blob:
        # The verifying reader checks the digest at EOF: a plain tar's diff_id is it.
        return _scan(blob, max_bytes, layer.digest, collect)


def _recorded(store: Store, digest: str) -> bool:
    try:
        store.layer(digest)
    except NotFoundError:
        return False
    return True


def _vouched_for(store: Store, image: SourceImage | None, layer: Descriptor, diff_id: str) -> bool:
    """Whether the store already knows that blob `layer` holds the tar `diff_id`, so a
    snapshot of that diff_id can stand for it without reading a byte: the blob is that tar
    itself, a docker-archive names its layers by content only, or this digest and diff_id
    were checked together before (an ingest, or lamina's own compression of the layer)."""
    if layer.digest == diff_id or (image is not None and image.synthesized):
        return True
    if store.layer_blob_diff_id(layer.digest) == diff_id:
        return True
    try:
        return store.layer(layer.digest).diff_id == diff_id
    except NotFoundError:
        return False


def _ingest(
    store: Store,
    lease: Lease,
    source: BlobSource,
    layer: Descriptor,
    diff_id: str,
    limits: LayerLimits,
    *,
    keep_blob: bool,
    resumable: bool,
    collect: EntryCollector | None,
) -> int | None:
    """A new layer's blob from `source` into its snapshot in the one pass that reads it
    (None: another pull made that snapshot meanwhile, and nothing was read).

    `resumable` (a pull): the blob also streams into a named ingest, so a broken transfer
    leaves its bytes in ingest/ and the next attempt asks the source only for the rest
    (Range), unpacking the bytes it has while the rest arrives. Its digest is checked
    before the snapshot becomes visible; it is kept only with `keep_blob`. Bad bytes (a
    wrong digest or diff_id, a hostile entry) keep nothing."""
    if store.content.has(layer.digest):
        # Its blob is here (kept, or an older store's): unpacked from it, nothing fetched.
        with store.content.open(layer.digest) as blob:  # verified at EOF
            return ingest_layer(store, lease, layer, diff_id, blob, limits=limits,
                                collect=collect)  # fmt: skip
    if not resumable:
        # A plain tar's digest is its diff_id, which the unpack hashes and checks before
        # the snapshot is visible: the blob need not be hashed a second time on the way.
        plain = layer.digest == diff_id and layer.media_type in _PLAIN
        with source.open_blob(layer, verify=not plain) as stream:  # verified at EOF
            return ingest_layer(store, lease, layer, diff_id, stream, limits=limits,
                                keep_blob=keep_blob, collect=collect)  # fmt: skip
    ref = f"layer {layer.digest}"
    compressed = Compression.from_media_type(layer.media_type) is not Compression.NONE
    kept = keep_blob and compressed
    # Not kept: the bytes are on disk only for a resume, so none is written back early.
    with store.content.writer(
        layer.digest, layer.size, lease=lease, ref=ref, writeback=kept
    ) as writer:
        if not writer.offset and store.has_layer(diff_id):
            # Another pull of this layer finished between the check before and this lock.
            writer.close(keep=False)
            return None
        try:
            # After an interrupted pull, the rest of its partial blob: the unpack reads the
            # ingest from its first byte while the rest lands after what is there.
            with source.open_blob(layer, verify=False, offset=writer.offset) as stream:
                return ingest_layer(store, lease, layer, diff_id, stream, limits=limits,
                                    keep_blob=keep_blob, collect=collect,
                                    writer=writer)  # fmt: skip
        except InvalidInputError:
            # Bad bytes, not a broken transfer: nothing of them is worth resuming from.
            writer.close(keep=False)
            raise


def ingest_blob(
    store: Store,
    lease: Lease,
    source: BlobSource,
    layer: Descriptor,
    diff_id: str,
    limits: LayerLimits,
    *,
    image: SourceImage | None = None,
    keep_blob: bool = False,
    resumable: bool = False,
    what: str | None = None,
) -> tuple[int, bool]:
    """Layer blob `layer`, which must hold the tar `diff_id`, in the store as its snapshot:
    its tar size, and whether it was unpacked now. One function for every source (load of
    a docker-archive or OCI layout, pull, a build cache from a registry).

    A snapshot of `diff_id` that the store already has stands for the blob when the store
    knows they match (see `_vouched_for`); a blob claiming an existing snapshot's diff_id
    under a digest never seen is read and checked (never trusted), not unpacked again. A
    new layer is unpacked in the one pass that reads it, with its file index gathered."""
    what = what or f"layer {layer.digest}"
    if layer.media_type not in media_types.LAYER_TYPES:
        raise InvalidInputError(f"{what}: media type {layer.media_type!r} is not a layer")
    lease.add_snapshot(diff_id)
    try:
        if store.has_layer(diff_id):
            size = _present_size(store, diff_id)
            if not _vouched_for(store, image, layer, diff_id):
                with source.open_blob(layer) as stream:  # verified at EOF
                    actual, _ = _scan(stream, limits.max_size, None)
                if actual != diff_id:
                    raise DigestMismatchError(f"{what}: diff_id in the config", diff_id, actual)
            return size, False
        index = None if store.file_index.has(diff_id) else EntryCollector()
        made = _ingest(store, lease, source, layer, diff_id, limits, keep_blob=keep_blob,
                       resumable=resumable, collect=index)  # fmt: skip
        if made is None:
            return _present_size(store, diff_id), False
        size = made
        if layer.digest != diff_id:
            # Checked together just now: another pull waiting on this blob (or this one,
            # stopped before its image is recorded) trusts the snapshot from here on.
            store.record_layer(LayerRecord(layer.digest, diff_id, layer.media_type,
                                           layer.size, size))  # fmt: skip
        if index is not None:
            store.file_index.put(diff_id, index.entries)
        return size, True
    except DigestMismatchError:
        raise  # names the digests already
    except InvalidInputError as exc:
        if layer.digest in exc.message:
            raise
        raise InvalidInputError(f"{what}: {exc.message}", hint=exc.hint) from exc


def _present_size(store: Store, diff_id: str) -> int:
    size = store.layer_size(diff_id)
    assert size is not None
    return size


def layer_record(
    store: Store,
    image: SourceImage,
    position: int,
    source: ImageSource | BlobSource,
    lease: Lease,
    limits: LayerLimits,
    *,
    keep_blobs: bool = False,
    resumable: bool = False,
) -> tuple[LayerRecord, bool]:
    """Layer `position` of `image` in the store (see `ingest_blob`): its record and whether
    it was unpacked now. The diff_id is the one the config lists."""
    layer = image.manifest.layers[position]
    diff_id = image.diff_ids[position]
    size, written = ingest_blob(
        store, lease, source, layer, diff_id, limits, image=image, keep_blob=keep_blobs,
        resumable=resumable, what=f"layer {position} ({layer.digest})",
    )  # fmt: skip
    return LayerRecord(layer.digest, diff_id, layer.media_type, layer.size, size), written


def _layer_records(
    store: Store,
    image: SourceImage,
    archive: ImageSource,
    lease: Lease,
    limits: LayerLimits,
    keep_blobs: bool,
) -> tuple[list[LayerRecord], int]:
    records: list[LayerRecord] = []
    written = 0
    for position in range(len(image.manifest.layers)):
        record, new = layer_record(
            store, image, position, archive, lease, limits, keep_blobs=keep_blobs
        )
        records.append(record)
        written += new
    return records, written


_SPOOL_CHUNK = 1 << 20


def load_stream(
    store: Store, stream: BinaryIO, limits: LayerLimits | None = None, *, keep_blobs: bool = False
) -> list[LoadResult]:
    """`load_archive` of a stream (`lamina load < FILE`, or down a pipe). A regular file
    read from its start is opened in place; anything else is first copied into a scratch
    dir of the store (`snapshots/.tmp-load-*`, owned by this process: removed at the end,
    or by the next command if this one is killed), as an archive is read out of order.
    A compressed stream (gzip, zstd, bzip2, xz: `docker load`'s) is decompressed as it
    is copied, within the layer limits (a decompression bomb stops there)."""
    import os
    import stat

    fd = stream.fileno()
    info = os.fstat(fd)
    if stat.S_ISREG(info.st_mode) and os.lseek(fd, 0, os.SEEK_CUR) == 0:
        if info.st_size == 0:
            raise InvalidInputError("requested load from stdin, but stdin is empty")
        return load_archive(store, Path(f"/proc/self/fd/{fd}"), limits, keep_blobs=keep_blobs,
                            name="stdin")  # fmt: skip
    limits = limits or LayerLimits()
    with _scratch(store) as scratch:
        spooled = scratch / "stdin.tar"
        if _spool(stream, spooled, limits, "stdin", hint="load from a file with -i FILE") == 0:
            raise InvalidInputError("requested load from stdin, but stdin is empty")
        return _load_tar(store, spooled, limits, keep_blobs, "stdin")


@contextmanager
def _scratch(store: Store) -> Iterator[Path]:
    """A scratch dir in the store, owned by this process (`recover` removes it if the
    process is killed), removed at the end."""
    import tempfile

    from lamina.runtime import write_owner

    scratch = Path(tempfile.mkdtemp(prefix=".tmp-load-", dir=store.snapshots_dir))
    try:
        write_owner(scratch)
        yield scratch
    finally:
        remove_tree(scratch)


def _spool(stream: BinaryIO, out: Path, limits: LayerLimits, what: str, hint: str) -> int:
    """Copy `stream` into `out`, decompressed (within the layer limits) if it is compressed;
    the bytes written."""
    try:
        reader = open_layer_reader(stream, limits.max_size, limits.max_ratio, digest=False,
                                   what="archive")  # fmt: skip
        source = reader.given if reader.compression is Compression.NONE else reader
        total = 0
        with open(out, "wb") as f:
            while chunk := source.read(_SPOOL_CHUNK):
                f.write(chunk)
                total += len(chunk)
    except OSError as exc:
        raise InvalidInputError(f"copying {what} into {out.parent}: {exc.strerror or exc}",
                                hint=hint) from exc  # fmt: skip
    except InvalidInputError as exc:  # the decompressor's: corrupt, truncated, a bomb
        raise InvalidInputError(f"{what}: {exc.message}", hint=exc.hint) from exc
    return total


def _compression_of(path: Path) -> Compression:
    try:
        with open(path, "rb") as f:
            return sniff_compression(f.read(6))
    except OSError:  # a directory (an OCI layout), or open_archive says what is wrong
        return Compression.NONE


def load_archive(
    store: Store,
    path: Path,
    limits: LayerLimits | None = None,
    *,
    keep_blobs: bool = False,
    name: str | None = None,
) -> list[LoadResult]:
    """Load every image of an archive; all their layers go in before any image is listed.

    Each new layer is written straight into its snapshot in the one pass that reads it;
    a compressed layer's blob is kept only with `keep_blobs`. Layers the store has are
    not read. Any bad blob, digest, diff_id or limit stops the load before an image is
    recorded, so none is ever half there (the lease lets prune take what was written).
    A compressed archive (gzip, zstd, bzip2, xz, as `docker load` takes) is decompressed
    into a scratch dir of the store first, within the layer limits. Errors name the
    archive `name` (default: `path`).
    """
    limits = limits or LayerLimits()
    shown = name or str(path)
    if _compression_of(path) is not Compression.NONE:
        with open(path, "rb") as stream, _scratch(store) as scratch:
            spooled = scratch / "archive.tar"
            _spool(stream, spooled, limits, shown, hint="check the file, or load the tar")
            return _load_tar(store, spooled, limits, keep_blobs, shown)
    return _load_tar(store, path, limits, keep_blobs, shown)


def _load_tar(
    store: Store, path: Path, limits: LayerLimits, keep_blobs: bool, name: str
) -> list[LoadResult]:
    results: list[LoadResult] = []
    with open_archive(path, name=name) as archive, store.lease() as lease:
        if not archive.images():  # docker load has nothing to say either; this says why
            raise InvalidInputError(f"{name}: the archive holds no image")
        pending = []
        for image in archive.images():
            layers, written = _layer_records(store, image, archive, lease, limits, keep_blobs)
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


def layers_for_push(
    store: Store, lease: Lease, manifest: Manifest, image: ImageRecord
) -> tuple[Descriptor, ...]:
    """The blob a push sends for each layer of `image`: its original compressed blob when
    the store still holds it (kept when it arrived, or made by an earlier send), else the
    layer gzipped from its snapshot (`layer_blob`: deterministic and remembered, so the
    same layer always goes out as the same digest). Built layers, which exist only as
    snapshots, get their blob here; the blobs are held by `lease`."""
    docker = manifest.media_type == media_types.DOCKER_MANIFEST
    # Every blob this may name, leased in one transaction (not one fsynced per blob).
    cached = (store.cached_layer_blob(r.diff_id, Compression.GZIP.value) for r in image.layers)
    lease.add_all(blobs=[*(d.digest for d in manifest.layers),
                         *(c[0].digest for c in cached if c is not None)])  # fmt: skip
    out = []
    for desc, record in zip(manifest.layers, image.layers, strict=True):
        try:
            was = Compression.from_media_type(desc.media_type)
        except InvalidInputError:
            was = Compression.NONE
        if was is not Compression.NONE and store.content.has(desc.digest):
            out.append(desc)
            continue
        if not store.has_layer(record.diff_id):
            if store.content.has(desc.digest):
                out.append(desc)  # an older store not migrated yet: the blob is the layer
                continue
            raise NotFoundError(f"layer {record.diff_id} of image {image.id} is not in the store")
        blob = layer_blob(store, lease, record.diff_id, Compression.GZIP, docker_media_type=docker)
        out.append(blob.descriptor)
    return tuple(out)


def open_layer_blob(store: Store, digest: str, *, verify: bool = True) -> BinaryIO:
    """A blob to send, by digest: from the content store (verified as it is read, unless
    `verify=False`: the receiver checks it), else a layer's compressed blob made again
    (pruned since it was named: compression is deterministic, so the digest is the same),
    else a layer's plain tar rebuilt from its snapshot (digest = diff_id). NotFoundError
    if none of these."""
    if store.content.has(digest):
        return store.content.open(digest, verify=verify)
    diff_id = store.layer_blob_diff_id(digest)
    if diff_id is not None and store.has_layer(diff_id):
        with store.lease() as lease:
            blob = layer_blob(store, lease, diff_id, Compression.GZIP)
            if blob.descriptor.digest == digest:
                return store.content.open(digest, verify=verify)
    if store.has_layer(digest):
        return cast(BinaryIO, open_layer_tar(store, digest))
    raise NotFoundError(f"blob {digest} is not in the store")
