"""SQLite connections (one per thread) and the gc lock that orders writers against prune."""

from __future__ import annotations

import fcntl
import os
from _thread import _local as thread_local
from _thread import allocate_lock

from lamina import _lightctx as contextlib
from lamina._lightsqlite import sqlite3_c as _sqlite3  # sqlite3's C half: see `Database.conn`
from lamina.store._schema import migrate

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterator

    from lamina._paths import StrPath

_BUSY_TIMEOUT_MS = 60_000
# Frames the WAL may hold before a commit checkpoints them into the database. Every lamina
# process opens the database as its only connection, and SQLite's first connection rebuilds
# the WAL's index by reading and checksumming every frame since the last checkpoint: at
# SQLite's default (1000 frames, ~4 MB) about 1 ms of every command, `lamina run`'s
# included, since a command ends without the checkpoint a close would make. A checkpoint
# is a copy of those pages and two fsyncs, made by one commit in a few dozen.
WAL_CHECKPOINT_FRAMES = 64


class Database:
    """The metadata database: a connection per thread, explicit transactions.

    `write()` is the only way to change it. It holds the gc lock shared, so that
    no prune runs between a writer's check that content exists and the commit
    of the reference to it; `prune` takes the same lock exclusively.
    """

    def __init__(self, root: StrPath) -> None:
        self.path = os.path.join(root, "metadata.db")
        self.gc_lock_path = os.path.join(root, "gc.lock")
        self._local = thread_local()
        self._all: list[sqlite3.Connection] = []
        self._guard = allocate_lock()
        self._pid = os.getpid()
        migrate(self.conn(), self.path)

    def conn(self) -> sqlite3.Connection:
        """This thread's connection."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None or self._pid != os.getpid():
            # `_sqlite3`, not the `sqlite3` package: its `dbapi2` loads `datetime` for date
            # adapters lamina never uses (milliseconds of every `lamina run`). The
            # connection, its errors and its classes are the same objects either way.
            db = _sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=60
            )
            db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_FRAMES}")
            # FULL: gc unlinks a file after committing that nothing points at it; a lost
            # commit after power loss would bring back a reference to a deleted file.
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            self._local.db = db
            self._local.durable = True  # the connection's synchronous level is FULL
            with self._guard:
                if self._pid != os.getpid():
                    self._all, self._pid = [], os.getpid()
                self._all.append(db)
        return db

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several SELECTs."""
        db = self.conn()
        db.execute("BEGIN")
        try:
            yield db
        finally:
            db.execute("COMMIT")

    @contextlib.contextmanager
    def write(self, gc_shared: bool = True, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; rolled back on any exception. `durable` False: committed
        without waiting for the disk (no fsync of the WAL: visible to every process at once
        and kept if this one dies, but a power cut may lose it until a later commit or
        checkpoint syncs it). Only for rows whose loss the next command repairs."""
        lock = self.gc_lock(exclusive=False) if gc_shared else contextlib.nullcontext()
        with lock:
            db = self.conn()
            # The connection keeps the level it was last set to (every write goes through
            # here and sets the one it needs): `lamina run --rm`'s two writes, both not
            # durable, set it once instead of four times.
            if self._local.durable != durable:
                db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
                self._local.durable = durable
            # IMMEDIATE takes the write lock up front: a deferred transaction that
            # upgrades later gets SQLITE_BUSY without waiting for busy_timeout.
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextlib.contextmanager
    def gc_lock(self, exclusive: bool) -> Iterator[None]:
        """flock on gc.lock; a fresh descriptor each time so threads exclude each other too."""
        fd = os.open(self.gc_lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def close(self) -> None:
        """Close every connection this object opened in this process."""
        with self._guard:
            conns, self._all = self._all, []
        for db in conns:
            db.close()
        self._local = thread_local()
