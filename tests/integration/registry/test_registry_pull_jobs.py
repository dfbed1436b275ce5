"""A pull downloads at most `--jobs` blobs at once, though more layers unpack at once (each
from its ingest as it lands), and the image it records is whole."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from registry_fixtures import Proxy

from lamina.api import Lamina

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def five_layers(lamina: Lamina, busybox_rootfs: Path, tmp_path: Path) -> str:
    lamina.import_image(busybox_rootfs, "l:0")
    top = tmp_path / "top"
    shutil.copytree(busybox_rootfs, top, symlinks=True)
    for n in range(1, 5):
        (top / f"data{n}.bin").write_bytes(os.urandom(1 << 20))
        lamina.import_image(top, f"l:{n}", base=f"l:{n - 1}")
    return "l:4"


@pytest.mark.parametrize("jobs", [1, 2])
def test_no_more_than_jobs_blobs_download_at_once(
    lamina: Lamina, other: Lamina, proxy: Proxy, five_layers: str, jobs: int
) -> None:
    ref = f"{proxy.host}/jobs/app:1"
    lamina.push(five_layers, ref)
    proxy.reset()
    proxy.faults.throttle = 0.03  # per 64 KiB: each blob takes ~0.5 s to come
    pulled = other.pull(ref, jobs=jobs)
    assert pulled.layers_downloaded == 5
    # five layers and the config (the proxy logs a GET once its thread is done with it,
    # which may be a moment after the client has the last byte)
    deadline = time.monotonic() + 10
    while len(proxy.blob_gets()) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(proxy.blob_gets()) == 6
    # (each GET counted until 0.2 s before its end: the proxy's thread may lag the client)
    assert 1 <= proxy.most_blob_gets_at_once(slack=0.2) <= jobs
    image = other.resolve(ref)
    assert [layer.diff_id for layer in image.layers] == [
        layer.diff_id for layer in lamina.resolve(five_layers).layers
    ]
    assert all(other.store.has_layer(layer.diff_id) for layer in image.layers)
    assert other.store.content.ingests() == []
