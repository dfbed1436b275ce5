"""A lease taking many resources in one transaction (what a pull's layers will write)."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from lamina.errors import ConflictError, InvalidInputError
from lamina.oci import sha256_digest
from lamina.store import Store


def test_add_all_protects_every_blob_and_snapshot_named(store: Store) -> None:
    blobs = [store.content.put_bytes(bytes([n]) * 10).digest for n in range(3)]
    snapshots = [sha256_digest(b"unpacking %d" % n) for n in range(2)]
    with store.lease() as lease:
        lease.add_all(blobs=blobs, snapshots=snapshots)
        for diff_id in snapshots:
            store.snapshot_path(diff_id).mkdir()
        report = store.prune()
        assert report.blobs_removed == () and report.snapshots_removed == ()
    report = store.prune()
    assert set(report.blobs_removed) == set(blobs)
    assert set(report.snapshots_removed) == set(snapshots)


def test_add_all_refuses_a_bad_digest_and_an_expired_lease(store: Store) -> None:
    with store.lease() as lease:
        with pytest.raises(InvalidInputError):
            lease.add_all(snapshots=["sha256:../../etc"])
        lease.renew(0)
        with pytest.raises(ConflictError, match="expired"):
            lease.add_all(blobs=[sha256_digest(b"y")])


def _holding_the_write_lock(store: Store, seconds: float) -> threading.Thread:
    """Another connection holds the db's write lock for `seconds` (as a writer in
    another process would): any write through the store waits until then."""
    ready = threading.Event()

    def hold() -> None:
        other = sqlite3.connect(store.root / "metadata.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        ready.set()
        time.sleep(seconds)
        other.execute("COMMIT")
        other.close()

    thread = threading.Thread(target=hold)
    thread.start()
    ready.wait()
    return thread


def test_what_the_lease_holds_already_is_not_written_again(store: Store) -> None:
    held = sha256_digest(b"held")
    with store.lease() as lease:
        lease.add_all(snapshots=[held], blobs=[held])
        holder = _holding_the_write_lock(store, 1.5)
        started = time.monotonic()
        lease.add_snapshot(held)  # no transaction: returns without waiting for the lock
        lease.add_blob(held)
        lease.add_all(snapshots=[held])
        quick = time.monotonic() - started
        lease.add_snapshot(sha256_digest(b"new"))  # a new one is written: it waits
        waited = time.monotonic() - started
        holder.join()
    assert quick < 0.5 < waited


def test_a_held_resource_is_checked_again_once_the_lease_expired_or_ended(store: Store) -> None:
    held = sha256_digest(b"held")
    with store.lease() as lease:
        lease.add_snapshot(held)
        lease.renew(0)
        with pytest.raises(ConflictError, match="expired"):
            lease.add_snapshot(held)
    with store.lease() as other:
        other.add_snapshot(held)
    with pytest.raises(ConflictError):
        other.add_snapshot(held)
