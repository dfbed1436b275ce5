"""A lease taking many resources in one transaction (what a pull's layers will write)."""

from __future__ import annotations

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
