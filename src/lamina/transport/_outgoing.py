"""A layer on its way out of the lean store: its exact tar rebuilt from its snapshot
(``open_layer_tar``, checked against its diff_id), its blob for sending with a compression
(``layer_blob``: descriptor + stream, remembering diff_id + compression → digest so the
same layer always leaves as the same blob; push uses it as ``save`` does), and
``verify_layer`` (fsck). Kept apart from the way in (``_lean``: ingest, unpack, commit),
so a save loads none of the unpacking, applying and snapshot-making code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from lamina.errors import DigestMismatchError, NotFoundError
from lamina.layers import (
    Compression,
    LayerBlobWriter,
    RebuiltTar,
    count_entries,
    snapshot_drift,
    snapshot_extras,
)
from lamina.oci import Descriptor, media_types
from lamina.store import Lease, Store

_CHUNK = 1 << 20


def open_layer_tar(store: Store, diff_id: str, *, thorough: bool = False) -> RebuiltTar:
    """The layer's exact uncompressed tar, rebuilt from its snapshot; DigestMismatchError
    if the snapshot holds entries its tar does not (before the first byte of a stream, or
    before `write_at` returns: its walk runs beside the reads), at the end if a file's
    content changed. NotFoundError if the store does not hold the layer.

    Entries are counted against what the snapshot held when it was made (a walk, cheap);
    `thorough` (fsck) also compares every name with the tar's headers."""
    if not store.has_layer(diff_id):
        raise NotFoundError(f"layer {diff_id} is not in the store")
    snapshot = store.snapshot_path(diff_id)
    record = store.record_path(diff_id)
    known = store.snapshot_entries(diff_id)

    def check_tree() -> None:
        count = count_entries(snapshot) if known is not None else None
        if thorough or known is None or count != known:
            extras = snapshot_extras(snapshot, record)
            if extras or (known is not None and count != known):
                what = ", ".join(extras[:3]) if extras else f"{count} entries, made with {known}"
                raise DigestMismatchError(
                    f"snapshot of layer {diff_id}: files its tar does not hold ({what})",
                    diff_id,
                    "a changed snapshot",
                    hint="the snapshot was changed behind lamina's back; `lamina fsck` lists it",
                )

    return RebuiltTar(snapshot, record, diff_id, store.layer_size(diff_id), check_tree=check_tree)


def verify_layer(store: Store, diff_id: str) -> None:
    """Rebuild the layer's tar and check it against its diff_id, every name in the
    snapshot against its headers, and every entry's metadata (type, mode, owner, symlink
    target: the rebuilt tar takes these from the record, a container from the snapshot)
    against them too (DigestMismatchError)."""
    with open_layer_tar(store, diff_id, thorough=True) as tar:
        while tar.read(_CHUNK):
            pass
    drift = snapshot_drift(store.snapshot_path(diff_id), store.record_path(diff_id))
    if drift:
        raise DigestMismatchError(
            f"snapshot of layer {diff_id}: metadata changed behind lamina's back"
            f" ({'; '.join(drift[:3])}{'; …' if len(drift) > 3 else ''})",
            diff_id,
            "a changed snapshot",
            hint="remove the images that use it and load or pull them again",
        )


@dataclass(frozen=True)
class LayerBlob:
    """A layer as it will be sent: its descriptor, and how to read its bytes."""

    descriptor: Descriptor
    diff_id: str
    store: Store

    def open(self) -> BinaryIO | RebuiltTar:
        if self.descriptor.digest == self.diff_id:
            return open_layer_tar(self.store, self.diff_id)
        return self.store.content.open(self.descriptor.digest)


def _media_type(compression: Compression, docker: bool) -> str:
    if compression is Compression.NONE:
        return media_types.DOCKER_LAYER if docker else media_types.OCI_LAYER
    if compression is Compression.GZIP:
        return media_types.DOCKER_LAYER_GZIP if docker else media_types.OCI_LAYER_GZIP
    return media_types.OCI_LAYER_ZSTD


def layer_blob(
    store: Store,
    lease: Lease,
    diff_id: str,
    compression: Compression,
    *,
    docker_media_type: bool = False,
) -> LayerBlob:
    """The blob of layer ``diff_id`` compressed with ``compression``, ready to send.

    Uncompressed: the rebuilt tar itself (digest = diff_id). gzip (isal, fixed level) or
    zstd (fixed level): the blob this layer gave before if it is still cached, else the
    rebuilt tar compressed once into the content store (held by ``lease``, a cache that
    ``prune`` may drop) and remembered: the same layer always gives the same digest.
    """
    media_type = _media_type(compression, docker_media_type)
    if compression is Compression.NONE:
        size = store.layer_size(diff_id)
        if size is None or not store.has_layer(diff_id):
            raise NotFoundError(f"layer {diff_id} is not in the store")
        return LayerBlob(Descriptor(media_type, diff_id, size), diff_id, store)
    cached = store.cached_layer_blob(diff_id, compression.value)
    if cached is not None:
        lease.add_blob(cached[0].digest)
        if store.content.has(cached[0].digest):
            blob = cached[0]
            return LayerBlob(Descriptor(media_type, blob.digest, blob.size), diff_id, store)
    with open_layer_tar(store, diff_id) as tar, store.content.writer(lease=lease) as w:
        # The rebuilt tar checks its diff_id (and size) as it ends: not hashed again here.
        compressor = LayerBlobWriter(
            w,  # type: ignore[arg-type]
            compression, digest=False, diff_id=False,
        )  # fmt: skip
        while chunk := tar.read(_CHUNK):  # b"" only once the diff_id was checked
            compressor.write(chunk)
        compressor.finish()
        blob = w.commit()
    store.remember_layer_blob(diff_id, compression.value, blob, media_type)
    return LayerBlob(Descriptor(media_type, blob.digest, blob.size), diff_id, store)


def digest_changed_note(diff_id: str, was: str, now: str) -> str:
    """What save and push tell the user of a layer sent under another digest than it came
    with: its compressed blob was not kept and was made again (podman says so too)."""
    return (
        f"layer {diff_id}: its original blob is not kept; recompressed, its digest changed "
        f"from {was} to {now}"
    )


__all__ = ["LayerBlob", "digest_changed_note", "layer_blob", "open_layer_tar", "verify_layer"]
