"""Blob bodies as a pull reads them, against the real registry behind the fault proxy: off
the socket when the answer says its Content-Length (the registry's way), through h11 when
it is chunked; either way exactly the blob's bytes, checked against its digest, resumed
with Range when the body ends short or breaks, and no connection reused mid-message."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator

import httpx
import pytest
from registry_fixtures import Proxy, Registry

from lamina.errors import DigestMismatchError
from lamina.oci import Descriptor, media_types
from lamina.transport import RegistryBlobs, RegistryClient

pytestmark = [pytest.mark.integration]

REPO = "body/test"
SIZE = (3 << 20) + 12345  # several socket reads, not a round number


@pytest.fixture
def blob(registry: Registry) -> tuple[bytes, Descriptor]:
    """Random bytes pushed straight to the registry as one blob of REPO."""
    data = os.urandom(SIZE)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=f"http://{registry.host}") as http:
        started = http.post(f"/v2/{REPO}/blobs/uploads/")
        assert started.status_code == 202
        location = started.headers["location"]
        # The Location keeps its own query (upload state): the digest is added to it.
        separator = "&" if "?" in location else "?"
        done = http.put(f"{location}{separator}digest={digest}", content=data)
        assert done.status_code == 201, done.text
    return data, Descriptor(media_types.OCI_LAYER, digest, SIZE)


@pytest.fixture
def blobs(proxy: Proxy) -> Iterator[RegistryBlobs]:
    with RegistryClient(proxy.host) as client:
        yield RegistryBlobs(client, REPO)


def _read_into(stream: object, piece: int) -> bytes:
    """All of a stream through readinto with a buffer of `piece` bytes (as the
    decompressor reads it), never more than asked."""
    out = bytearray()
    buffer = bytearray(piece)
    while count := stream.readinto(buffer):  # type: ignore[attr-defined]
        assert 0 < count <= piece
        out += buffer[:count]
    return bytes(out)


def _blob_gets(
    proxy: Proxy, digest: str, at_least: int, last: str | None = None
) -> list[tuple[int, str, int]]:
    """(status, Range asked, client port) of each GET of the blob, once the proxy has
    logged `at_least` of them, one of them asking Range `last` if given (it logs a GET
    when its thread is done with it, which may be a moment after the client has the
    last byte)."""
    deadline = time.monotonic() + 10
    while True:
        gets = [(s.status, s.headers.get("range", ""), s.port) for s in proxy.blob_gets()
                if digest in s.path]  # fmt: skip
        done = len(gets) >= at_least and (last is None or any(g[1] == last for g in gets))
        if done or time.monotonic() > deadline:
            return gets
        time.sleep(0.05)


def test_a_blob_body_arrives_whole_and_from_an_offset_and_its_connection_is_not_reused(
    blob: tuple[bytes, Descriptor], blobs: RegistryBlobs, proxy: Proxy
) -> None:
    data, desc = blob
    with blobs.open_blob(desc) as stream:  # verified at its end
        assert stream.read() == data
    with blobs.open_blob(desc, verify=False) as stream:
        assert _read_into(stream, 7777) == data
    with blobs.open_blob(desc, verify=False, offset=SIZE - 5000) as stream:
        assert _read_into(stream, 1 << 20) == data[-5000:]
    # Half a body read, then closed: the next request must not meet its other half.
    with blobs.open_blob(desc, verify=False) as stream:
        assert stream.read(1000) == data[:1000]
    with blobs.open_blob(desc, verify=False, offset=10) as stream:
        assert stream.read(10) == data[10:20]
        assert _read_into(stream, 1 << 16) == data[20:]
    gets = _blob_gets(proxy, desc.digest, 4, "bytes=10-")
    asked = sorted((status, ask) for status, ask, _ in gets)  # in the order logged
    expected = [(200, ""), (200, ""), (206, f"bytes={SIZE - 5000}-"), (206, "bytes=10-")]
    # (the proxy logs the half-read GET only if it got all of its body out before the close)
    assert asked in (sorted(expected), sorted([*expected, (200, "")]))
    # A body read off the socket leaves its connection mid-message: never used again.
    assert len({port for _, _, port in gets}) == len(gets)


def test_a_chunked_blob_body_is_read_through_h11_and_checked(
    blob: tuple[bytes, Descriptor], blobs: RegistryBlobs, proxy: Proxy
) -> None:
    data, desc = blob
    proxy.faults.chunked = True
    with blobs.open_blob(desc) as stream:
        assert stream.read() == data
    with blobs.open_blob(desc, verify=False, offset=100) as stream:
        assert _read_into(stream, 65536) == data[100:]
    proxy.faults.corrupt = desc.digest
    with pytest.raises(DigestMismatchError, match=desc.digest), blobs.open_blob(desc) as stream:
        stream.read()


def test_a_body_shorter_than_the_blob_is_continued_with_range(
    blob: tuple[bytes, Descriptor], blobs: RegistryBlobs, proxy: Proxy
) -> None:
    data, desc = blob
    # A complete HTTP answer (its Content-Length is what it sends) that holds too little.
    proxy.faults.short_body = 100_000
    with blobs.open_blob(desc) as stream:
        assert _read_into(stream, 1 << 20) == data
    gets = _blob_gets(proxy, desc.digest, 2)
    assert [(status, ask) for status, ask, _ in gets] == [(200, ""), (206, "bytes=100000-")]


def test_a_body_cut_mid_way_resumes_from_what_arrived(
    blob: tuple[bytes, Descriptor], blobs: RegistryBlobs, proxy: Proxy
) -> None:
    data, desc = blob
    proxy.faults.drop_after = SIZE // 2
    with blobs.open_blob(desc) as stream:
        assert _read_into(stream, 1 << 20) == data
    (first, second) = _blob_gets(proxy, desc.digest, 2)
    assert first[0] == 200 and second[0] == 206
    start = int(second[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= SIZE // 2


def test_a_registry_lying_about_the_digest_is_refused(
    blob: tuple[bytes, Descriptor], blobs: RegistryBlobs, proxy: Proxy
) -> None:
    _, desc = blob
    proxy.faults.corrupt = desc.digest
    with pytest.raises(DigestMismatchError, match=desc.digest), blobs.open_blob(desc) as stream:
        _read_into(stream, 1 << 20)
    # Its size is right but its bytes are not: short or long is refused the same way.
    wrong = Descriptor(desc.media_type, desc.digest, desc.size - 1)
    with pytest.raises(DigestMismatchError, match=desc.digest), blobs.open_blob(wrong) as stream:
        stream.read()
