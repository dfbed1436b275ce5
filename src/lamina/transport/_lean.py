"""Layers in and out of the lean store: the snapshot is a layer's one copy.

The steps above both the store (records, blobs) and the snapshots (directories):

- ``ingest_layer``: a layer blob as it arrives (load, pull; gzip, zstd or plain) → its
  snapshot + tar-split record in one pass, bounded by ``LayerLimits``, blob kept if asked.
- ``commit_dir_layer``: a directory (a RUN's upper dir, a COPY's result) becomes a layer by
  hashing the tar it stands for and renaming it into place; nothing is compressed.
- (out: ``open_layer_tar``, ``layer_blob`` and ``verify_layer`` live in ``_outgoing``.)
- ``migrate_layers``: an older store (blobs, snapshots without records) becomes lean.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from lamina._rmtree import remove_tree
from lamina.errors import InvalidInputError, LaminaError
from lamina.layers import (
    ByteStream,
    Change,
    Compression,
    DirectCopy,
    EntryCollector,
    EntryCopier,
    EntryHook,
    Limits,
    SplitRecorder,
    apply_layer,
    count_entries,
    open_layer_reader,
    read_into,
    record_entries,
    write_layer,
)
from lamina.oci import Descriptor, media_types
from lamina.snapshots import ensure_snapshots, record_tmp_path, unpack_blob, unpack_layer
from lamina.store import BlobInfo, LayerRecord, Lease, Store, Writer

_CHUNK = 1 << 20
DEFAULT_MAX_LAYER_SIZE = 64 << 30
DEFAULT_MAX_LAYER_RATIO = 1000.0


@dataclass(frozen=True)
class LayerLimits:
    """What one arriving layer may decompress to: bytes, and bytes out per byte in.

    Defaults: 64 GiB and 1000x (checked past the first 64 MiB); ``from_env`` reads
    ``LAMINA_MAX_LAYER_SIZE`` (bytes, or with a K/M/G/T suffix) and ``LAMINA_MAX_LAYER_RATIO``.
    """

    max_size: int = DEFAULT_MAX_LAYER_SIZE
    max_ratio: float = DEFAULT_MAX_LAYER_RATIO

    @classmethod
    def from_env(cls, max_size: int | None = None, max_ratio: float | None = None) -> LayerLimits:
        size = max_size if max_size is not None else _env_size("LAMINA_MAX_LAYER_SIZE")
        ratio = _check_ratio(max_ratio, "--max-layer-ratio")
        if ratio is None and (text := os.environ.get("LAMINA_MAX_LAYER_RATIO")):
            try:
                ratio = float(text)
            except ValueError:
                raise InvalidInputError(
                    f"LAMINA_MAX_LAYER_RATIO={text!r} is not a number"
                ) from None
            ratio = _check_ratio(ratio, "LAMINA_MAX_LAYER_RATIO")
        return cls(
            size if size is not None else DEFAULT_MAX_LAYER_SIZE,
            ratio if ratio is not None else DEFAULT_MAX_LAYER_RATIO,
        )


def _check_ratio(ratio: float | None, what: str) -> float | None:
    """A ratio limit is a finite number ≥ 1: NaN would switch the bomb check off (every
    comparison with it is false), and below 1 no real layer could pass."""
    if ratio is not None and not (math.isfinite(ratio) and ratio >= 1):
        raise InvalidInputError(
            f"{what}={ratio:g} is not a ratio limit: give a number of at least 1",
            hint="a large number, such as 1e9, allows any ratio",
        )
    return ratio


def parse_size(text: str, what: str) -> int:
    """``123``, ``64G``, ``512MiB`` → bytes."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in units and t[-1:] else ""
    number = t[:-1] if unit else t
    try:
        value = int(float(number) * units[unit])
    except (ValueError, OverflowError):  # OverflowError: inf, 1e400
        raise InvalidInputError(f"{what}={text!r} is not a size (say 64G or 1048576)") from None
    if value <= 0:
        raise InvalidInputError(f"{what}={text!r} must be positive")
    return value


def _env_size(name: str) -> int | None:
    text = os.environ.get(name)
    return parse_size(text, name) if text else None


class _Tee:
    """Reads from `source` and writes every byte read to `sink` on the way. The bytes go
    on as `source` gave them: no buffer between (each would be one more copy of them)."""

    def __init__(self, source: BinaryIO, sink: Writer) -> None:
        self._source = source
        self._sink = sink

    def read(self, n: int = -1, /) -> bytes:
        data = self._source.read(n)
        if data:
            self._sink.write(data)
        return data

    def readinto(self, buffer: memoryview | bytearray, /) -> int:
        """Into the reader's own buffer (the decompressor's): the bytes are copied once,
        from the source, rather than into a new bytes object and then into `buffer`."""
        count = read_into(self._source, buffer)
        if count:
            self._sink.write(memoryview(buffer)[:count])
        return count


class _Landing(io.RawIOBase):
    """A blob downloaded into its ingest `writer` on a thread of its own, at the network's
    pace, and read back from that file as it lands (the page cache holds it). The
    download (one of a pull's `--jobs` transfers) is over as soon as its last byte is
    written, not when the unpack reading it is: the next layer's download starts while
    this one still unpacks, and a pull's layers unpack side by side rather than the last
    one alone. An error of the download is raised at the read that waits for the bytes
    it did not bring; the end comes only once every byte is written. It is read from the
    blob's first byte: a resumed ingest's earlier bytes, then the rest as they land.
    `close` stops the download (at its next piece) and waits for its thread; a read after
    that raises, so a stopped download never looks like a blob's end."""

    def __init__(self, stream: BinaryIO, writer: Writer) -> None:
        super().__init__()
        self._writer = writer
        self._pos = 0  # the blob from its first byte: a resumed ingest's too
        self._landed = writer.offset
        self._done = self._stop = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(
            target=self._run, args=(stream,), name="blob-download", daemon=True
        )
        self._thread.start()

    def _run(self, stream: BinaryIO) -> None:
        buffer = bytearray(_CHUNK)
        view = memoryview(buffer)
        try:
            with stream:
                while True:
                    if self._stop:  # by `close`: an error to any read, never a short end
                        raise LaminaError("blob download stopped before its end")
                    count = read_into(stream, buffer)
                    if not count:
                        break
                    self._writer.write(view[:count])
                    with self._cond:
                        self._landed += count
                        self._cond.notify_all()
        except BaseException as exc:  # raised to the reader, at the read that needs it
            self._error = exc
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        with self._cond:
            while self._pos >= self._landed and not self._done:
                self._cond.wait()
            landed = self._landed
        if self._pos >= landed:
            if self._error is not None:
                raise self._error
            return 0
        count = self._writer.read_at(memoryview(buffer)[: landed - self._pos], self._pos)
        if not count:  # the ingest file lost bytes it was given: never expected
            raise InvalidInputError(f"ingest of {landed} bytes ends at {self._pos}")
        self._pos += count
        return count

    def close(self) -> None:
        if not self.closed:
            self._stop = True
            self._thread.join()
        super().close()


class _ReadAhead:
    """`stream` (a layer blob's decompressed tar) read on a thread of its own, up to
    `_AHEAD` pieces ahead of the consumer: the download, the compressed blob's hash and
    the decompression run beside the unpacking (tar parsing, file writes, their hashes)
    instead of taking turns with it, so one layer keeps two cores busy (the last layer
    of a pull is otherwise unpacked on one).

    An error on the reading thread is raised to the consumer where it would have been
    raised without the thread: at the read that needed the bytes. `close` stops and
    joins the thread, so nothing reads `stream` once the caller moves on."""

    _AHEAD = 8

    def __init__(self, stream: ByteStream, piece: int = _CHUNK) -> None:
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(self._AHEAD)
        self._stop = threading.Event()
        self._head = b""
        self._pos = 0
        self._ended = False
        self._thread = threading.Thread(
            target=self._run, args=(stream, piece), name="layer-read-ahead", daemon=True
        )
        self._thread.start()

    def _run(self, stream: ByteStream, piece: int) -> None:
        try:
            while not self._stop.is_set():
                data = stream.read(piece)
                self._put(data)
                if not data:
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, n: int = -1, /) -> bytes:
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(_CHUNK), b""))
        if self._pos >= len(self._head):
            if self._ended:
                return b""
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._ended = True
                raise item
            if not item:
                self._ended = True
                return b""
            self._head, self._pos = item, 0
        if self._pos == 0 and n >= len(self._head):
            data, self._head = self._head, b""  # the whole piece: no copy
            return data
        data = self._head[self._pos : self._pos + n]
        self._pos += len(data)
        return data

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.1)  # unblock a reader waiting to put
        self._thread.join()

    def __enter__(self) -> _ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ingest_layer(
    store: Store,
    lease: Lease,
    layer: Descriptor,
    diff_id: str,
    source: BinaryIO,
    *,
    limits: LayerLimits | None = None,
    keep_blob: bool = False,
    on_entry: EntryHook | None = None,
    collect: EntryCollector | None = None,
    writer: Writer | None = None,
) -> int:
    """A layer blob arriving (load, pull) → its snapshot, in the one pass that reads it.

    ``source`` streams the blob as sent (gzip, zstd or plain) and should check its digest
    when read to its end (an archive's or registry's verified reader): it is read to EOF
    before anything becomes visible. Decompression is bounded by ``limits``; with
    ``keep_blob`` a compressed blob is also kept in the content store as it came. Returns
    the tar's size; an existing layer is not read.

    ``writer``: the caller's (resumable) ingest of this blob, e.g. a pull's, which keeps
    what arrived if the transfer breaks. ``source`` is downloaded into it on a thread of
    its own (``_Landing``) and unpacked from it as it lands; its size and digest are
    checked before the snapshot becomes visible (so ``source`` need not verify):
    committed with ``keep_blob``, else only checked (the caller's block then drops it)."""
    lim = limits or LayerLimits()
    compressed = Compression.from_media_type(layer.media_type) is not Compression.NONE
    outer = writer
    with contextlib.ExitStack() as stack:
        if outer is not None:
            source = cast(BinaryIO, stack.enter_context(contextlib.closing(
                _Landing(source, outer))))  # fmt: skip
        elif keep_blob and compressed and not store.content.has(layer.digest):
            lease.add_blob(layer.digest)
            writer = stack.enter_context(
                store.content.writer(layer.digest, layer.size, lease=lease)
            )
            source = cast(BinaryIO, _Tee(source, writer))
        reader = stack.enter_context(
            _ReadAhead(open_layer_reader(source, lim.max_size, lim.max_ratio, digest=False))
        )

        def finish() -> None:
            while reader.read(_CHUNK):
                pass
            while source.read(_CHUNK):  # to EOF: the source checks the digest there
                pass
            if writer is not None and (outer is None or (keep_blob and compressed)):
                writer.commit()
            elif writer is not None:
                writer.verify()

        return unpack_layer(
            store, lease, diff_id, reader, limits=Limits(max_total_bytes=lim.max_size),
            finish=finish, on_entry=on_entry, collect=collect,
        )  # fmt: skip


def ensure_layers(store: Store, lease: Lease, layers: Sequence[LayerRecord]) -> list[Path]:
    """The snapshot dir of each layer (bottom first), unpacking from a kept blob if needed."""
    return ensure_snapshots(store, layers, lease)


# -- a directory becomes a layer -----------------------------------------------------------


def commit_dir_layer(
    store: Store,
    lease: Lease,
    directory: Path,
    changes: Iterable[Change],
    *,
    source_date_epoch: int | None,
    on_entry: EntryHook | None = None,
    copier: EntryCopier | None = None,
) -> LayerRecord:
    """Make ``directory`` (on the store's file system, holding exactly ``changes`` at their
    paths) the snapshot of the layer those changes write: the tar is hashed and recorded,
    never stored or compressed, and the directory is renamed into place. ``on_entry``
    sees each entry, as the tar has it, read back from the record. ``copier``: the
    changes are written into ``directory`` as the tar is hashed (see ``DirectCopy``)."""
    record_tmp = record_tmp_path(store, "sha256:" + "0" * 64)
    try:
        with open(record_tmp, "xb") as f:
            recorder = SplitRecorder(f)
            index = EntryCollector()  # the file index, from this same pass
            stats = write_layer(changes, None, source_date_epoch=source_date_epoch,
                                record=recorder, collect=index, copier=copier)  # fmt: skip
            recorder.close()
            f.flush()
            os.fsync(f.fileno())
        diff_id = stats.diff_id
        lease.add_snapshot(diff_id)
        target = store.snapshot_path(diff_id)
        if store.has_layer(diff_id):
            shutil.rmtree(directory)
        else:
            os.rename(record_tmp, store.record_path(diff_id))
            if target.is_dir():
                shutil.rmtree(directory)
            else:
                try:
                    os.rename(directory, target)
                except OSError:
                    if not target.is_dir():
                        raise
                    shutil.rmtree(directory)
            store.put_snapshot(diff_id, stats.size)
            store.set_snapshot_entries(diff_id, count_entries(target))
        if not store.file_index.has(diff_id):
            store.file_index.put(diff_id, index.columns())
    finally:
        with contextlib.suppress(FileNotFoundError):
            record_tmp.unlink()
    if on_entry is not None:
        for entry in record_entries(store.record_path(diff_id)):
            on_entry(entry)
    return _snapshot_record(diff_id, stats.size)


def commit_copy_layer(
    store: Store,
    lease: Lease,
    directory: Path,
    changes: Sequence[Change],
    *,
    source_date_epoch: int | None,
    on_entry: EntryHook | None = None,
    previous: Mapping[str, str] | None = None,
) -> LayerRecord:
    """A COPY's layer: ``changes`` (in layer order; files, dirs and symlinks whose sources
    live anywhere, or already in ``directory``) are copied straight into ``directory``
    (on the store's file system) entry by entry as the tar they stand for is hashed and
    recorded: each body is read once (the sources read ahead in the background), hashed
    and written; then ``directory`` becomes the snapshot. The tar, its diff_id and record
    are those ``commit_changes_layer`` gives for the same changes; no tar is written or
    parsed. ``previous``: files an earlier committed snapshot holds with the same content,
    hardlinked from there when their metadata matches too (see ``DirectCopy``)."""
    with DirectCopy(os.fspath(directory), changes, source_date_epoch=source_date_epoch,
                    previous=previous) as copy:  # fmt: skip
        return commit_dir_layer(store, lease, directory, changes,
                                source_date_epoch=source_date_epoch, on_entry=on_entry,
                                copier=copy)  # fmt: skip


def commit_changes_layer(
    store: Store,
    lease: Lease,
    changes: list[Change],
    *,
    source_date_epoch: int | None,
    on_entry: EntryHook | None = None,
) -> LayerRecord:
    """A layer of ``changes`` whose sources live anywhere (a COPY from the context, an
    imported rootfs): the tar is written once and applied into a new snapshot in the
    same pass, with a reader thread between the two."""
    import threading

    r, w = os.pipe()
    index = EntryCollector()  # the file index, gathered as the tar is written
    error: list[BaseException] = []
    written: list[str] = []

    def produce() -> None:
        try:
            with open(w, "wb", buffering=_CHUNK) as out:
                written.append(
                    write_layer(
                        changes, out, source_date_epoch=source_date_epoch, collect=index
                    ).diff_id
                )
        except BaseException as exc:  # surfaces below
            error.append(exc)

    thread = threading.Thread(target=produce, name="layer-tar", daemon=True)
    thread.start()
    diff_ids: list[str] = []
    try:
        with open(r, "rb", buffering=_CHUNK) as tar:
            diff_id = _unpack_unknown(store, lease, tar, on_entry=on_entry)
            diff_ids.append(diff_id)
            while tar.read(_CHUNK):
                pass
    finally:
        thread.join()
    if error:
        raise error[0]
    if not store.file_index.has(diff_ids[0]):
        store.file_index.put(diff_ids[0], index.columns())
    return _stored_record(store, diff_ids[0])


def unpack_tar_layer(
    store: Store,
    lease: Lease,
    tar: ByteStream,
    *,
    limits: Limits | None = None,
    on_entry: EntryHook | None = None,
    collect: EntryCollector | None = None,
) -> LayerRecord:
    """A layer from an uncompressed tar stream whose diff_id is learnt by reading it
    (``lamina import`` of a tarball): unpacked into its snapshot in that one pass."""
    diff_id = _unpack_unknown(store, lease, tar, limits=limits, on_entry=on_entry, collect=collect)
    return _stored_record(store, diff_id)


def _snapshot_record(diff_id: str, size: int) -> LayerRecord:
    """A layer whose one copy is its snapshot: its blob is its uncompressed tar."""
    return LayerRecord(diff_id, diff_id, media_types.OCI_LAYER, size, size)


def _stored_record(store: Store, diff_id: str) -> LayerRecord:
    size = store.layer_size(diff_id)
    assert size is not None  # just committed, or already held
    return _snapshot_record(diff_id, size)


def _unpack_unknown(
    store: Store,
    lease: Lease,
    tar: ByteStream,
    *,
    limits: Limits | None = None,
    on_entry: EntryHook | None = None,
    collect: EntryCollector | None = None,
) -> str:
    """Unpack a tar whose diff_id is known only once read: staged, then named."""
    staging = Path(tempfile.mkdtemp(prefix=".tmp-commit-", dir=store.snapshots_dir))
    record_tmp = record_tmp_path(store, "sha256:" + "0" * 64)
    try:
        os.chmod(staging, 0o755)
        with open(record_tmp, "xb") as f:
            recorder = SplitRecorder(f)
            stats = apply_layer(tar, staging, overlay=True, limits=limits or Limits(),
                                record=recorder, on_entry=on_entry,
                                collect=collect)  # fmt: skip
            recorder.close()
            f.flush()
            os.fsync(f.fileno())
        diff_id = stats.diff_id
        lease.add_snapshot(diff_id)
        if not store.has_layer(diff_id):
            os.rename(record_tmp, store.record_path(diff_id))
            target = store.snapshot_path(diff_id)
            if not target.is_dir():
                with contextlib.suppress(OSError):
                    os.rename(staging, target)
            store.put_snapshot(diff_id, stats.size)
            store.set_snapshot_entries(diff_id, count_entries(target))
        return diff_id
    finally:
        with contextlib.suppress(FileNotFoundError):
            record_tmp.unlink()
        if staging.exists():
            remove_tree(staging)


# -- migration ---------------------------------------------------------------------------


Progress = Callable[[int, int, str], Any]
"""Called as (done, total, diff_id) while the store migrates."""


def migrate_layers(store: Store, progress: Progress | None = None) -> int:
    """Unpack every layer an older store holds only as a blob (or as a snapshot without a
    tar-split record). Resumable: each finished layer is ticked off in the db; killed
    midway, the next run continues. The old blobs become a cache of the compressed form
    (remembered, so saving gives the same digest until ``prune`` drops them)."""
    pending = store.pending_unpacks()
    for done, diff_id in enumerate(pending):
        if progress is not None:
            progress(done, len(pending), diff_id)
        rows = store.layers_with_diff_id(diff_id)
        blob = next((r for r in rows if store.content.has(r.digest)), None)
        if not store.has_layer(diff_id) and blob is not None:
            with store.lease() as lease:
                # An existing snapshot without a record keeps its directory; the record
                # is written from an unpack aside (see unpack_layer).
                unpack_blob(store, lease, blob, max_size=1 << 62, max_ratio=None)
        if blob is not None and store.has_layer(diff_id):
            # The old blob is now a cache of what the layer was (prune may drop it; until
            # then saving sends it as it is). Remembered under a key of its own: lamina's
            # own compression of this layer need not give the same bytes.
            store.remember_layer_blob(
                diff_id, "migrated:" + _compression_of(blob.media_type).value,
                BlobInfo(blob.digest, blob.size), blob.media_type,
            )  # fmt: skip
        store.unpack_done(diff_id)
    if progress is not None and pending:
        progress(len(pending), len(pending), "")
    return len(pending)


def _compression_of(media_type: str) -> Compression:
    try:
        return Compression.from_media_type(media_type)
    except InvalidInputError:
        return Compression.NONE


__all__ = [
    "DEFAULT_MAX_LAYER_RATIO",
    "DEFAULT_MAX_LAYER_SIZE",
    "LayerLimits",
    "commit_changes_layer",
    "commit_copy_layer",
    "commit_dir_layer",
    "ensure_layers",
    "ingest_layer",
    "migrate_layers",
    "parse_size",
    "unpack_blob",
    "unpack_layer",
    "unpack_tar_layer",
]
