"""Pushing an image to a registry: only what the registry lacks travels.

For each blob (layers, then the config), cheapest first:

1. known: the repository is remembered to hold it (an earlier push or pull): nothing;
2. HEAD: the registry says it has it: nothing;
3. mount: another repository of the same registry is known to hold it: one POST
   `?mount=<digest>&from=<repo>`;
4. upload: POST, then PATCH in chunks (`Content-Range`), the last one sent with the
   closing PUT `?digest=`. The upload URL and offset are saved after each PATCH
   (`BlobLocations.save_upload`), so
   a push interrupted anywhere (even by SIGKILL) continues from what the registry
   reports (`GET` on the upload URL) instead of starting over; a registry that has
   forgotten the upload gets a new one.

Blobs go in parallel (`jobs`); the manifest goes last, and only then is the tag there.
A manifest the registry already has (HEAD by digest) skips its children.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from lamina.errors import InvalidInputError, LaminaError, NotFoundError
from lamina.oci import Descriptor, Manifest, sha256_digest
from lamina.transport._http import httpx
from lamina.transport._registry_client import (
    RegistryClient,
    RegistryError,
    RegistryNotFoundError,
)

UPLOAD_CHUNK = 32 << 20
_RANGE = re.compile(r"^(?:bytes=)?(\d+)-(\d+)$")


class BlobLocations(Protocol):
    """What lamina remembers about a registry (the store's `RegistryRecords`)."""

    def remember(self, registry: str, repository: str, digests: Iterable[str]) -> None: ...

    def known(self, registry: str, repository: str, digest: str) -> bool: ...

    def repositories_with(self, registry: str, digest: str) -> list[str]: ...

    def forget_repository(self, registry: str, repository: str) -> None: ...

    def save_upload(
        self, registry: str, repository: str, digest: str, location: str, offset: int
    ) -> None: ...

    def upload(self, registry: str, repository: str, digest: str) -> tuple[str, int] | None: ...

    def forget_upload(self, registry: str, repository: str, digest: str) -> None: ...


OpenAt = Callable[[Descriptor, int], BinaryIO]
"""A blob's bytes from an offset on: how a push reads what it sends."""


@dataclass
class PushReport:
    """What a push did with each blob, and the bytes it sent."""

    manifest_digest: str = ""
    known: list[str] = field(default_factory=list)
    existed: list[str] = field(default_factory=list)
    mounted: list[str] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    bytes_sent: int = 0
    manifest_existed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, kind: str, digest: str, sent: int = 0) -> None:
        with self._lock:
            getattr(self, kind).append(digest)
            self.bytes_sent += sent


Events = Callable[[str, Descriptor, int], None]
"""(what happened: known/existed/mounted/uploading/uploaded/resumed, the blob, bytes)."""


def _no_events(kind: str, desc: Descriptor, count: int) -> None:
    pass


class _Pusher:
    def __init__(
        self,
        client: RegistryClient,
        repository: str,
        locations: BlobLocations,
        open_at: OpenAt,
        report: PushReport,
        events: Events,
        chunk: int,
    ) -> None:
        self.client = client
        self.registry = client.domain
        self.repository = repository
        self.locations = locations
        self.open_at = open_at
        self.report = report
        self.events = events
        self.chunk = chunk

    def blob(self, desc: Descriptor) -> None:
        digest = desc.digest
        if self.locations.known(self.registry, self.repository, digest):
            self._done("known", desc)
            return
        head = self.client.request(
            "HEAD", f"/v2/{self.repository}/blobs/{digest}", what=f"blob {digest}", ok=(200, 404)
        )
        if head.status_code == 200:
            self._done("existed", desc)
            return
        location = None
        for source in self.locations.repositories_with(self.registry, digest):
            if source == self.repository:
                continue
            response = self.client.request(
                "POST",
                f"/v2/{self.repository}/blobs/uploads/",
                what=f"mount of blob {digest} from {source}",
                ok=(201, 202),
                params={"mount": digest, "from": source},
            )
            if response.status_code == 201:
                self._done("mounted", desc)
                return
            location = response.headers.get("location")  # not mounted: an upload began
            break
        self._upload(desc, location)
        self._done("uploaded", desc)

    def _done(self, kind: str, desc: Descriptor) -> None:
        # Remembered all at once when the push ends: one metadata transaction, not one
        # per blob (each commit waits for the disk).
        self.report.add(kind, desc.digest)
        self.events(kind, desc, 0)

    def _start(self, what: str) -> str:
        response = self.client.request(
            "POST", f"/v2/{self.repository}/blobs/uploads/", what=what, ok=(202,)
        )
        location = response.headers.get("location")
        if not location:
            raise RegistryError(f"{what}: the registry gave no upload location")
        return self.client.url(location)

    def _status(self, location: str, what: str) -> tuple[str, int] | None:
        """Where a saved upload stands, or None if the registry has forgotten it."""
        try:
            response = self.client.request("GET", location, what=what, ok=(204, 200))
        except (NotFoundError, RegistryError):
            return None
        match = _RANGE.match(response.headers.get("range", "0-0"))
        offset = int(match.group(2)) + 1 if match else 0
        if response.headers.get("range") is None:
            offset = 0
        return self.client.url(response.headers.get("location") or location), offset

    def _upload(self, desc: Descriptor, location: str | None) -> None:
        digest = desc.digest
        what = f"upload of blob {digest} to {self.registry}/{self.repository}"
        offset = 0
        saved = self.locations.upload(self.registry, self.repository, digest)
        if saved is not None:
            status = self._status(saved[0], what)
            if status is not None and 0 < status[1] <= desc.size:
                location, offset = status
                self.report.add("resumed", digest)
                self.events("resumed", desc, offset)
        location = self._start(what) if location is None else self.client.url(location)
        restarts = 0
        while True:
            try:
                self._send_chunks(desc, location, offset, what)
                break
            except (RegistryError, NotFoundError) as refused:
                # The registry lost or refused the session: ask where it stands, once,
                # else start a new upload, once. Bytes that do not match their digest
                # would not match again.
                restarts += 1
                digest_invalid = isinstance(refused, RegistryError) and (
                    refused.code == "DIGEST_INVALID"
                )
                if restarts > 2 or digest_invalid:
                    self.locations.forget_upload(self.registry, self.repository, digest)
                    raise
                status = self._status(location, what) if restarts == 1 else None
                if status is None:
                    location, offset = self._start(what), 0
                else:
                    location, offset = status
        if saved is not None or desc.size > self.chunk:
            self.locations.forget_upload(self.registry, self.repository, digest)

    def _send_chunks(self, desc: Descriptor, location: str, offset: int, what: str) -> None:
        """PATCH every chunk but the last, saving the session after each; the last goes
        with the closing PUT (`?digest=`), which saves a round trip per blob. Bodies
        stream from the store as they are sent."""
        with self.open_at(desc, offset) as stream:
            while True:
                length = min(self.chunk, desc.size - offset)
                body = self._body(stream, desc, length, what, offset)
                headers = {"Content-Type": "application/octet-stream",
                           "Content-Length": str(length)}  # fmt: skip
                if offset + length >= desc.size:
                    url = httpx.URL(location).copy_add_param("digest", desc.digest)
                    self.client.request(
                        "PUT", str(url), what=what, ok=(201, 204), content=body, headers=headers
                    )
                    return
                headers["Content-Range"] = f"{offset}-{offset + length - 1}"
                response = self.client.request(
                    "PATCH", location, what=what, ok=(202, 204), content=body, headers=headers
                )
                location = self.client.url(response.headers.get("location") or location)
                offset += length
                self.locations.save_upload(
                    self.registry, self.repository, desc.digest, location, offset
                )

    def _body(
        self, stream: BinaryIO, desc: Descriptor, length: int, what: str, offset: int
    ) -> Iterator[bytes]:
        """`length` bytes of `stream`, 1 MiB at a time, counted as they go."""
        left = length
        while left:
            data = stream.read(min(left, 1 << 20))
            if not data:
                raise InvalidInputError(
                    f"{what}: the store's blob ended at byte {offset + length - left}"
                )
            left -= len(data)
            self._sent(len(data))
            self.events("uploading", desc, len(data))
            yield data

    def _sent(self, count: int) -> None:
        with self.report._lock:
            self.report.bytes_sent += count


def push_image(
    client: RegistryClient,
    repository: str,
    tag: str,
    manifest_bytes: bytes,
    media_type: str,
    locations: BlobLocations,
    open_at: OpenAt,
    *,
    jobs: int = 4,
    events: Events = _no_events,
    chunk: int = UPLOAD_CHUNK,
    manifest: Manifest | None = None,
) -> PushReport:
    """Push one image's blobs, then its manifest under `tag` (or by digest).

    `manifest` is `manifest_bytes` already decoded (a build cache's manifest, whose
    config is not an image config, is pushed this way).
    """
    if manifest is None:
        manifest = Manifest.from_bytes(manifest_bytes, "manifest to push")
    digest = sha256_digest(manifest_bytes)
    report = PushReport(manifest_digest=digest)
    pusher = _Pusher(client, repository, locations, open_at, report, events, chunk)
    head = client.request(
        "HEAD",
        f"/v2/{repository}/manifests/{digest}",
        what=f"manifest {digest}",
        ok=(200, 404),
        headers={"Accept": media_type},
    )
    blobs = list({d.digest: d for d in [*manifest.layers, manifest.config]}.values())
    if head.status_code == 200:
        report.manifest_existed = True
        # The manifest is there, so each blob it names is (the registry checked them when
        # it took it): said per blob, as docker push says "Layer already exists".
        for desc in blobs:
            report.add("existed", desc.digest)
            events("existed", desc, 0)
    else:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for future in [pool.submit(pusher.blob, d) for d in blobs]:
                future.result()
    pushed = [*report.known, *report.existed, *report.mounted, *report.uploaded]
    locations.remember(client.domain, repository, pushed)
    target = tag or digest
    try:
        _put_manifest(client, repository, target, manifest_bytes, media_type, digest)
    except (NotFoundError, RegistryError) as refused:
        # (MANIFEST_)BLOB_UNKNOWN: a blob remembered as there is gone (deleted, garbage
        # collected): forget what is remembered of this repository and push again, once,
        # with a HEAD for every blob. The retry knows nothing, so it cannot loop.
        if report.manifest_existed or not report.known or not _blob_unknown(refused):
            raise
        locations.forget_repository(client.domain, repository)
        again = push_image(
            client, repository, tag, manifest_bytes, media_type, locations, open_at,
            jobs=jobs, events=events, chunk=chunk, manifest=manifest,
        )  # fmt: skip
        return _both(report, again)
    locations.remember(client.domain, repository, [digest])
    return report


def _both(first: PushReport, again: PushReport) -> PushReport:
    """One report for a push that went twice: what the first attempt sent stays sent (the
    retry then finds it there), what it only believed known is as the retry found it."""
    went = {*first.uploaded, *first.mounted}
    return PushReport(
        manifest_digest=again.manifest_digest,
        existed=[d for d in again.existed if d not in went],
        mounted=[*first.mounted, *(d for d in again.mounted if d not in went)],
        uploaded=[*first.uploaded, *(d for d in again.uploaded if d not in went)],
        resumed=[*first.resumed, *again.resumed],
        bytes_sent=first.bytes_sent + again.bytes_sent,
    )


def _blob_unknown(error: LaminaError) -> bool:
    """Whether a manifest PUT was refused because a blob it names is missing."""
    if not isinstance(error, RegistryError | RegistryNotFoundError):
        return False
    return error.code in ("MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN")


def _put_manifest(
    client: RegistryClient,
    repository: str,
    target: str,
    data: bytes,
    media_type: str,
    digest: str,
) -> None:
    response = client.request(
        "PUT",
        f"/v2/{repository}/manifests/{target}",
        what=f"manifest {client.domain}/{repository}:{target}",
        ok=(200, 201, 202),
        content=data,
        headers={"Content-Type": media_type},
    )
    said = response.headers.get("docker-content-digest")
    if said and said != digest:
        raise LaminaError(
            f"manifest {repository}:{target}: the registry stored {said}, lamina sent {digest}"
        )
