"""A process killed (SIGKILL) at a random moment leaves a consistent store behind."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import pytest

from lamina.oci import sha256_digest
from lamina.store import LayerRecord, Store, open_store

pytestmark = pytest.mark.integration

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"


def make_image(store: Store, rng: random.Random, tag: str | None) -> str:
    with store.lease() as lease:
        layers = []
        for _ in range(rng.randint(1, 4)):
            data = os.urandom(rng.randint(1, 3 << 20))
            with store.content.writer(lease=lease) as w:
                for start in range(0, len(data), 1 << 20):
                    w.write(data[start : start + (1 << 20)])
                info = w.commit()
            layers.append(LayerRecord(info.digest, sha256_digest(data[:64]), LAYER, info.size))
        config = store.content.put_bytes(os.urandom(32), lease=lease)
        manifest = json.dumps({"config": config.digest, "layers": [x.digest for x in layers]})
        man = store.content.put_bytes(manifest.encode(), lease=lease)
        store.add_image(
            man.digest, config.digest, layers, media_type=MANIFEST, tags=[tag] if tag else []
        )
        return man.digest


def busy_child(root: Path, seed: int, with_prune: bool) -> None:
    rng = random.Random(seed)
    with open_store(root) as store:
        for i in range(1000):
            make_image(store, rng, f"example.com/crash:{seed}-{i}" if i % 2 else None)
            if with_prune and i % 2:
                store.prune()


def check_consistent(store: Store) -> None:
    report = store.fsck()
    assert report.ok, report.problems
    for image in store.list_images():
        manifest = json.loads(store.content.read_bytes(image.digest, 1 << 20))
        assert manifest["config"] == image.config_digest
        assert manifest["layers"] == [layer.digest for layer in image.layers], "partial image"


@pytest.mark.slow
@pytest.mark.parametrize("with_prune", [False, True], ids=["ingest", "ingest+prune"])
def test_sigkill_at_random_moments_leaves_a_consistent_store(
    tmp_path: Path, with_prune: bool
) -> None:
    root = tmp_path / "root"
    open_store(root).close()
    ctx = multiprocessing.get_context("fork")
    rng = random.Random(1234)
    for round_ in range(20):
        child = ctx.Process(target=busy_child, args=(root, round_, with_prune))
        child.start()
        time.sleep(rng.uniform(0.005, 0.25))
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        assert child.exitcode == -signal.SIGKILL, "child ended before it was killed"
        with open_store(root) as store:
            check_consistent(store)
            # The next operations work, and collect what the killed child left.
            digest = make_image(store, rng, f"example.com/after:{round_}")
            store.prune(stale_after=0)
            assert store.resolve(f"example.com/after:{round_}").digest == digest
            check_consistent(store)
            assert store.content.ingests() == []
    with open_store(root) as store:
        tags = {t for image in store.list_images() for t in image.tags}
        assert {f"example.com/after:{r}" for r in range(20)} <= tags
