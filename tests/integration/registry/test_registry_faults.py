"""Faults between lamina and the registry: drops, 429s, corrupt bytes, Range answered
with 200, lamina killed mid-transfer, the registry stopped mid-push."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from registry_fixtures import Proxy, Registry, run

from lamina.api import Lamina
from lamina.errors import DigestMismatchError, InvalidInputError, LaminaError
from lamina.layers import Compression
from lamina.oci import media_types
from lamina.transport import layer_blob

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIG = 100 << 20


@pytest.fixture
def big_image(lamina: Lamina, busybox_rootfs: Path, tmp_path: Path) -> Iterator[str]:
    """base + a 100 MB layer of random bytes (gzip cannot shrink it)."""
    lamina.import_image(busybox_rootfs, "base:1")
    top = tmp_path / "top"
    run("cp", "-a", busybox_rootfs, top)
    with open(top / "big.bin", "wb") as out:
        out.write(os.urandom(BIG))
    lamina.import_image(top, "big:1", base="base:1")
    yield "big:1"


def _top(lamina: Lamina, name: str, position: int = -1) -> tuple[str, int]:
    """The blob a push sends for a layer: gzipped from its snapshot, the same every time."""
    layer = lamina.resolve(name).layers[position]
    with lamina.store.lease() as lease:
        sent = layer_blob(lamina.store, lease, layer.diff_id, Compression.GZIP).descriptor
    return sent.digest, sent.size


def _lamina_cli(root: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "lamina", "--root", str(root), *args, "--progress", "plain"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_a_dropped_download_resumes_with_range_and_sends_only_the_rest(
    lamina: Lamina, other: Lamina, proxy: Proxy, big_image: str
) -> None:
    lamina.push(big_image, f"{proxy.host}/big/app:1")
    digest, size = _top(lamina, big_image)
    proxy.reset()
    proxy.faults.drop_after = size // 2
    other.pull(f"{proxy.host}/big/app:1")
    gets = [s for s in proxy.blob_gets() if digest in s.path]
    assert len(gets) == 2
    first, second = gets
    assert first.sent < size
    # Resumed from what arrived: bytes in flight when the connection broke come again.
    start = int(second.headers["range"].removeprefix("bytes=").rstrip("-"))
    assert size // 4 < start <= first.sent
    rest = size - first.sent
    assert second.sent <= 1.05 * rest
    assert other.resolve(f"{proxy.host}/big/app:1").layers[-1].digest == digest


def test_range_answered_with_200_is_read_past_what_arrived(
    lamina: Lamina, other: Lamina, proxy: Proxy, big_image: str
) -> None:
    lamina.push(big_image, f"{proxy.host}/big/app:1")
    digest, size = _top(lamina, big_image)
    proxy.reset()
    proxy.faults.drop_after = size // 3
    proxy.faults.range_as_200 = True
    other.pull(f"{proxy.host}/big/app:1")
    gets = [s for s in proxy.blob_gets() if digest in s.path]
    assert [s.status for s in gets] == [200, 200]
    # unpacked in the pass that downloaded it; the blob is not kept (no --keep-blobs)
    pulled = other.resolve(f"{proxy.host}/big/app:1").layers[-1]
    assert pulled.digest == digest and other.store.has_layer(pulled.diff_id)
    assert not other.store.content.has(digest) and other.store.content.ingests() == []


def test_a_corrupted_byte_fails_the_pull_naming_the_digest_and_stores_nothing(
    lamina: Lamina, other: Lamina, proxy: Proxy, busybox_rootfs: Path
) -> None:
    lamina.import_image(busybox_rootfs, "base:1")
    lamina.push("base:1", f"{proxy.host}/lamina/base:1")
    digest, _ = _top(lamina, "base:1")
    (layer,) = lamina.resolve("base:1").layers
    proxy.faults.corrupt = digest
    # The gzip stream breaks before the digest is reached; either way the digest is named.
    with pytest.raises(InvalidInputError) as info:
        other.pull(f"{proxy.host}/lamina/base:1")
    assert digest in str(info.value)
    assert other.store.list_images() == []
    assert not other.store.content.has(digest)
    assert not other.store.has_layer(layer.diff_id)
    assert other.store.content.ingests() == []
    # and the next pull, without the fault, works
    assert other.pull(f"{proxy.host}/lamina/base:1").layers_downloaded == 1


def test_429_with_retry_after_is_waited_for_then_the_pull_completes(
    lamina: Lamina, other: Lamina, proxy: Proxy, busybox_rootfs: Path
) -> None:
    lamina.import_image(busybox_rootfs, "base:1")
    lamina.push("base:1", f"{proxy.host}/lamina/base:1")
    proxy.reset()
    proxy.faults.too_many = 1
    proxy.faults.retry_after = "2"
    started = time.monotonic()
    other.pull(f"{proxy.host}/lamina/base:1")
    assert time.monotonic() - started >= 2.0
    statuses = [s.status for s in proxy.log if s.path != "/v2/"]
    assert statuses[0] == 429 and statuses[1] == 200


def test_server_errors_are_retried_a_few_times_then_fail_clearly(
    lamina: Lamina, other: Lamina, proxy: Proxy, busybox_rootfs: Path
) -> None:
    lamina.import_image(busybox_rootfs, "base:1")
    lamina.push("base:1", f"{proxy.host}/lamina/base:1")
    proxy.faults.fail_5xx = 2
    other.pull(f"{proxy.host}/lamina/base:1")
    proxy.faults.fail_5xx = 100
    with pytest.raises(LaminaError, match=r"HTTP 503"):
        lamina.pull(f"{proxy.host}/lamina/base:1")


def test_lamina_killed_mid_pull_resumes_from_its_partial_blob(
    lamina: Lamina, proxy: Proxy, big_image: str, tmp_path: Path
) -> None:
    lamina.push(big_image, f"{proxy.host}/big/app:1")
    digest, size = _top(lamina, big_image)
    root = tmp_path / "killed-root"
    proxy.reset()
    proxy.faults.throttle = 0.004  # ~16 MB/s
    child = _lamina_cli(root, "pull", f"{proxy.host}/big/app:1")
    ingest = root / "ingest"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sizes = [p.stat().st_size for p in ingest.glob("ref-*")] if ingest.exists() else []
        if sizes and max(sizes) > size // 3:
            break
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    partial = max(p.stat().st_size for p in ingest.glob("ref-*"))
    assert 0 < partial < size
    proxy.reset()
    again = Lamina(root)
    try:
        assert again.store.list_images() == []  # nothing half-pulled is listed
        again.pull(f"{proxy.host}/big/app:1")
        gets = [s for s in proxy.blob_gets() if digest in s.path]
        assert len(gets) == 1
        (get,) = gets
        start = int(get.headers["range"].removeprefix("bytes=").rstrip("-"))
        assert start >= partial - (1 << 20)  # at most the last unflushed write is re-read
        assert get.sent <= 1.05 * (size - partial)
        assert again.store.content.ingests() == []
    finally:
        again.store.close()


def test_lamina_killed_mid_push_continues_the_upload(
    lamina: Lamina, proxy: Proxy, big_image: str, tmp_path: Path
) -> None:
    digest, size = _top(lamina, big_image)
    lamina.push("base:1", f"{proxy.host}/big/app:0")
    proxy.reset()
    proxy.faults.throttle = 0.004
    lamina.store.close()
    child = _lamina_cli(lamina.root, "push", big_image, f"{proxy.host}/big/app:1")
    deadline = time.monotonic() + 60
    first = 0
    while time.monotonic() < deadline and not first:
        # killed once the upload session is saved with some of the layer in it
        with sqlite3.connect(lamina.root / "metadata.db", timeout=30) as db:
            row = db.execute(
                "SELECT offset FROM registry_uploads WHERE digest = ?", (digest,)
            ).fetchone()
        first = row[0] if row else 0
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert 0 < first < size
    proxy.reset()
    again = Lamina(lamina.root)
    try:
        result = again.push(big_image, f"{proxy.host}/big/app:1")
        assert result.uploaded >= 1
        patched = sum(
            s.received for s in proxy.log
            if s.method in ("PATCH", "PUT") and "/blobs/uploads/" in s.path
        )  # fmt: skip
        config = again.store.content.size(again.resolve(big_image).config_digest)
        assert patched <= size - first + config
    finally:
        again.store.close()


def test_registry_stopped_mid_push_is_a_clear_error_then_the_next_push_completes(
    lamina: Lamina, registry: Registry, proxy: Proxy, big_image: str
) -> None:
    import threading

    proxy.faults.throttle = 0.004
    stopper = threading.Timer(1.0, registry.stop)
    stopper.start()
    try:
        with pytest.raises(LaminaError) as info:
            lamina.push(big_image, f"{proxy.host}/big/app:1")
    finally:
        stopper.join()
    assert "\n" not in info.value.message
    registry.start()
    proxy.faults.throttle = 0.0
    result = lamina.push(big_image, f"{proxy.host}/big/app:1")
    # layers compressed on the way out are the same every time: so is the manifest
    assert lamina.push(big_image, f"{proxy.host}/big/app:1").digest == result.digest


def test_an_upload_the_registry_has_forgotten_is_started_again(
    lamina: Lamina, proxy: Proxy, busybox_rootfs: Path
) -> None:
    lamina.import_image(busybox_rootfs, "base:1")
    digest, _ = _top(lamina, "base:1")
    forgotten = f"http://{proxy.host}/v2/lamina/base/blobs/uploads/gone?_state=stale"
    lamina.store.registry.save_upload(proxy.host, "lamina/base", digest, forgotten, 4096)
    result = lamina.push("base:1", f"{proxy.host}/lamina/base:1")
    assert result.uploaded == 2
    status = [s for s in proxy.log if s.method == "GET" and "/uploads/gone" in s.path]
    assert len(status) == 1 and status[0].status >= 400
    assert lamina.store.registry.upload(proxy.host, "lamina/base", digest) is None


def _upload(host: str, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = httpx.post(f"http://{host}/v2/{repo}/blobs/uploads/")
    location = httpx.URL(start.headers["location"])
    if not location.is_absolute_url:
        location = httpx.URL(f"http://{host}").join(location)
    done = httpx.put(location.copy_add_param("digest", digest), content=data)
    assert done.status_code == 201, done.text
    return digest


def _lying_image(host: str, repo: str, claimed_diff_id: str) -> None:
    """An image whose layer is a valid gzip tar but whose config claims another diff_id."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("evil.txt")
        payload = b"not what the config says\n"
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    layer = gzip.compress(out.getvalue())
    layer_digest = _upload(host, repo, layer)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [claimed_diff_id]},
        }
    ).encode()
    config_digest = _upload(host, repo, config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": media_types.OCI_MANIFEST,
        "config": {"mediaType": media_types.OCI_CONFIG, "digest": config_digest,
                   "size": len(config)},
        "layers": [{"mediaType": media_types.OCI_LAYER_GZIP, "digest": layer_digest,
                    "size": len(layer)}]}).encode()  # fmt: skip
    put = httpx.put(f"http://{host}/v2/{repo}/manifests/1", content=manifest,
                    headers={"Content-Type": media_types.OCI_MANIFEST})  # fmt: skip
    assert put.status_code == 201, put.text


@pytest.mark.parametrize("snapshot_exists", [False, True], ids=["new", "claims-a-known-one"])
def test_a_layer_whose_content_is_not_its_diff_id_is_refused(
    lamina: Lamina, registry: Registry, busybox_rootfs: Path, snapshot_exists: bool
) -> None:
    lamina.import_image(busybox_rootfs, "base:1")
    (base,) = lamina.resolve("base:1").layers
    claimed = base.diff_id if snapshot_exists else "sha256:" + "ab" * 32
    if snapshot_exists:
        lamina.store.close()
        mnt = lamina.root.parent / "mnt"
        mnt.mkdir()
        again = Lamina(lamina.root)
        again.mount("base:1", mnt)  # unpacks the snapshot of base's diff_id
        again.umount(mnt)
        lamina = again
    _lying_image(registry.host, "evil/app", claimed)
    before = {i.id for i in lamina.store.list_images()}
    with pytest.raises(DigestMismatchError, match="diff_id"):
        lamina.pull(f"{registry.host}/evil/app:1")
    assert {i.id for i in lamina.store.list_images()} == before
    if not snapshot_exists:
        assert not lamina.store.snapshot_path(claimed).exists()
