"""Pull over HTTPS from a real registry: a blob's body read over TLS is the blob (read
off the SSLSocket that decrypts it, or by h11), never the TLS records."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from registry_fixtures import Registry

from lamina.api import Lamina

pytestmark = pytest.mark.integration


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "tls-registry", tls=True)
    yield reg
    reg.stop()


def test_a_pull_over_https_unpacks_the_blobs_it_was_sent(
    lamina: Lamina, other: Lamina, tls_registry: Registry, busybox_rootfs: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    # the registry speaks HTTPS only: the client (loopback: certificate not checked, as
    # Docker treats a local registry) has to pull over TLS
    plain = httpx.get(f"http://{tls_registry.host}/v2/", timeout=10)
    assert plain.status_code == 400
    top = tmp_path / "top"
    shutil.copytree(busybox_rootfs, top, symlinks=True)
    data = os.urandom(3 << 20)  # incompressible: many reads of the body
    (top / "data.bin").write_bytes(data)
    lamina.import_image(busybox_rootfs, "base:1")
    image_id = lamina.import_image(top, "app:1", base="base:1")
    ref = f"{tls_registry.host}/tls/app:1"
    pushed = lamina.push("app:1", ref)
    pulled = other.pull(ref)
    assert (pulled.image_id, pulled.digest) == (image_id, pushed.digest)
    assert pulled.layers_downloaded == 2
    top_layer = other.resolve(ref).layers[-1]
    assert (other.store.snapshot_path(top_layer.diff_id) / "data.bin").read_bytes() == data
    assert other.store.content.ingests() == []
