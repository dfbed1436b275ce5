"""Lazy layers: layers whose blob a registry holds, fetched when something needs their bytes.

A build-cache import (`--cache-from type=registry`) and the pull of a build's base image
record where each layer they lack lives (`store.registry.remember_layers`: registry,
repository, blob digest, size, media type) instead of downloading it, as BuildKit keeps
"lazy" blobs with remote descriptors. The image or cache record is complete (manifest and
config are stored and verified); only layer bytes are missing, and the store knows where
they are, so `images`, `inspect`, `history`, `prune` and `fsck` work without them.

Whatever needs a layer's files (a build step that runs on it, `run`, `mount`, `save`)
goes through `Store.fetch_remote`, which calls `LazyLayers`: each layer is downloaded
from a repository that holds it, checked against its digest and diff_id, and unpacked
into its snapshot in one pass (the same ingest as a pull), several at once. A push to
a registry never needs them: the blob is mounted or skipped there, or streamed from the
registry that holds it (`remote_blob_stream`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from lamina.errors import InvalidInputError, NotFoundError
from lamina.store import LayerRecord, Lease, Store

if TYPE_CHECKING:
    from lamina.transport import LayerLimits

Notice = Callable[[str], None]


def _silent(line: str) -> None:
    pass


class LazyLayers:
    """The store's `remote_fetcher`: fetches lazy layers into their snapshots."""

    def __init__(
        self, store: Store, root: Path, limits: Callable[[], LayerLimits], jobs: int = 4
    ) -> None:
        self._store = store
        self._root = root
        # Called, not held: reading the limits loads lamina.transport, which a command
        # that never fetches a layer (`run` above all) must not pay for.
        self._limits = limits
        self._jobs = jobs
        self.notice: Notice = _silent
        """Told, one line per layer, what is being fetched and from where."""

    def __call__(self, layers: Sequence[LayerRecord], lease: Lease) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from lamina.api._registry import roomy_malloc

        roomy_malloc()
        if len(layers) == 1:
            self._one(layers[0], lease)
            return
        with ThreadPoolExecutor(max_workers=max(1, min(self._jobs, len(layers)))) as pool:
            for future in [pool.submit(self._one, layer, lease) for layer in layers]:
                future.result()

    def _one(self, layer: LayerRecord, lease: Lease) -> None:
        from lamina.api._registry import ingest_waiting, open_client
        from lamina.oci import Descriptor
        from lamina.transport import RegistryBlobs

        store = self._store
        places = store.registry.remote_layers(layer.diff_id)
        failure: NotFoundError | None = None
        for place in places:
            if store.has_layer(layer.diff_id):
                return
            self.notice(
                f"fetching layer {layer.diff_id[:19]} ({place.size} bytes) from {place.where()}"
            )
            desc = Descriptor(place.media_type, place.digest, place.size)
            try:
                with open_client(self._root, place.registry, store=store) as client:
                    what = f"layer {place.digest} of {place.where()}"
                    source = RegistryBlobs(client, place.repository)
                    ingest_waiting(store, lease, source, desc, layer.diff_id, self._limits(),
                                   what=what)  # fmt: skip
                self._check_size(layer)
                return
            except NotFoundError as exc:
                failure = exc  # that repository lost it: try the next one
        if not store.has_layer(layer.diff_id):
            why = f": {failure.message}" if failure else ""
            raise NotFoundError(
                f"layer {layer.diff_id} is not in the store and could not be fetched{why}",
                hint="pull the image (or build it) again",
            )

    def _check_size(self, layer: LayerRecord) -> None:
        """A layer recorded as its plain tar (a cache import) took its size from the cache
        before any byte arrived: the fetched tar must have it (its content is verified by
        diff_id either way), or the image recorded with it names a wrong size."""
        actual = self._store.layer_size(layer.diff_id)
        if layer.digest == layer.diff_id and actual is not None and actual != layer.size:
            raise InvalidInputError(
                f"layer {layer.diff_id}: the build cache said {layer.size} bytes, its tar has"
                f" {actual}",
                hint="the cache was written wrongly; build without --cache-from once",
            )


def remote_blob_stream(store: Store, root: Path, digest: str, offset: int) -> BinaryIO:
    """Blob `digest` from `offset` on, streamed from a registry known to hold it (a lazy
    layer pushed elsewhere: it travels through without being unpacked). The receiving
    registry checks the digest; NotFoundError if no registry is known to hold it."""
    from lamina.api._registry import open_client
    from lamina.oci import Descriptor
    from lamina.transport import RegistryBlobs

    place = store.registry.remote_blob(digest)
    if place is None:
        raise NotFoundError(f"blob {digest} is not in the store")
    client = open_client(root, place.registry, store=store)
    try:
        desc = Descriptor(place.media_type, place.digest, place.size)
        stream = RegistryBlobs(client, place.repository).open_blob(
            desc, verify=offset == 0, offset=offset
        )
    except BaseException:
        client.close()
        raise
    return cast(BinaryIO, _ClosingWith(stream, client.close))


class _ClosingWith:
    """A stream that also closes its client."""

    def __init__(self, stream: BinaryIO, also: Callable[[], None]) -> None:
        self._stream = stream
        self._also = also

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._also()

    def __enter__(self) -> _ClosingWith:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
