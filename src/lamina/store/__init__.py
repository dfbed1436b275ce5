"""The store: content-addressed blobs, the SQLite metadata db, leases, gc and fsck.

    store = open_store(root)          # creates root (mode 0700), migrates metadata.db

Layout under the root::

    blobs/sha256/<hex>        immutable content        (store.content)
    ingest/                   partial writes; a `ref` makes one resumable
    snapshots/<diff_id hex>/  unpacked layers, written by the snapshots package:
                              stage in snapshots/.tmp-<anything>, rename, then put_snapshot
    snapshots/<hex>.tar-split the record of that layer's exact tar stream: with the
                              snapshot, the layer's one copy (`has_layer`, `record_path`)
    snapshots/init-<image hex>/  an image's init layer: the mount-point stubs its
                              containers share (made by `lamina.api`'s containers,
                              `init_layer_path`); removed with the image (`remove_image`,
                              `prune`), checked by `fsck` (stubs only)
    metadata.db               names and relations (SQLite, WAL): the one source of truth
    gc.lock                   prune holds it exclusively, metadata writers shared

Lifecycles
----------
Blob: ingest → commit → visible. `store.content.writer(expected, expected_size)` hashes
while writing into ingest/; `commit()` checks size and digest, fsyncs and renames into
blobs/; committing a blob that exists is a no-op. Reads verify: `read_bytes` before it
returns, `open` when the reader reaches end of file (read to the end to be sure); `path`
is for zero-copy readers that check the digest themselves.

Layers (the lean model): a layer is its snapshot plus its tar-split record, named by its
diff_id; no layer blob is needed. `has_layer(diff_id)`, `layer_size(diff_id)`. Compressed
blobs of a layer are a cache: `remember_layer_blob(diff_id, compression, blob, media_type)`
/ `cached_layer_blob(...)`; `prune` drops the blobs (not the memory of their digest)
unless `keep_layer_blobs`. `add_image` accepts a layer whose blob is absent when its
snapshot is there. Schema v3's `pending_unpack` lists layers an older store still has
to unpack (`lamina.transport.migrate_layers`).

Image: `write_image(store, config, layers, lease=..., tags=...)` writes the config and
an OCI manifest over already-stored layers and records the image. Lower level: write
every blob first, then `store.add_image(manifest, config, layers,
media_type=..., tags=[...])` records image, layers, relations and tags in ONE
transaction, or nothing (NotFoundError) if a blob is missing. A crash therefore leaves
at most unreferenced blobs, never an image pointing at missing content.

Work in progress: between writing a blob and recording what references it, gc may
collect it. Hold a lease::

    with store.lease() as lease:
        with store.content.writer(digest, size, lease=lease) as w:   # leased before writing
            ...; w.commit()
        store.add_image(...)                                          # now a tag holds it

`lease.add_blob(d)` / `lease.add_snapshot(diff_id)` must come BEFORE the write (many at
once: `lease.add_all(blobs=..., snapshots=...)`, one transaction); leases expire (1 h
default, `renew()` for longer work) so a killed process pins nothing forever.

File index: `store.file_index` records each layer's entries (path, kind, size, mode,
owner, content digest, link target, whiteouts) by diff_id, written in the pass that
brings the layer in; builds add where each layer came from (see `_fileindex.py`).

Containers: `store.add_container / get_container / list_containers / set_container_state /
remove_container` (rows: id, name, image, JSON state). `RowStore(root)` opens the same
metadata db of an existing root for `lamina run` without loading the rest of the store:
those container rows, `tagged(name)`, `get_image(digest)` (digest, config digest, layer
diff_ids), `config_bytes(image, max)` verified, `snapshot_path`. Names load on first use.

gc: `store.prune()` removes untagged images no container uses, then (mark and sweep)
every blob, snapshot and stale ingest file (1 h) that no image, container, cache record
or live lease holds. `store.fsck()` re-hashes every blob and checks every reference.

Registries: `store.registry` (RegistryRecords) remembers which blobs each registry
repository holds and the push uploads in progress (hints that save requests), and where
a layer's compressed blob lives (`remember_layers`, `remote_layers`): a layer recorded
that way but not unpacked is lazy (`is_remote`); `add_image` accepts it, prune keeps the
record while something holds the layer, fsck does not call it missing, and
`fetch_remote(layers, lease)` brings it in through `remote_fetcher` (set by lamina.api).

Names: tag names are taken as already-normalised full references
(`docker.io/library/busybox:latest`); `resolve` also takes a digest or a unique prefix of
the image ID (the config digest, `sha256:` optional). Repo digests (`store.repo_digests`,
`RepoDigests`): `repository@digest` names a pull or push records (`add_image(...,
repo_digests=[...])` in the image's own transaction); like a tag, one keeps its image from
being dangling, and `resolve("repository@digest")` finds the image through it.
"""

from lamina._lazy import lazy_names

TYPE_CHECKING = False  # not typing's: `lamina run` does without typing
if TYPE_CHECKING:
    from lamina.store._commit import write_image
    from lamina.store._content import (
        BlobInfo,
        BlobLease,
        ContentStore,
        Writer,
        fsync_dir,
        start_writeback,
    )
    from lamina.store._fileindex import FileIndex, IndexEntry, LayerColumns, LayerOrigin
    from lamina.store._gc import STALE_SECONDS
    from lamina.store._layout import RECORD_SUFFIX, init_layer_path, record_path, snapshot_path
    from lamina.store._leases import DEFAULT_LEASE_SECONDS, Lease
    from lamina.store._records import (
        RACY_SECONDS,
        CacheRecord,
        DiskUsage,
        FileIdentity,
        FsckReport,
        ImageRecord,
        ImageUsage,
        LayerRecord,
        LayerUsage,
        PruneReport,
        SnapshotRecord,
    )
    from lamina.store._registry import RegistryRecords, RemoteLayer
    from lamina.store._repodigests import RepoDigests
    from lamina.store._rows import ContainerRecord, RowStore
    from lamina.store._schema import SCHEMA_VERSION
    from lamina.store._store import Store, open_store
    from lamina.store._verified import VerifiedBlob

# Each name loads its module on first use: `lamina run` reads and writes container rows
# (`open_lean_store`) without the content store, gc, file index and record dataclasses.
_LAZY = {
    "write_image": "lamina.store._commit",
    "BlobInfo": "lamina.store._content",
    "BlobLease": "lamina.store._content",
    "ContentStore": "lamina.store._content",
    "Writer": "lamina.store._content",
    "fsync_dir": "lamina.store._content",
    "start_writeback": "lamina.store._content",
    "FileIndex": "lamina.store._fileindex",
    "IndexEntry": "lamina.store._fileindex",
    "LayerColumns": "lamina.store._fileindex",
    "LayerOrigin": "lamina.store._fileindex",
    "STALE_SECONDS": "lamina.store._gc",
    "RECORD_SUFFIX": "lamina.store._layout",
    "init_layer_path": "lamina.store._layout",
    "record_path": "lamina.store._layout",
    "snapshot_path": "lamina.store._layout",
    "DEFAULT_LEASE_SECONDS": "lamina.store._leases",
    "Lease": "lamina.store._leases",
    "RACY_SECONDS": "lamina.store._records",
    "CacheRecord": "lamina.store._records",
    "ContainerRecord": "lamina.store._rows",
    "RowStore": "lamina.store._rows",
    "DiskUsage": "lamina.store._records",
    "FileIdentity": "lamina.store._records",
    "FsckReport": "lamina.store._records",
    "ImageRecord": "lamina.store._records",
    "ImageUsage": "lamina.store._records",
    "LayerRecord": "lamina.store._records",
    "LayerUsage": "lamina.store._records",
    "PruneReport": "lamina.store._records",
    "SnapshotRecord": "lamina.store._records",
    "RegistryRecords": "lamina.store._registry",
    "RemoteLayer": "lamina.store._registry",
    "RepoDigests": "lamina.store._repodigests",
    "SCHEMA_VERSION": "lamina.store._schema",
    "Store": "lamina.store._store",
    "open_store": "lamina.store._store",
    "VerifiedBlob": "lamina.store._verified",
}

__all__ = [
    "fsync_dir",
    "start_writeback",
    "init_layer_path",
    "record_path",
    "snapshot_path",
    "VerifiedBlob",
    "DEFAULT_LEASE_SECONDS",
    "RACY_SECONDS",
    "RECORD_SUFFIX",
    "SCHEMA_VERSION",
    "STALE_SECONDS",
    "BlobInfo",
    "BlobLease",
    "CacheRecord",
    "ContainerRecord",
    "RowStore",
    "ContentStore",
    "DiskUsage",
    "FileIndex",
    "FileIdentity",
    "FsckReport",
    "ImageRecord",
    "ImageUsage",
    "IndexEntry",
    "LayerColumns",
    "LayerOrigin",
    "LayerRecord",
    "LayerUsage",
    "Lease",
    "PruneReport",
    "RegistryRecords",
    "RemoteLayer",
    "RepoDigests",
    "SnapshotRecord",
    "Store",
    "Writer",
    "open_store",
    "write_image",
]

__getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__, globals())
