"""Several processes on one root: ingest, tagging, and prune racing writers that hold leases."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lamina.oci import sha256_digest
from lamina.store import LayerRecord, Store, open_store

pytestmark = pytest.mark.integration

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"


def run_all(target: Callable[..., None], args: list[tuple[Any, ...]]) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=target, args=a) for a in args]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0, f"worker {p.name} exited with {p.exitcode}"


def make_image(store: Store, seed: bytes, tags: list[str], lease: Any = None) -> str:
    """Write a one-layer image's blobs (under `lease` if given) and record it."""
    layer = store.content.put_bytes(b"layer:" + seed, lease=lease)
    config = store.content.put_bytes(b"config:" + seed, lease=lease)
    manifest = json.dumps({"config": config.digest, "layers": [layer.digest]}).encode()
    man = store.content.put_bytes(manifest, lease=lease)
    record = LayerRecord(layer.digest, sha256_digest(b"diff:" + seed), LAYER, layer.size)
    store.add_image(man.digest, config.digest, [record], media_type=MANIFEST, tags=tags)
    return man.digest


def ingest_worker(root: Path, worker: int) -> None:
    with open_store(root) as store:
        items = [b"shared-%d" % i * 1000 for i in range(20)]
        items += [b"own-%d-%d" % (worker, i) * 1000 for i in range(20)]
        random.Random(worker).shuffle(items)
        for data in items:
            assert store.content.put_bytes(data, sha256_digest(data)).size == len(data)


def test_concurrent_ingest_of_same_and_different_blobs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    open_store(root).close()
    run_all(ingest_worker, [(root, w) for w in range(6)])
    with open_store(root) as store:
        assert len(list(store.content.iter_digests())) == 20 + 6 * 20
        report = store.fsck()
        assert report.ok, report.problems
        assert report.strays == []


def tag_worker(root: Path, worker: int) -> None:
    with open_store(root) as store:
        digest = make_image(store, b"%d" % worker, [])
        for i in range(30):
            store.tag(f"example.com/w{worker}:t{i}", digest)
            store.tag("example.com/shared:latest", digest)


@pytest.mark.slow
def test_concurrent_tagging_loses_no_tag(tmp_path: Path) -> None:
    # No store exists yet: the workers also race to create and migrate it.
    root = tmp_path / "root"
    run_all(tag_worker, [(root, w) for w in range(6)])
    with open_store(root) as store:
        images = store.list_images()
        assert len(images) == 6
        for image in images:
            worker = json.loads(store.content.read_bytes(image.config_digest, 100).split(b":")[1])
            own = {f"example.com/w{worker}:t{i}" for i in range(30)}
            assert own <= set(image.tags)
        assert sum(len(i.tags) for i in images) == 6 * 30 + 1
        assert store.fsck().ok


def leased_writer(root: Path, worker: int, rounds: int) -> None:
    with open_store(root) as store:
        for i in range(rounds):
            seed = os.urandom(8) + b"%d-%d" % (worker, i)
            with store.lease() as lease:
                # Dangling on purpose every third round: prune must take those, and only those.
                tags = [] if i % 3 == 2 else [f"example.com/w{worker}:r{i}"]
                make_image(store, seed, tags, lease=lease)


def pruner(root: Path, rounds: int) -> None:
    with open_store(root) as store:
        for _ in range(rounds):
            store.prune()


@pytest.mark.slow
def test_prune_races_writers_that_hold_leases(tmp_path: Path) -> None:
    root = tmp_path / "root"
    open_store(root).close()
    rounds = 30
    run_all(
        lambda kind, *a: leased_writer(root, *a) if kind == "w" else pruner(root, *a),
        [("w", w, rounds) for w in range(4)] + [("p", 40), ("p", 40)],
    )
    with open_store(root) as store:
        store.prune()
        tagged = {t for image in store.list_images() for t in image.tags}
        expected = {f"example.com/w{w}:r{i}" for w in range(4) for i in range(rounds) if i % 3 != 2}
        assert tagged == expected
        report = store.fsck()
        assert report.ok, report.problems
        held = {b for image in store.list_images() for b in (image.digest, image.config_digest)}
        held |= {layer.digest for image in store.list_images() for layer in image.layers}
        assert set(store.content.iter_digests()) == held
