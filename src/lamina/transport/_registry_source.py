"""A registry image as an image source on the transport core: raw manifest, raw config and
blobs by digest over the OCI distribution API.

Every manifest and config is checked against its digest before it is parsed; blobs
stream through `BlobStream`, which resumes with `Range: bytes=N-` (checking `206` and
`Content-Range`; a `200` is read past its first N bytes) when the connection drops, a
few times, and is verified at end of file unless its caller verifies (the store's
writer does).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO, cast

from lamina.errors import DigestMismatchError, InvalidInputError
from lamina.oci import (
    MAX_DOCUMENT_BYTES,
    Descriptor,
    Platform,
    Reference,
    check_digest,
    media_types,
    sha256_digest,
)
from lamina.transport._core import SourceImage, describe_image, media_type_of, select_manifest
from lamina.transport._http import httpx
from lamina.transport._registry_client import MAX_TRIES, RegistryClient, RegistryError, backoff

MANIFEST_ACCEPT = ", ".join(
    [
        media_types.OCI_INDEX,
        media_types.DOCKER_MANIFEST_LIST,
        media_types.OCI_MANIFEST,
        media_types.DOCKER_MANIFEST,
    ]
)
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_CHUNK = 1 << 20


def _checked(data: bytes, digest: str, what: str) -> bytes:
    actual = sha256_digest(data)
    if actual != digest:
        raise DigestMismatchError(what, digest, actual)
    return data


def fetch_manifest(
    client: RegistryClient, repository: str, reference: str
) -> tuple[bytes, str, str]:
    """A manifest or index by tag or digest: bytes, media type, digest (checked)."""
    what = f"{client.domain}/{repository}:{reference}"
    if reference.startswith("sha256:"):
        what = f"{client.domain}/{repository}@{reference}"
    response = client.request(
        "GET",
        f"/v2/{repository}/manifests/{reference}",
        what=f"manifest {what}",
        headers={"Accept": MANIFEST_ACCEPT},
    )
    data = response.content
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InvalidInputError(f"manifest {what}: {len(data)} bytes is too large")
    digest = sha256_digest(data)
    if reference.startswith("sha256:"):
        _checked(data, reference, f"manifest {what}")
    elif (said := response.headers.get("docker-content-digest")) and said != digest:
        raise DigestMismatchError(f"manifest {what} (Docker-Content-Digest)", said, digest)
    declared = response.headers.get("content-type", "").split(";")[0].strip()
    if declared not in media_types.MANIFEST_TYPES | media_types.INDEX_TYPES:
        declared = ""
    return data, media_type_of(data, declared, f"manifest {what}"), digest


_NEXT_PAGE = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
_MAX_TAG_PAGES = 1000


def list_tags(client: RegistryClient, repository: str, page_size: int = 0) -> list[str]:
    """The repository's tags (GET /v2/<name>/tags/list, `n=page_size` if given), every
    page the registry's `Link: <...>; rel="next"` points to, in the registry's order."""
    tags: list[str] = []
    query = f"?n={page_size}" if page_size else ""
    path: str | None = f"/v2/{repository}/tags/list{query}"
    for _ in range(_MAX_TAG_PAGES):
        if path is None:
            return tags
        what = f"tags of {client.domain}/{repository}"
        response = client.request("GET", path, what=what)
        try:
            doc = json.loads(response.content)
            page = doc.get("tags") or []
        except (ValueError, AttributeError):
            raise InvalidInputError(f"{what}: the registry's answer is not a tag list") from None
        if not isinstance(page, list) or not all(isinstance(t, str) for t in page):
            raise InvalidInputError(f"{what}: the registry's answer is not a tag list")
        tags.extend(page)
        found = _NEXT_PAGE.search(response.headers.get("link", ""))
        path = found.group(1) if found else None
        if path is not None and not path.startswith("/"):
            from urllib.parse import urlsplit

            parts = urlsplit(path)  # an absolute link: only to this registry
            if parts.netloc != client.host or not parts.path.startswith("/v2/"):
                raise InvalidInputError(f"{what}: the next page is on another server: {path}")
            path = parts.path + (f"?{parts.query}" if parts.query else "")
    raise InvalidInputError(
        f"tags of {client.domain}/{repository}: more than {_MAX_TAG_PAGES} pages"
    )


class VerifyingStream(io.RawIOBase):
    """Any raw stream read as exactly `size` bytes whose sha256 must be `digest`.

    More bytes than `size`, fewer, or other bytes raise (DigestMismatchError names
    `what`) at the point they are noticed, so nothing unverified is taken as whole.
    """

    def __init__(self, raw: io.RawIOBase, digest: str, size: int, what: str) -> None:
        super().__init__()
        self._raw = raw
        self._digest = digest
        self._remaining = size
        self._hash = hashlib.sha256()
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if self._remaining == 0:
            return 0
        view = memoryview(buffer)[: min(len(buffer), self._remaining)]
        count = self._raw.readinto(view)
        if not count:
            raise InvalidInputError(f"{self._what}: ends {self._remaining} bytes early")
        self._hash.update(view[:count])
        self._remaining -= count
        if self._remaining == 0:
            actual = "sha256:" + self._hash.hexdigest()
            if actual != self._digest:
                raise DigestMismatchError(self._what, self._digest, actual)
        return int(count)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class BlobStream(io.RawIOBase):
    """A blob's bytes from `offset` on, resumed with Range after a dropped connection.

    `on_bytes(n)` is told of every byte that arrives (progress, accounting).
    """

    def __init__(
        self,
        client: RegistryClient,
        repository: str,
        descriptor: Descriptor,
        offset: int = 0,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__()
        self._client = client
        self._path = f"/v2/{repository}/blobs/{descriptor.digest}"
        self._size = descriptor.size
        self._position = offset
        self._what = f"blob {descriptor.digest}"
        self._on_bytes = on_bytes
        self._response: httpx.Response | None = None
        self._chunks: Iterator[bytes] | None = None
        # The response's body straight off its socket (see `_raw_body`), else None: h11.
        self._sock: socket.socket | None = None
        self._body_left = 0
        self._pending: memoryview | bytes = b""
        self._failures = 0

    def readable(self) -> bool:
        return True

    def _open(self) -> None:
        headers = {"Range": f"bytes={self._position}-"} if self._position else {}
        response = self._client.request(
            "GET", self._path, what=self._what, ok=(200, 206), headers=headers, stream=True
        )
        skip = 0
        if response.status_code == 206:
            match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
            if match is None or int(match.group(1)) != self._position:
                response.close()
                raise RegistryError(
                    f"{self._what}: asked for bytes from {self._position}, the registry answered"
                    f" Content-Range {response.headers.get('content-range', '')[:60]!r}"
                )
        else:
            skip = self._position  # a 200 to a Range request: the whole blob again
        self._response = response
        raw = _raw_body(response)
        if raw is not None:
            self._sock, buffered, self._body_left = raw
            self._pending = memoryview(buffered) if buffered else b""
            self._chunks = iter(())
        else:
            # As the socket gives them (no re-chunking: every join is a copy of the blob).
            self._chunks = response.iter_raw()
        while skip:
            chunk = self._pending or self._arrived(min(skip, _CHUNK))
            self._pending = b""
            if not chunk:
                raise RegistryError(f"{self._what}: the registry sent less than before")
            if len(chunk) > skip:
                self._pending = memoryview(chunk)[skip:]
                skip = 0
            else:
                skip -= len(chunk)

    def _arrived(self, most: int) -> bytes:
        """The next bytes of the open response as they arrive (b"" at its end): off the
        socket, at most `most` and never past the body's Content-Length, or from h11."""
        if self._sock is None:
            assert self._chunks is not None
            return next(self._chunks, b"")
        if not self._body_left:
            return b""
        data = self._sock.recv(min(most, self._body_left))
        self._body_left -= len(data)
        return data

    def _close_response(self) -> None:
        if self._response is not None:
            # A body read off the socket leaves h11 mid-message: httpcore closes that
            # connection rather than reuse it (it reuses only a finished exchange).
            self._response.close()
        self._response, self._chunks, self._pending = None, None, b""
        self._sock, self._body_left = None, 0

    def _next(self, most: int) -> memoryview | bytes:
        """Up to `most` of the next bytes that arrived (empty at the blob's end), as a view
        of the received chunk: the callers copy it once, where it goes."""
        remaining = self._size - self._position
        if remaining <= 0:
            self._close_response()
            return b""
        while not self._pending:
            try:
                if self._chunks is None:
                    self._open()
                    if self._pending:
                        break
                chunk = self._arrived(max(most, 1))
            except (httpx.TransportError, httpx.StreamError, OSError) as exc:
                chunk = b""
                self._fail(exc)
                continue
            if not chunk:
                self._fail(None)  # ended early: ask for the rest
                continue
            self._pending = memoryview(chunk)
        count = min(most, len(self._pending), remaining)
        piece = self._pending[:count]
        self._pending = self._pending[count:]  # a view: nothing copied
        self._position += count
        self._failures = 0
        if self._on_bytes is not None:
            self._on_bytes(count)
        return piece

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if self._sock is not None and not self._pending and self._body_left:
            # Off the socket straight into the caller's buffer (the decompressor's):
            # no copy in user space at all.
            view = memoryview(buffer)[: min(len(buffer), self._size - self._position)]
            if view:
                try:
                    count = self._sock.recv_into(view, min(len(view), self._body_left))
                except OSError as exc:
                    self._fail(exc)
                    count = 0
                if count:
                    self._body_left -= count
                    self._position += count
                    self._failures = 0
                    if self._on_bytes is not None:
                        self._on_bytes(count)
                    return count
                # Ended early or broke: `_next` asks for the rest (Range), as for h11.
        piece = self._next(len(buffer))
        buffer[: len(piece)] = piece
        return len(piece)

    def read(self, size: int | None = -1, /) -> bytes:
        """Up to `size` bytes, copied once out of the received chunk (no buffer between)."""
        if size is None or size < 0:
            return self.readall()
        return bytes(self._next(size))

    def _fail(self, exc: Exception | None) -> None:
        self._close_response()
        self._failures += 1
        if self._failures >= MAX_TRIES:
            why = str(exc).splitlines()[0][:200] if exc else "the connection ended early"
            raise RegistryError(
                f"{self._what}: download failed at byte {self._position} of {self._size}: {why}",
                hint="run the same pull again: it continues from there",
            )
        time.sleep(backoff(self._failures - 1))

    def close(self) -> None:
        self._close_response()
        super().close()


def _raw_body(response: httpx.Response) -> tuple[socket.socket, bytes, int] | None:
    """A streamed HTTP/1.1 response's body to read off its socket: (the socket, the body
    bytes httpcore already received with the headers, the rest still to come), or None
    where h11 must read it (chunked, no Content-Length, not httpcore's socket, or a body
    h11 has begun). Read through h11, each MiB of a blob was copied five times in Python
    (h11's receive buffer, its extraction, httpcore's bytes, then the caller's buffer);
    off the socket it lands where it goes. The body is exactly Content-Length bytes: no
    byte past it is read, and the connection is closed afterwards, not reused."""
    if response.http_version != "HTTP/1.1" or "transfer-encoding" in response.headers:
        return None
    length = response.headers.get("content-length", "")
    network = response.extensions.get("network_stream")
    if not length.isdigit() or network is None:
        return None
    sock = _body_socket(network)
    if sock is None:
        return None
    # httpcore's HTTP/1.1 connection behind this response, through httpx's and the pool's
    # stream wrappers (private, so any change in them makes this None, and h11 reads).
    connection = _follow(response.stream, "_stream", "_httpcore_stream", "_stream", "_connection")
    state = getattr(connection, "_h11_state", None)
    reader = getattr(state, "_reader", None)
    if (
        state is None
        or getattr(connection, "_network_stream", None) is not network
        or getattr(reader, "_remaining", None) != int(length)
    ):
        return None
    buffered, _closed = state.trailing_data
    if len(buffered) > int(length):
        return None
    timeout = response.request.extensions.get("timeout", {}).get("read")
    sock.settimeout(timeout)
    return sock, buffered, int(length) - len(buffered)


def _body_socket(network: object) -> socket.socket | None:
    """The socket of httpcore's `network` stream whose reads give the response's own bytes,
    else None (h11 reads). A plain connection's socket (no TLS object at all); over TLS,
    only an SSLSocket that is itself that TLS (its own `_sslobj`): it decrypts as it reads.
    Through an https proxy to an https registry (httpcore's TLS in TLS) the socket is the
    outer SSLSocket, to the proxy, while the TLS to the registry is another object: that
    socket's bytes are the inner TLS's records, not the body."""
    info = getattr(network, "get_extra_info", None)
    if info is None:
        return None
    sock, tls = info("socket"), info("ssl_object")
    if not isinstance(sock, socket.socket):
        return None
    if isinstance(sock, ssl.SSLSocket):
        own = getattr(sock, "_sslobj", None)
        return sock if own is not None and tls is own else None
    return sock if tls is None else None


def _follow(start: object, *names: str) -> object:
    for name in names:
        start = getattr(start, name, None)
    return start


class RegistryBlobs:
    """The blobs of one repository, by descriptor: verified, resumable streams."""

    def __init__(self, client: RegistryClient, repository: str) -> None:
        self.client = client
        self.repository = repository

    def open_blob(
        self,
        descriptor: Descriptor,
        *,
        verify: bool = True,
        offset: int = 0,
        on_bytes: Callable[[int], None] | None = None,
    ) -> BinaryIO:
        check_digest(descriptor.digest, "blob")
        raw = BlobStream(self.client, self.repository, descriptor, offset, on_bytes)
        if not (verify and offset == 0):
            # The caller checks the digest (a store writer hashes what it writes): the
            # stream as it arrives, each chunk copied once, by `read`.
            return cast(BinaryIO, raw)
        what = f"blob {descriptor.digest}"
        stream = VerifyingStream(raw, descriptor.digest, descriptor.size, what)
        return cast(BinaryIO, io.BufferedReader(stream, _CHUNK))

    def read_blob(self, desc: Descriptor, what: str) -> bytes:
        """A small blob (a config), bounded and checked against its digest."""
        if desc.size > MAX_DOCUMENT_BYTES:
            raise InvalidInputError(f"{what}: {desc.size} bytes is more than allowed")
        with self.open_blob(desc) as stream:
            return stream.read()


class RegistrySource:
    """One image of a repository: `images()` → (SourceImage,), `open_blob` streams blobs."""

    format = "registry"

    def __init__(
        self, client: RegistryClient, reference: Reference, platform: Platform | None = None
    ) -> None:
        self.client = client
        self.reference = reference
        self.repository = reference.path
        self.blobs = RegistryBlobs(client, reference.path)
        target = reference.digest or reference.tag
        data, media_type, digest = fetch_manifest(client, self.repository, target)
        self.top_digest = digest
        top = Descriptor(media_type, digest, len(data))
        what = f"{reference}"
        _, manifest, manifest_bytes = select_manifest(self._fetch_child, top, data, what, platform)
        config_bytes = self.read_blob(manifest.config, f"{what} config")
        names = (
            (Reference(reference.domain, reference.path, reference.tag),) if reference.tag else ()
        )
        self._image = describe_image(names, manifest_bytes, config_bytes, what, manifest=manifest)

    def _fetch_child(self, desc: Descriptor, what: str) -> bytes:
        data, _, _ = fetch_manifest(self.client, self.repository, check_digest(desc.digest, what))
        return data

    def read_blob(self, desc: Descriptor, what: str) -> bytes:
        """A small blob (a config), bounded and checked against its digest."""
        return self.blobs.read_blob(desc, what)

    def images(self) -> tuple[SourceImage, ...]:
        return (self._image,)

    def open_blob(
        self,
        descriptor: Descriptor,
        *,
        verify: bool = True,
        offset: int = 0,
        on_bytes: Callable[[int], None] | None = None,
    ) -> BinaryIO:
        return self.blobs.open_blob(descriptor, verify=verify, offset=offset, on_bytes=on_bytes)

    def close(self) -> None:
        """The client belongs to whoever made it."""
