"""`pull`, `push`, `login`, `logout`: images between the store and registries.

Pulled layers go through the same ingest as `load` (`layer_record`: hashed while they
stream, every entry checked, the digest and diff_id verified before any image refers
to them), resumable: a partial blob stays in ingest/ and the next pull asks only for
the rest. Each layer is then unpacked into its snapshot, as `docker pull` extracts.
Push reads each blob through `layer_blob_for_push`, the one place that
decides what bytes leave the store for a layer.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from lamina.api._transfer import layer_record
from lamina.errors import (
    ConflictError,
    InvalidInputError,
    LaminaError,
    NotFoundError,
)
from lamina.oci import Descriptor, Manifest, Platform, Reference, parse_reference
from lamina.snapshots import ensure_snapshots
from lamina.store import ImageRecord, LayerRecord, Store
from lamina.transport import (
    Credentials,
    RegistryClient,
    RegistrySource,
    SourceImage,
    erase_credentials,
    push_image,
    save_credentials,
)

_MAX_MANIFEST = 8 << 20
_WAIT_FOR_OTHER_PULL = 3600.0
Events = Callable[[str, str, int], None]
"""(event, blob digest, bytes): pull: present/downloading/downloaded/unpacked; push:
known/existed/mounted/uploading/uploaded/resumed."""


def _quiet(event: str, digest: str, count: int) -> None:
    pass


@dataclass(frozen=True)
class PullResult:
    """An image pulled: the name it got, its ID and manifest digest, what travelled."""

    reference: str
    image_id: str
    digest: str
    layers_downloaded: int
    layers_present: int
    bytes_downloaded: int


@dataclass(frozen=True)
class PushResult:
    """An image pushed: where, its manifest digest, what each blob needed."""

    reference: str
    digest: str
    uploaded: int
    mounted: int
    existed: int
    bytes_sent: int


def insecure_registries(root: Path) -> set[str]:
    """Registries allowed over plain HTTP besides loopback: `<root>/registries.json`'s
    `{"insecure": ["host:port", ...]}`."""
    path = root / "registries.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return set()
    except ValueError:
        raise InvalidInputError(f"{path}: not valid JSON") from None
    names = doc.get("insecure", []) if isinstance(doc, dict) else []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidInputError(f"{path}: insecure must be a list of host[:port] strings")
    return set(names)


def open_client(
    root: Path, domain: str, *, tls_verify: bool = True, jobs: int = 4
) -> RegistryClient:
    """A client for `domain`, with the saved credentials and the plain-HTTP rule."""
    insecure = not tls_verify or domain in insecure_registries(root)
    return RegistryClient(domain, insecure=insecure, jobs=jobs)


def pull_image(
    store: Store,
    root: Path,
    text: str,
    *,
    platform: Platform | None = None,
    jobs: int = 4,
    max_bytes: int,
    tls_verify: bool = True,
    events: Events = _quiet,
) -> PullResult:
    """Pull `text` (a reference) into the store and tag it; only missing blobs travel."""
    ref = parse_reference(text)
    downloaded = [0]
    lock = threading.Lock()

    def count(n: int) -> None:
        with lock:
            downloaded[0] += n

    with open_client(root, ref.domain, tls_verify=tls_verify, jobs=jobs) as client:
        source = RegistrySource(client, ref, platform)
        (image,) = source.images()
        tags = (str(Reference(ref.domain, ref.path, ref.tag)),) if ref.tag else ()
        with store.lease() as lease:

            def one(position: int) -> tuple[LayerRecord, bool]:
                layer = image.manifest.layers[position]
                if store.content.has(layer.digest):
                    events("present", layer.digest, layer.size)
                counting = _CountingSource(source, count, events)
                waited = 0.0
                while True:
                    try:
                        record, new = layer_record(
                            store, image, position, counting, lease, max_bytes, resumable=True
                        )
                        break
                    except ConflictError:
                        # Another pull is writing this blob: wait for it, then use it.
                        if waited > _WAIT_FOR_OTHER_PULL:
                            raise
                        time.sleep(0.2)
                        waited += 0.2
                if new:
                    events("downloaded", layer.digest, layer.size)
                # Unpacked now, as docker pull does, while the blob is in the page cache
                # and beside the other layers' downloads; a mount or build then starts at once.
                ensure_snapshots(store, [record], lease)
                events("unpacked", layer.digest, 0)
                return record, new

            with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                futures = [pool.submit(one, n) for n in range(len(image.manifest.layers))]
                results = [f.result() for f in futures]
            layers = [record for record, _ in results]
            written = sum(new for _, new in results)
            store.content.put_bytes(image.config_bytes, image.config_digest, lease=lease)
            store.content.put_bytes(image.manifest_bytes, image.manifest_digest, lease=lease)
            record = store.add_image(
                image.manifest_digest,
                image.config_digest,
                layers,
                media_type=image.manifest.media_type,
                tags=tags,
            )
        store.registry.remember(
            ref.domain,
            ref.path,
            [image.manifest_digest, image.config_digest, *(d.digest for d in layers)],
        )
    return PullResult(
        str(ref), record.id, record.digest, written, len(layers) - written, downloaded[0]
    )


class _CountingSource:
    """A registry source whose blob streams report their bytes."""

    def __init__(
        self, source: RegistrySource, count: Callable[[int], None], events: Events
    ) -> None:
        self._source = source
        self._count = count
        self._events = events

    def images(self) -> tuple[SourceImage, ...]:
        return self._source.images()

    def close(self) -> None:
        self._source.close()

    def open_blob(
        self, descriptor: Descriptor, *, verify: bool = True, offset: int = 0
    ) -> BinaryIO:
        def on_bytes(n: int) -> None:
            self._count(n)
            self._events("downloading", descriptor.digest, n)

        return self._source.open_blob(descriptor, verify=verify, offset=offset, on_bytes=on_bytes)


def layer_blob_for_push(store: Store, descriptor: Descriptor, offset: int) -> BinaryIO:
    """The bytes a push sends for a blob, from `offset` on: today the blob as stored.

    The one place to change when layers are compressed on the way out (lean store).
    The stream is verified against the digest at its end, so bytes before `offset`
    are read (and hashed) but not returned.
    """
    stream = store.content.open(descriptor.digest)
    remaining = offset
    try:
        while remaining:
            skipped = stream.read(min(remaining, 1 << 20))
            if not skipped:
                raise NotFoundError(f"blob {descriptor.digest}: shorter than {offset} bytes")
            remaining -= len(skipped)
    except BaseException:
        stream.close()
        raise
    return stream


def push_to_registry(
    store: Store,
    root: Path,
    image: ImageRecord,
    text: str,
    *,
    jobs: int = 4,
    tls_verify: bool = True,
    events: Events = _quiet,
) -> PushResult:
    """Push a stored image to `text` (a reference with a tag, or none: by digest)."""
    ref = parse_reference(text)
    manifest_bytes = store.content.read_bytes(image.digest, _MAX_MANIFEST)
    Manifest.from_bytes(manifest_bytes, f"manifest {image.digest}")
    with open_client(root, ref.domain, tls_verify=tls_verify, jobs=jobs) as client:
        report = push_image(
            client,
            ref.path,
            ref.tag,
            manifest_bytes,
            image.media_type,
            store.registry,
            lambda desc, offset: layer_blob_for_push(store, desc, offset),
            jobs=jobs,
            events=lambda kind, desc, n: events(kind, desc.digest, n),
        )
    if ref.digest and ref.digest != report.manifest_digest:
        raise LaminaError(f"{text}: the image's digest is {report.manifest_digest}")
    return PushResult(
        str(ref),
        report.manifest_digest,
        len(report.uploaded),
        len(report.mounted),
        len(report.existed) + len(report.known),
        report.bytes_sent,
    )


def login(root: Path, registry: str, username: str, password: str, *, tls_verify: bool) -> Path:
    """Check the credentials against the registry, then save them; where they went."""
    if not username or not password:
        raise InvalidInputError("login needs a user name and a password")
    credentials = Credentials(username, password)
    insecure = not tls_verify or registry in insecure_registries(root)
    with RegistryClient(registry, insecure=insecure, credentials=credentials) as client:
        client.ping(login=True)
    return save_credentials(registry, credentials)


def logout(registry: str) -> bool:
    return erase_credentials(registry)
