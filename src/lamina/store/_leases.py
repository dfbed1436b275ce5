"""Leases: what work in progress holds so that a concurrent prune leaves it alone."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterable, Iterator

from lamina.errors import ConflictError
from lamina.oci import check_digest
from lamina.store._db import Database

DEFAULT_LEASE_SECONDS = 3600.0


class Lease:
    """A named set of blobs and snapshots that gc keeps until the lease ends or expires.

    Add a resource BEFORE writing it: the add commits at once (waiting for a running
    prune to finish), so any prune that starts later sees the intent in its mark phase.
    A lease expires so that a killed process does not pin content forever; `renew`
    pushes the expiry back for long work.
    """

    def __init__(self, db: Database, id: str, expires: float) -> None:
        self._db = db
        self.id = id
        self.expires = expires
        # What this lease already holds (committed): adding it again is not written
        # again while the lease lives (a pull's layers are leased in one go up front,
        # and each step below adds them again: a transaction and an fsync each).
        self._held: set[tuple[str, str]] = set()

    def add_blob(self, digest: str) -> None:
        """Protect a blob (committed or about to be)."""
        self._add("blob", check_digest(digest, "leased blob"))

    def add_snapshot(self, diff_id: str) -> None:
        """Protect a snapshot directory (existing or about to be unpacked)."""
        self._add("snapshot", check_digest(diff_id, "leased snapshot"))

    def add_all(self, *, blobs: Iterable[str] = (), snapshots: Iterable[str] = ()) -> None:
        """Protect many at once, in one transaction (one wait for the disk, not one per
        resource): what a pull is about to write for all its layers."""
        refs = [("blob", check_digest(d, "leased blob")) for d in blobs]
        refs += [("snapshot", check_digest(d, "leased snapshot")) for d in snapshots]
        if refs:
            self._add_refs(refs)

    def _add(self, kind: str, ref: str) -> None:
        self._add_refs([(kind, ref)])

    def _add_refs(self, refs: list[tuple[str, str]]) -> None:
        if time.time() < self.expires - 60:
            refs = [ref for ref in refs if ref not in self._held]
            if not refs:
                return
        with self._db.write() as db:
            live = db.execute(
                "SELECT 1 FROM leases WHERE id = ? AND expires > ?", (self.id, time.time())
            ).fetchone()
            if live is None:
                raise ConflictError(
                    f"lease {self.id} has expired or ended; {refs[0][1]} is not protected",
                    hint="renew long-running leases before they expire",
                )
            db.executemany(
                "INSERT OR IGNORE INTO lease_resources VALUES (?, ?, ?)",
                [(self.id, kind, ref) for kind, ref in refs],
            )
        self._held.update(refs)

    def renew(self, seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        """Expire `seconds` from now instead."""
        expires = time.time() + seconds
        with self._db.write() as db:
            if not db.execute(
                "UPDATE leases SET expires = ? WHERE id = ? AND expires > ?",
                (expires, self.id, time.time()),
            ).rowcount:
                raise ConflictError(f"lease {self.id} has expired or ended")
        self.expires = expires

    def release(self) -> None:
        """End the lease; what it held is now only as safe as its references."""
        self._held.clear()
        with self._db.write(gc_shared=False) as db:
            db.execute("DELETE FROM leases WHERE id = ?", (self.id,))


class LeasesMixin:
    """`lease()`: a context manager that creates and ends a Lease."""

    _db: Database

    @contextlib.contextmanager
    def lease(self, expires_in: float = DEFAULT_LEASE_SECONDS) -> Iterator[Lease]:
        """A new lease, released when the block exits (normally or not)."""
        now = time.time()
        lease = Lease(self._db, secrets.token_hex(16), now + expires_in)
        with self._db.write(gc_shared=False) as db:
            db.execute("INSERT INTO leases VALUES (?, ?, ?)", (lease.id, now, lease.expires))
        try:
            yield lease
        finally:
            lease.release()
