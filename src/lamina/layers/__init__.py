"""Layers: OCI tar changesets — a deterministic writer, a safe applier, compression.

A layer is a tar of what changed against the layers below: added or changed entries,
deletions as ``.wh.<name>``, opaque directories as ``.wh..wh..opq`` (all whiteout
knowledge lives in ``_whiteout.py``). Its *diff_id* is the sha256 of the uncompressed
tar, its *digest* the sha256 of the blob as stored (compressed).

Making a layer (build, commit)::

    changes = changes_from_overlay_upper(upper)   # a RUN step / container
    changes = changes_from_dir(rootfs)            # every entry added (COPY, a base rootfs)
    changes = diff_trees(before, after)           # tree A → tree B
    with open(tmp, "wb") as f:
        info = write_layer_blob(changes, f, Compression.GZIP, source_date_epoch=sde)
    info.digest, info.size, info.diff_id, info.media_type

``write_layer(changes, out, source_date_epoch=None) -> LayerStats`` writes an
uncompressed tar to any binary stream; ``LayerBlobWriter(out, compression)`` is the
single-pass pipeline tar → sha256 (diff_id) → compressor → sha256 (digest) → ``out``
(pass it to ``write_layer`` as ``out``, then call ``finish() -> LayerBlobInfo``). Output
is deterministic: sorted paths, numeric owners, mtimes in whole seconds clamped to
``source_date_epoch``, ustar unless PAX is needed, hardlinks within the layer kept.

Unpacking a layer (pull, snapshot)::

    with open(blob, "rb") as f:
        tar = open_layer_reader(f, max_bytes=limits.max_total_bytes)   # gzip/zstd/bz2/xz/tar
        stats = apply_layer(tar, snapshot_dir, overlay=True, limits=limits)
    if stats.diff_id != expected_diff_id: raise DigestMismatchError(...)
    tar.digest()   # sha256 of the compressed bytes read, once read to the end

``apply_layer(stream, target, *, overlay, limits=Limits()) -> ApplyStats`` unpacks
into an empty snapshot dir in overlay format (``overlay=True``: whiteouts become 0:0
character devices, opaque dirs get ``trusted.overlay.opaque=y``) or onto a plain
directory holding the layers below (``overlay=False``: whiteouts delete, opaque
empties what the lower layers left). It runs as root to set owners, modes, xattrs,
devices. Hostile input raises ``InvalidInputError`` naming the entry; every path is
resolved inside ``target`` as if it were ``/``, so nothing outside it is touched.
``Limits`` bounds entries, bytes, names, PAX headers and symlink hops.

``scan_layer(stream, limits=Limits(), digest=True) -> ScanStats`` reads a layer through and checks
every entry's name as ``apply_layer`` would, writing nothing (``load`` uses it, so a layer
that could never be unpacked is never stored as part of an image).

Tar-split (the snapshot is the layer's one copy): ``apply_layer(..., record=SplitRecorder(f))``
and ``write_layer(changes, None, record=SplitRecorder(f))`` keep the exact tar stream's
headers, order and padding; ``RebuiltTar(snapshot, record_path, diff_id, size)`` reads the
tar back byte for byte (DigestMismatchError at its end if the snapshot changed), many files
read at once by a pool of threads, or writes it into a regular file at an offset
(``write_at(fd, offset)``: each piece written where it belongs by the helper process that
read it, and hashed as read back from the file;
``check_tree=`` a walk of the snapshot run beside the reads), and
``snapshot_extras(snapshot, record_path)`` lists files the tar does not account for;
``snapshot_drift`` entries whose metadata is not the tar's (a chmod, a setcap, a hardlink
swapped for another file behind lamina's back).
``apply_layer(..., on_entry=hook)`` shows every entry to a per-layer index in the same pass;
``record_entries(record_path)`` gives them again later from the record alone.
``write_layer(changes, None, record=..., copier=DirectCopy(directory, changes, ...))``
copies changes whose sources live elsewhere (a COPY's context files) into ``directory``
entry by entry while it hashes their tar, each body read once (sources read ahead in
the background): the snapshot is written straight, never through a tar and an applier;
a copy of many files has them made by a process of its own. ``ReadAhead(files)`` asks the
kernel to read files ahead of a reader, from another process (a cold context is read
with many requests in flight, not one file at a time).
``write_layer`` hashes beside the writer (the tar stream, the index's file digests): on a
thread, or for an indexed layer of many entries in a child process that reads the
writer's buffers from a shared memfd (a thread would take the GIL once per file).

File index: ``EntryCollector()`` passed as ``collect=`` to ``write_layer``,
``write_layer_blob`` or ``scan_layer`` (or fed ``tar_entry`` by any reader loop) gathers
``collector.entries`` (``store.IndexEntry`` rows) in the same pass, hashing regular files'
content from the bytes already passing through; ``store.file_index.put`` records them.

``TarReader(stream, limits)`` / ``read_entries`` iterate a tar stream with bounded
header parsing (for ADD of local archives, or inspection); each entry's content is a
reader that stops at the entry's end.

Resolving a path inside a root as if it were ``/`` (lamina's one resolver, umoci's
SecureJoin model: symlinks followed but scoped, dir fds and ``O_NOFOLLOW``)::

    resolve_in_root(root, "/link/file")      # Resolved(existing, missing); .host_path(root)
    read_file_in_root(root, "/etc/passwd", limit)   # bytes or None, at most `limit`
    ScopedRoot(target).parent(parts, entry, create=True)   # the applier's cached walk
"""

from __future__ import annotations

from lamina._lazy import lazy_names
from lamina.layers._scoped import (
    MAX_SYMLINK_HOPS,
    Resolved,
    ScopedRoot,
    open_dir_nofollow,
    read_file_in_root,
    require_file_in_root,
    resolve_in_root,
)
from lamina.layers._whiteout import (
    OVERLAY_OPAQUE_XATTRS,
    is_overlay_opaque,
    is_overlay_opaque_dir,
    is_overlay_whiteout,
    is_overlay_xattr,
    make_overlay_whiteout,
)

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    from typing import BinaryIO

    from lamina.layers._apply import (
        ApplyStats,
        EntryHook,
        ScanStats,
        apply_layer,
        scan_layer,
    )
    from lamina.layers._changes import (
        Change,
        ChangeKind,
        changes_from_dir,
        changes_from_overlay_upper,
        diff_trees,
        sort_changes,
    )
    from lamina.layers._compress import (
        MAGIC,
        Compression,
        LayerBlobInfo,
        LayerBlobReader,
        LayerBlobWriter,
        open_layer_reader,
        read_into,
        sniff_compression,
    )
    from lamina.layers._epoch import source_date_epoch
    from lamina.layers._index import (
        EntryCollector,
    )
    from lamina.layers._inodeflags import (
        TOP_DIRECTORY,
        inode_flags,
        mark_top_directory,
        set_inode_flags,
    )
    from lamina.layers._rebuild import RebuiltTar
    from lamina.layers._stagecopy import DirectCopy, ReadAhead, worth_a_process
    from lamina.layers._tarheader import (
        build_header,
    )
    from lamina.layers._tarread import (
        ByteStream,
        EntryReader,
        EntryType,
        Limits,
        TarEntry,
        TarReader,
        read_entries,
    )
    from lamina.layers._tarsplit import (
        SplitRecorder,
        count_entries,
        record_entries,
        snapshot_drift,
        snapshot_extras,
    )
    from lamina.layers._tarwrite import EntryCopier, LayerStats, write_layer

# Loaded on first use: resolving a path in a rootfs (`lamina run`) needs none of the tar
# readers and writers, nor the compressors (zstandard, isal, bz2, lzma) behind them.
_LAZY = {
    "source_date_epoch": "lamina.layers._epoch",
    "ApplyStats": "lamina.layers._apply",
    "EntryHook": "lamina.layers._apply",
    "ScanStats": "lamina.layers._apply",
    "apply_layer": "lamina.layers._apply",
    "TOP_DIRECTORY": "lamina.layers._inodeflags",
    "inode_flags": "lamina.layers._inodeflags",
    "set_inode_flags": "lamina.layers._inodeflags",
    "mark_top_directory": "lamina.layers._inodeflags",
    "scan_layer": "lamina.layers._apply",
    "Change": "lamina.layers._changes",
    "ChangeKind": "lamina.layers._changes",
    "changes_from_dir": "lamina.layers._changes",
    "changes_from_overlay_upper": "lamina.layers._changes",
    "diff_trees": "lamina.layers._changes",
    "sort_changes": "lamina.layers._changes",
    "MAGIC": "lamina.layers._compress",
    "Compression": "lamina.layers._compress",
    "LayerBlobInfo": "lamina.layers._compress",
    "LayerBlobReader": "lamina.layers._compress",
    "LayerBlobWriter": "lamina.layers._compress",
    "open_layer_reader": "lamina.layers._compress",
    "read_into": "lamina.layers._compress",
    "sniff_compression": "lamina.layers._compress",
    "EntryCollector": "lamina.layers._index",
    "DirectCopy": "lamina.layers._stagecopy",
    "ReadAhead": "lamina.layers._stagecopy",
    "worth_a_process": "lamina.layers._stagecopy",
    "EntryCopier": "lamina.layers._tarwrite",
    "build_header": "lamina.layers._tarheader",
    "ByteStream": "lamina.layers._tarread",
    "EntryReader": "lamina.layers._tarread",
    "EntryType": "lamina.layers._tarread",
    "Limits": "lamina.layers._tarread",
    "TarEntry": "lamina.layers._tarread",
    "TarReader": "lamina.layers._tarread",
    "read_entries": "lamina.layers._tarread",
    "RebuiltTar": "lamina.layers._rebuild",
    "SplitRecorder": "lamina.layers._tarsplit",
    "count_entries": "lamina.layers._tarsplit",
    "record_entries": "lamina.layers._tarsplit",
    "snapshot_drift": "lamina.layers._tarsplit",
    "snapshot_extras": "lamina.layers._tarsplit",
    "LayerStats": "lamina.layers._tarwrite",
    "write_layer": "lamina.layers._tarwrite",
}


def write_layer_blob(
    changes: list[Change],
    out: BinaryIO,
    compression: Compression | None = None,
    *,
    source_date_epoch: int | None = None,
    collect: EntryCollector | None = None,
) -> LayerBlobInfo:
    """Write ``changes`` as a compressed layer blob to ``out`` in one pass (gzip unless
    `compression` says otherwise)."""
    from lamina.layers._compress import Compression, LayerBlobWriter
    from lamina.layers._tarwrite import write_layer

    writer = LayerBlobWriter(out, compression if compression is not None else Compression.GZIP)
    write_layer(changes, writer, source_date_epoch=source_date_epoch, collect=collect)
    return writer.finish()


__all__ = [
    "source_date_epoch",
    "MAGIC",
    "LayerBlobInfo",
    "read_into",
    "sniff_compression",
    "build_header",
    "OVERLAY_OPAQUE_XATTRS",
    "is_overlay_opaque",
    "is_overlay_opaque_dir",
    "is_overlay_whiteout",
    "make_overlay_whiteout",
    "is_overlay_xattr",
    "MAX_SYMLINK_HOPS",
    "Resolved",
    "ScopedRoot",
    "open_dir_nofollow",
    "read_file_in_root",
    "require_file_in_root",
    "resolve_in_root",
    "ApplyStats",
    "ByteStream",
    "Change",
    "ChangeKind",
    "Compression",
    "DirectCopy",
    "ReadAhead",
    "worth_a_process",
    "EntryCopier",
    "EntryCollector",
    "EntryHook",
    "EntryReader",
    "EntryType",
    "LayerBlobReader",
    "LayerBlobWriter",
    "LayerStats",
    "RebuiltTar",
    "SplitRecorder",
    "ScanStats",
    "Limits",
    "TarEntry",
    "TarReader",
    "apply_layer",
    "changes_from_dir",
    "count_entries",
    "changes_from_overlay_upper",
    "diff_trees",
    "open_layer_reader",
    "read_entries",
    "record_entries",
    "scan_layer",
    "snapshot_drift",
    "snapshot_extras",
    "sort_changes",
    "write_layer",
    "write_layer_blob",
    "TOP_DIRECTORY",
    "inode_flags",
    "set_inode_flags",
    "mark_top_directory",
]

__getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__, globals())
