"""Schema versions and migrations; the package's public surface."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest
from store_helpers import add_image, put_layer

import lamina.store
from lamina.errors import LaminaError
from lamina.store import SCHEMA_VERSION, open_store
from lamina.store._schema import MIGRATIONS, migrate


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def test_new_root_is_private_and_current(tmp_path: Path) -> None:
    root = tmp_path / "a" / "root"
    with open_store(root):
        pass
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    for sub in ("blobs/sha256", "ingest", "snapshots"):
        assert (root / sub).is_dir()
    assert user_version(root / "metadata.db") == SCHEMA_VERSION == len(MIGRATIONS)


def test_migrates_from_version_0_and_1(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    db = sqlite3.connect(root / "metadata.db", isolation_level=None)
    migrate(db, "test", upto=0)
    assert user_version(root / "metadata.db") == 0
    migrate(db, "test", upto=1)
    assert user_version(root / "metadata.db") == 1
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        db.execute("SELECT * FROM cache")
    db.close()
    with open_store(root) as store:
        digest = add_image(store, [put_layer(store, b"l")], tags=["t"])
        store.put_cache("k", 1)
        assert store.resolve("t").digest == digest
    assert user_version(root / "metadata.db") == SCHEMA_VERSION


def test_version_1_data_survives_migration(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    db = sqlite3.connect(root / "metadata.db", isolation_level=None)
    migrate(db, "test", upto=1)
    digest = "sha256:" + "1" * 64
    db.execute("INSERT INTO images VALUES (?, ?, 'm', 1, 1, 0)", (digest, "sha256:" + "2" * 64))
    db.execute("INSERT INTO tags VALUES ('t', ?)", (digest,))
    db.close()
    with open_store(root) as store:
        assert store.resolve("t").digest == digest


def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with open_store(root):
        pass
    with sqlite3.connect(root / "metadata.db") as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(LaminaError, match="newer than this lamina understands"):
        open_store(root)


def test_all_is_the_public_surface() -> None:
    public = {n for n in dir(lamina.store) if not n.startswith("_")}
    assert set(lamina.store.__all__) == public - {"annotations"}
    assert lamina.store.__doc__ and "Lifecycles" in lamina.store.__doc__


def test_v5_drops_stat_rows_that_lack_git_index_fields(tmp_path: Path) -> None:
    """Issue 11: a row recorded without ctime could vouch for a file edited in place."""
    root = tmp_path / "root"
    root.mkdir()
    db = sqlite3.connect(root / "metadata.db", isolation_level=None)
    migrate(db, "test", upto=4)
    db.execute("INSERT INTO stat_cache VALUES ('/ctx/f', 1, 2, 3, 4, 'sha256:old')")
    migrate(db, "test", upto=5)
    assert db.execute("SELECT count(*) FROM stat_cache").fetchone()[0] == 0
    columns = {row[1] for row in db.execute("PRAGMA table_info(stat_cache)")}
    assert {"ctime_ns", "dev", "uid", "gid"} <= columns
    db.close()
