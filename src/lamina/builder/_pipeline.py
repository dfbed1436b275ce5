"""A layer blob written by three threads: tar → (diff_id, gzip, digest) → content store.

`lamina.layers.write_layer_blob` does all of it in one thread; hashlib and isal drop the
GIL on large buffers, so on two cores a pipeline commits a big RUN or COPY layer in about
half the time. Queues are bounded (a few MiB in flight), so memory stays flat.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable
from typing import Any

from lamina.layers import (
    Change,
    Compression,
    EntryCollector,
    LayerBlobInfo,
    LayerBlobWriter,
    write_layer,
)
from lamina.store import Lease, Store

_DEPTH = 4
_STOP = object()


class _Stage:
    """Calls `consume` with each chunk in a thread of its own; errors surface on the caller."""

    def __init__(self, consume: Callable[[Any], object], name: str, copy: bool) -> None:
        self._consume = consume
        self._copy = copy
        self._queue: queue.Queue[Any] = queue.Queue(_DEPTH)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                if self._error is None:
                    self._consume(item)
            except BaseException as exc:
                self._error = exc
            finally:
                self._queue.task_done()

    def write(self, data: Any, /) -> int:
        if self._error is not None:
            raise self._error
        # The tar writer reuses its buffer: what is queued must be a copy.
        self._queue.put(bytes(data) if self._copy else data)
        return len(data)

    def drain(self) -> None:
        self._queue.join()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()


class _TarSink(_Stage):
    """What write_layer writes to: it asks this sink for the diff_id, so it hashes nothing."""

    def __init__(self, blob: LayerBlobWriter) -> None:
        super().__init__(blob.write, "layer-compress", copy=True)
        self._blob = blob

    def uncompressed_digest(self) -> tuple[str, int]:
        self.drain()
        return self._blob.uncompressed_digest()


def write_layer_to_store(
    store: Store, lease: Lease, changes: list[Change], *, source_date_epoch: int | None
) -> LayerBlobInfo:
    """Write `changes` as a gzip layer blob into the content store (leased) and commit it,
    and record its file index, gathered as the tar is written."""
    index = EntryCollector()
    with store.content.writer(lease=lease) as w:
        storing = _Stage(w.write, "layer-store", copy=False)
        try:
            # The store's writer hashes what it stores: that is the blob's digest.
            blob = LayerBlobWriter(storing, Compression.GZIP, digest=False)  # type: ignore[arg-type]
            tar = _TarSink(blob)
            try:
                write_layer(changes, tar, source_date_epoch=source_date_epoch, collect=index)
                tar.drain()
            finally:
                tar.close()
            info = blob.finish()
            storing.drain()
        finally:
            storing.close()
        stored = w.commit()
    store.file_index.put(info.diff_id, index.entries)
    return dataclasses.replace(info, digest=stored.digest)
