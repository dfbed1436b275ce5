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
    # When each blob's bytes reach the client: between its first and last, the pull holds
    # one of its download slots, so at no moment do more than `jobs` blobs have bytes
    # coming (counted at the client: no clock of the proxy's threads to allow for).
    arrivals: dict[str, list[float]] = {}

    def events(kind: str, digest: str, n: int) -> None:
        if kind == "downloading" and n:
            arrivals.setdefault(digest, []).append(time.monotonic())

    pulled = other.pull(ref, jobs=jobs, events=events)
    assert pulled.layers_downloaded == 5
    # five layers and the config (the proxy logs a GET once its thread is done with it,
    # which may be a moment after the client has the last byte)
    deadline = time.monotonic() + 10
    while len(proxy.blob_gets()) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(proxy.blob_gets()) == 6
    assert len(arrivals) == 5
    assert _most_at_once([(min(t), max(t)) for t in arrivals.values()]) <= jobs
    image = other.resolve(ref)
    assert [layer.diff_id for layer in image.layers] == [
        layer.diff_id for layer in lamina.resolve(five_layers).layers
    ]
    assert all(other.store.has_layer(layer.diff_id) for layer in image.layers)
    assert other.store.content.ingests() == []


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    """How many of `spans` (start, end) overlap at most; one ending as another starts
    at the same instant counts as overlapping."""
    edges = sorted([(start, 0) for start, _ in spans] + [(end, 1) for _, end in spans])
    most = now = 0
    for _, ending in edges:
        now += -1 if ending else 1
        most = max(most, now)
    return most
