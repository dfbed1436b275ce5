"""The WAL stays short: every lamina process replays it when it opens the database."""

from __future__ import annotations

from pathlib import Path

from lamina.store._db import WAL_CHECKPOINT_FRAMES, Database


def wal_frames(db: Database) -> int:
    """Frames in the WAL now (what the next process to open the database must replay)."""
    _, frames, _ = db.conn().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(frames)


def test_every_connection_checkpoints_early(tmp_path: Path) -> None:
    db = Database(tmp_path)
    try:
        (limit,) = db.conn().execute("PRAGMA wal_autocheckpoint").fetchone()
        assert limit == WAL_CHECKPOINT_FRAMES
    finally:
        db.close()


def test_many_small_commits_leave_a_short_wal(tmp_path: Path) -> None:
    # Each commit writes a few pages; 400 of them would leave 1000+ frames at SQLite's
    # default, all read back by the next process that opens the database.
    db = Database(tmp_path)
    try:
        with db.write() as c:
            c.execute("CREATE TABLE scratch (k INTEGER PRIMARY KEY, v TEXT)")
        for i in range(400):
            with db.write(durable=False) as c:
                c.execute("INSERT INTO scratch VALUES (?, ?)", (i, "x" * 3000))
                c.execute("DELETE FROM scratch WHERE k = ?", (i - 1,))
        assert wal_frames(db) <= 2 * WAL_CHECKPOINT_FRAMES
    finally:
        db.close()
