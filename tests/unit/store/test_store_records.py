"""Snapshot, cache, stat-cache and container records."""

from __future__ import annotations

import pytest
from store_helpers import add_image, put_layer

from lamina.errors import AlreadyExistsError, NotFoundError
from lamina.oci import sha256_digest
from lamina.store import FileIdentity, Store


def test_snapshot_records(store: Store) -> None:
    diff_id = sha256_digest(b"layer")
    with pytest.raises(NotFoundError, match="does not exist"):
        store.put_snapshot(diff_id, 10)
    store.snapshot_path(diff_id).mkdir()
    store.put_snapshot(diff_id, 10)
    store.put_snapshot(diff_id, 12, state="verified")
    record = store.get_snapshot(diff_id)
    assert record is not None and (record.size, record.state) == (12, "verified")
    assert [s.diff_id for s in store.list_snapshots()] == [diff_id]
    assert store.get_snapshot(sha256_digest(b"other")) is None


def test_cache_records_round_trip_and_refuse_missing_content(store: Store) -> None:
    blob = store.content.put_bytes(b"layer")
    with pytest.raises(NotFoundError, match="blob"):
        store.put_cache("k", {}, blobs=[sha256_digest(b"absent")])
    with pytest.raises(NotFoundError, match="snapshot"):
        store.put_cache("k", {}, snapshots=[sha256_digest(b"absent")])
    assert store.get_cache("k") is None
    store.put_cache("k", {"layer": blob.digest, "n": [1, 2]}, blobs=[blob.digest])
    record = store.get_cache("k")
    assert record is not None
    assert record.value == {"layer": blob.digest, "n": [1, 2]}
    assert record.blobs == (blob.digest,)
    assert record.last_used >= record.created
    store.put_cache("k", "replaced")
    replaced = store.get_cache("k")
    assert replaced is not None and replaced.value == "replaced" and replaced.blobs == ()
    store.put_cache("old", 1)
    assert store.remove_cache(unused_since=record.last_used + 1e9) == 2
    assert store.get_cache("old") is None


@pytest.mark.slow
def test_stat_cache_bulk_round_trip(store: Store) -> None:
    files = [
        FileIdentity(f"/ctx/f{i}", i, 1_700_000_000_000_000_000 + i, 1000 + i, 0o100644)
        for i in range(20_000)
    ]
    store.stat_cache_put((f, sha256_digest(f.path.encode())) for f in files)
    found = store.stat_cache_get(files)
    assert len(found) == 20_000
    assert found["/ctx/f7"] == sha256_digest(b"/ctx/f7")
    changed = [
        FileIdentity("/ctx/f1", 2, files[1].mtime_ns, files[1].inode, files[1].mode),
        FileIdentity("/ctx/f2", 2, files[2].mtime_ns + 1, files[2].inode, files[2].mode),
        FileIdentity("/ctx/f3", 3, files[3].mtime_ns, 0, files[3].mode),
        FileIdentity("/ctx/f4", 4, files[4].mtime_ns, files[4].inode, 0o100755),
        files[5],
    ]
    assert store.stat_cache_get(changed) == {"/ctx/f5": sha256_digest(b"/ctx/f5")}
    assert store.stat_cache_clear("/ctx/f1") == 11_111
    assert len(store.stat_cache_get(files)) == 20_000 - 11_111


def test_containers(store: Store) -> None:
    image = add_image(store, [put_layer(store, b"l")], tags=["t"])
    with pytest.raises(NotFoundError):
        store.add_container("abc", "web", sha256_digest(b"none"), {})
    store.add_container("abc123", "web", image, {"status": "created"})
    with pytest.raises(AlreadyExistsError):
        store.add_container("def456", "web", image, {})
    with pytest.raises(AlreadyExistsError):
        store.add_container("abc123", "db", image, {})
    store.add_container("abd999", "db", image, {})
    assert store.get_container("web").id == "abc123"
    assert store.get_container("abc1").name == "web"
    with pytest.raises(NotFoundError, match="ambiguous"):
        store.get_container("ab")
    store.set_container_state("abc123", {"status": "running", "pid": 7})
    assert store.get_container("abc123").state == {"status": "running", "pid": 7}
    assert [c.name for c in store.list_containers()] == ["web", "db"]
    store.untag("t")
    assert store.prune().images_removed == ()
    store.remove_container("abc123")
    store.remove_container("abd999")
    with pytest.raises(NotFoundError):
        store.remove_container("abc123")
    assert store.prune().images_removed == (image,)
