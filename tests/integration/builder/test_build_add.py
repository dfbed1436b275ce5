"""ADD: local archives in every compression are unpacked; URLs are fetched and checked."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import http.server
import io
import lzma
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from lamina.api import Lamina
from lamina.errors import DigestMismatchError, InvalidInputError

# Every test here runs whole builds under runc: `make test-fast` leaves them to `make test`.
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def tar_bytes() -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("pkg/file.txt")
        info.size = 5
        info.uid = 42
        tar.addfile(info, io.BytesIO(b"data\n"))
    return data.getvalue()


COMPRESS = {
    "tar": lambda b: b,
    "tar.gz": gzip.compress,
    "tar.bz2": bz2.compress,
    "tar.xz": lzma.compress,
    "tar.zst": lambda b: zstandard.ZstdCompressor().compress(b),
}


@pytest.mark.parametrize("suffix", sorted(COMPRESS))
def test_add_unpacks_local_archives(suffix: str, context: Path, build, image_tree) -> None:  # type: ignore[no-untyped-def]
    (context / f"a.{suffix}").write_bytes(COMPRESS[suffix](tar_bytes()))
    build(f"FROM busybox\nADD a.{suffix} /unpacked/\nCOPY a.{suffix} /copied\n", tags=["add"])
    with image_tree("add") as root:
        assert (root / "unpacked/pkg/file.txt").read_text() == "data\n"
        assert (root / "unpacked/pkg/file.txt").stat().st_uid == 42
        assert (root / "copied").read_bytes() == (context / f"a.{suffix}").read_bytes()


REQUESTS: list[str] = []


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "payload.txt").write_text("served\n")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            REQUESTS.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_add_url_with_checksum(lam: Lamina, server: str, build, image_tree) -> None:  # type: ignore[no-untyped-def]
    digest = "sha256:" + hashlib.sha256(b"served\n").hexdigest()
    text = f"FROM busybox\nADD --checksum={digest} {server}/payload.txt /dl/\n"
    first = build(text, tags=["url"])
    # What a URL holds lies outside the context: such a build is never replayed.
    assert not first.result.replayable
    with image_tree("url") as root:
        assert (root / "dl/payload.txt").read_text() == "served\n"
        assert (root / "dl/payload.txt").stat().st_mode & 0o777 == 0o600
    fetched = len(REQUESTS)
    assert build(text).texts("cached") == ["CACHED"]
    assert len(REQUESTS) == fetched  # the checksum is the key: no download for a hit
    assert first.texts("cached") == []
    bad = f"FROM busybox\nADD --checksum=sha256:{'0' * 64} {server}/payload.txt /dl/\n"
    with pytest.raises(DigestMismatchError):
        build(bad)


def test_many_sources_need_a_directory_destination(context: Path, build) -> None:  # type: ignore[no-untyped-def]
    (context / "a").write_text("a")
    (context / "b").write_text("b")
    with pytest.raises(InvalidInputError, match="must be a directory"):
        build("FROM busybox\nCOPY a b /dest\n")
