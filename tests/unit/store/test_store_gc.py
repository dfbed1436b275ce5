"""prune, leases and fsck."""

from __future__ import annotations

import os
import threading
import time

import pytest
from store_helpers import add_image, put_layer

from lamina.errors import ConflictError, NotFoundError
from lamina.oci import sha256_digest
from lamina.store import Store


def make_snapshot(store: Store, diff_id: str) -> None:
    path = store.snapshot_path(diff_id)
    (path / "ro").mkdir(parents=True)
    (path / "ro" / "file").write_bytes(b"x")
    os.chmod(path / "ro", 0o555)
    store.record_path(diff_id).write_bytes(b"tar-split record")
    store.put_snapshot(diff_id, 1)


def test_prune_keeps_referenced_and_frees_the_rest(store: Store) -> None:
    shared = put_layer(store, b"shared" * 10)
    kept_only = put_layer(store, b"kept")
    dangling_only = put_layer(store, b"dangling")
    kept = add_image(store, [shared, kept_only], config=b"k", tags=["kept"])
    used = add_image(store, [put_layer(store, b"used")], config=b"u")
    store.add_container("c", "c", used, {})
    dangling = add_image(store, [shared, dangling_only], config=b"d")
    dangling_manifest = store.get_image(dangling).manifest_size
    loose = store.content.put_bytes(b"loose")
    cached = store.content.put_bytes(b"cached")
    store.put_cache("key", {"layer": cached.digest}, blobs=[cached.digest])
    make_snapshot(store, shared.diff_id)
    make_snapshot(store, dangling_only.diff_id)

    report = store.prune()

    assert report.images_removed == (dangling,)
    expected_gone = {dangling, sha256_digest(b"d"), dangling_only.digest, loose.digest}
    assert set(report.blobs_removed) == expected_gone
    assert report.bytes_freed == dangling_manifest + 1 + len(b"dangling") + len(b"loose")
    assert report.snapshots_removed == (dangling_only.diff_id,)
    assert store.snapshot_path(shared.diff_id).is_dir()
    assert not store.snapshot_path(dangling_only.diff_id).exists()
    assert store.get_snapshot(dangling_only.diff_id) is None
    assert {i.digest for i in store.list_images()} == {kept, used}
    for digest in (shared.digest, kept_only.digest, cached.digest, kept):
        assert store.content.has(digest)
    assert store.fsck().ok
    assert store.prune().blobs_removed == ()
    store.untag("kept")
    store.put_cache("layer", {}, blobs=[kept_only.digest])
    store.prune()
    assert store.layer(kept_only.digest) == kept_only
    with pytest.raises(NotFoundError):
        store.layer(shared.digest)
    store.remove_cache(["key", "layer"])
    assert cached.digest in store.prune().blobs_removed
    with pytest.raises(NotFoundError):
        store.layer(kept_only.digest)


def test_lease_protects_blobs_and_snapshots_until_released(store: Store) -> None:
    data = b"work in progress"
    digest = sha256_digest(data)
    diff_id = sha256_digest(b"unpacking")
    with store.lease() as lease:
        with store.content.writer(digest, lease=lease) as w:
            w.write(data)
            w.commit()
        unknown = store.content.writer(lease=lease)
        with unknown as w:
            w.write(b"digest known only at commit")
            late = w.commit().digest
        lease.add_snapshot(diff_id)
        store.snapshot_path(diff_id).mkdir()
        report = store.prune()
        assert report.blobs_removed == () and report.snapshots_removed == ()
        assert store.content.has(digest) and store.content.has(late)
    assert set(store.prune().blobs_removed) == {digest, late}
    assert not store.snapshot_path(diff_id).exists()


def test_expired_lease_protects_nothing(store: Store) -> None:
    with store.lease(expires_in=3600) as lease:
        lease.add_blob(store.content.put_bytes(b"x").digest)
        lease.renew(0)  # expired from now on, however slowly the machine runs this test
        with pytest.raises(ConflictError, match="expired"):
            lease.add_blob(sha256_digest(b"y"))
        report = store.prune()
        assert report.leases_expired == 1
        assert report.blobs_removed == (sha256_digest(b"x"),)


def test_lease_renew_extends_expiry(store: Store) -> None:
    with store.lease(expires_in=0.5) as lease:
        lease.add_blob(store.content.put_bytes(b"x").digest)
        lease.renew(3600)
        time.sleep(0.6)
        assert store.prune().blobs_removed == ()


def test_prune_removes_stale_ingests_and_staging(store: Store) -> None:
    stale = store.content.ingest_dir / "tmp-old"
    stale.write_bytes(b"x")
    os.utime(stale, (0, 0))
    fresh = store.content.ingest_dir / "tmp-new"
    fresh.write_bytes(b"y")
    staging = store.snapshots_dir / ".tmp-unpack"
    (staging / "d").mkdir(parents=True)
    os.utime(staging, (0, 0))
    trash = store.snapshots_dir / ".trash-left-by-a-crash"
    trash.mkdir()
    assert store.prune().ingests_removed == 1
    assert not stale.exists() and fresh.exists()
    assert not staging.exists() and not trash.exists()


def test_fsck_finds_a_corrupt_blob_and_a_missing_one(store: Store) -> None:
    corrupt_layer = put_layer(store, b"will rot")
    missing_layer = put_layer(store, b"will vanish")
    add_image(store, [corrupt_layer, missing_layer], tags=["t"])
    assert store.fsck().ok
    path = store.content.path(corrupt_layer.digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"will rOt")
    store.content.path(missing_layer.digest).unlink()
    (store.content.ingest_dir / "tmp-partial").write_bytes(b"")
    report = store.fsck()
    assert not report.ok
    assert any("corrupt blob" in p and corrupt_layer.digest in p for p in report.problems)
    assert any(missing_layer.digest in p and "missing" in p for p in report.problems)
    assert len(report.problems) == 2
    assert any("partial ingest" in s for s in report.strays)


def test_fsck_finds_missing_snapshot_and_cache_content(store: Store) -> None:
    diff_id = sha256_digest(b"snap")
    store.snapshot_path(diff_id).mkdir()
    store.put_snapshot(diff_id, 0)
    blob = store.content.put_bytes(b"cached")
    store.put_cache("k", None, blobs=[blob.digest], snapshots=[diff_id])
    store.snapshot_path(diff_id).rmdir()
    store.content.delete(blob.digest)
    problems = store.fsck().problems
    assert any(f"snapshot {diff_id}" in p for p in problems)
    assert any(f"cache k: blob {blob.digest} is missing" == p for p in problems)


def test_lease_add_waits_for_a_running_prune(store: Store) -> None:
    # Prune marks, then sweeps; an intent added in between would be swept. So an add
    # must wait while a prune holds the gc lock, and go through once it is released.
    done = threading.Event()
    with store.lease() as lease:

        def add() -> None:
            lease.add_blob(sha256_digest(b"x"))
            done.set()

        adder = threading.Thread(target=add)
        with store._db.gc_lock(exclusive=True):
            adder.start()
            assert not done.wait(0.3)
        assert done.wait(10)
        adder.join()
