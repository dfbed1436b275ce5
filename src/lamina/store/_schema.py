"""The metadata schema as a list of migrations; `PRAGMA user_version` counts those applied."""

from __future__ import annotations

from lamina.errors import LaminaError

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable


def _v1_images(db: sqlite3.Connection) -> None:
    for statement in (
        """CREATE TABLE images (
            digest TEXT PRIMARY KEY,
            config_digest TEXT NOT NULL,
            media_type TEXT NOT NULL,
            manifest_size INTEGER NOT NULL,
            config_size INTEGER NOT NULL,
            created REAL NOT NULL)""",
        "CREATE INDEX images_by_config ON images(config_digest)",
        """CREATE TABLE tags (
            name TEXT PRIMARY KEY,
            digest TEXT NOT NULL REFERENCES images(digest))""",
        "CREATE INDEX tags_by_digest ON tags(digest)",
        """CREATE TABLE layers (
            digest TEXT PRIMARY KEY,
            diff_id TEXT NOT NULL,
            media_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            uncompressed_size INTEGER)""",
        "CREATE INDEX layers_by_diff_id ON layers(diff_id)",
        """CREATE TABLE image_layers (
            image TEXT NOT NULL REFERENCES images(digest) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            layer TEXT NOT NULL REFERENCES layers(digest),
            PRIMARY KEY (image, position))""",
        "CREATE INDEX image_layers_by_layer ON image_layers(layer)",
        # Every blob an image holds (manifest, config, layers): what gc marks from an image.
        """CREATE TABLE image_blobs (
            image TEXT NOT NULL REFERENCES images(digest) ON DELETE CASCADE,
            blob TEXT NOT NULL,
            PRIMARY KEY (image, blob))""",
        "CREATE INDEX image_blobs_by_blob ON image_blobs(blob)",
    ):
        db.execute(statement)


def _v2_records(db: sqlite3.Connection) -> None:
    for statement in (
        """CREATE TABLE snapshots (
            diff_id TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            size INTEGER NOT NULL,
            created REAL NOT NULL)""",
        """CREATE TABLE cache (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            created REAL NOT NULL,
            last_used REAL NOT NULL)""",
        """CREATE TABLE cache_refs (
            key TEXT NOT NULL REFERENCES cache(key) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('blob', 'snapshot')),
            ref TEXT NOT NULL,
            PRIMARY KEY (key, kind, ref))""",
        """CREATE TABLE stat_cache (
            path TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            inode INTEGER NOT NULL,
            mode INTEGER NOT NULL,
            digest TEXT NOT NULL)""",
        """CREATE TABLE containers (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            image TEXT NOT NULL REFERENCES images(digest),
            state TEXT NOT NULL,
            created REAL NOT NULL)""",
        "CREATE INDEX containers_by_image ON containers(image)",
        """CREATE TABLE leases (
            id TEXT PRIMARY KEY,
            created REAL NOT NULL,
            expires REAL NOT NULL)""",
        """CREATE TABLE lease_resources (
            lease TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('blob', 'snapshot')),
            ref TEXT NOT NULL,
            PRIMARY KEY (lease, kind, ref))""",
    ):
        db.execute(statement)


def _v3_file_index(db: sqlite3.Connection) -> None:
    # The per-layer file index (see _fileindex.py), keyed by diff_id like snapshots: a
    # layer's content is its identity, whatever blob or image it came in. Rows of a
    # layer are written in one transaction together with its layer_index row, so a
    # layer is either fully indexed or not at all.
    for statement in (
        """CREATE TABLE layer_index (
            id INTEGER PRIMARY KEY,
            diff_id TEXT NOT NULL UNIQUE,
            entries INTEGER NOT NULL,
            file_bytes INTEGER NOT NULL,
            created REAL NOT NULL)""",
        # A small integer names the layer in each row: 50,000 rows stay ~40% smaller.
        """CREATE TABLE layer_files (
            layer INTEGER NOT NULL REFERENCES layer_index(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            path TEXT NOT NULL,
            kind TEXT NOT NULL,
            size INTEGER NOT NULL,
            mode INTEGER NOT NULL,
            uid INTEGER NOT NULL,
            gid INTEGER NOT NULL,
            digest TEXT,
            link TEXT NOT NULL,
            PRIMARY KEY (layer, seq)) WITHOUT ROWID""",
        # Where lamina built a layer: the Dockerfile, line, stage and instruction text.
        """CREATE TABLE layer_origins (
            diff_id TEXT PRIMARY KEY,
            dockerfile TEXT NOT NULL,
            line INTEGER NOT NULL,
            stage TEXT NOT NULL,
            instruction TEXT NOT NULL)""",
        # How many of a built image's layers came from its first FROM image.
        """CREATE TABLE image_bases (
            image TEXT PRIMARY KEY,
            base_layers INTEGER NOT NULL,
            base TEXT NOT NULL)""",
    ):
        db.execute(statement)


def _v4_registry(db: sqlite3.Connection) -> None:
    for statement in (
        # Where blobs are known to be: a push skips its HEAD, or mounts from there.
        """CREATE TABLE registry_blobs (
            registry TEXT NOT NULL,
            repository TEXT NOT NULL,
            digest TEXT NOT NULL,
            seen REAL NOT NULL,
            PRIMARY KEY (registry, repository, digest))""",
        "CREATE INDEX registry_blobs_by_digest ON registry_blobs(registry, digest)",
        # A push's chunked upload, so the next push continues it instead of starting over.
        """CREATE TABLE registry_uploads (
            registry TEXT NOT NULL,
            repository TEXT NOT NULL,
            digest TEXT NOT NULL,
            location TEXT NOT NULL,
            offset INTEGER NOT NULL,
            updated REAL NOT NULL,
            PRIMARY KEY (registry, repository, digest))""",
    ):
        db.execute(statement)


def _v5_stat_identity(db: sqlite3.Connection) -> None:
    """The stat cache keys on git's index fields: ctime, device, owner too. Rows from
    before could vouch for a file edited in place with its mtime restored: dropped."""
    db.execute("DELETE FROM stat_cache")
    have = {row[1] for row in db.execute("PRAGMA table_info(stat_cache)")}
    for column in ("ctime_ns", "dev", "uid", "gid"):
        if column not in have:  # a store stepped back to an older version keeps them
            db.execute(f"ALTER TABLE stat_cache ADD COLUMN {column} INTEGER NOT NULL DEFAULT -1")


def _v6_lean_layers(db: sqlite3.Connection) -> None:
    # The snapshot is a layer's one copy; a compressed blob is made when bytes leave.
    # diff_id + compression → the blob that compression gave (deterministic), so the
    # same layer always goes out as the same blob; the blob itself is only a cache.
    db.execute(
        """CREATE TABLE layer_blobs (
            diff_id TEXT NOT NULL,
            compression TEXT NOT NULL,
            digest TEXT NOT NULL,
            size INTEGER NOT NULL,
            media_type TEXT NOT NULL,
            PRIMARY KEY (diff_id, compression))"""
    )
    db.execute("CREATE INDEX layer_blobs_by_digest ON layer_blobs(digest)")
    # Layers still to be unpacked into a snapshot with its tar-split record: the store
    # migration (`lamina.transport.migrate_layers`) works through these, resumably.
    db.execute("CREATE TABLE pending_unpack (diff_id TEXT PRIMARY KEY)")
    # How many entries each snapshot directory holds: save compares a walk's count with it
    # to catch a file added behind lamina's back without parsing the layer's headers.
    db.execute("CREATE TABLE snapshot_entries (diff_id TEXT PRIMARY KEY, entries INTEGER NOT NULL)")
    db.execute("INSERT OR IGNORE INTO pending_unpack SELECT DISTINCT diff_id FROM layers")


def _v7_remote_layers(db: sqlite3.Connection) -> None:
    # (IF NOT EXISTS: a store stepped back to an older version keeps them.)
    # Where a layer's compressed blob lives in a registry: a pulled layer's original blob
    # (a push to that registry names and mounts it, keeping its digest), and the layer of
    # a lazy pull or cache import, fetched only when something needs its bytes.
    db.execute(
        """CREATE TABLE IF NOT EXISTS remote_layers (
            diff_id TEXT NOT NULL,
            registry TEXT NOT NULL,
            repository TEXT NOT NULL,
            digest TEXT NOT NULL,
            size INTEGER NOT NULL,
            media_type TEXT NOT NULL,
            seen REAL NOT NULL,
            PRIMARY KEY (diff_id, registry, repository, digest))"""
    )
    db.execute("CREATE INDEX IF NOT EXISTS remote_layers_by_digest ON remote_layers(digest)")
    # Bearer tokens per registry, account and scope, reused by later commands until they
    # expire (the root is 0700; a token is never printed).
    db.execute(
        """CREATE TABLE IF NOT EXISTS registry_tokens (
            registry TEXT NOT NULL,
            account TEXT NOT NULL,
            scopes TEXT NOT NULL,
            token TEXT NOT NULL,
            expires REAL NOT NULL,
            PRIMARY KEY (registry, account, scopes))"""
    )


def _v8_repo_digests(db: sqlite3.Connection) -> None:
    # Docker's "repo digests": a repository and the manifest (or index) digest a registry
    # knows the image by there, recorded when it is pulled or pushed. Such a name keeps an
    # image from being dangling; it goes with the image (CASCADE, in the same statement).
    db.execute(
        """CREATE TABLE IF NOT EXISTS repo_digests (
            repository TEXT NOT NULL,
            digest TEXT NOT NULL,
            image TEXT NOT NULL REFERENCES images(digest) ON DELETE CASCADE,
            PRIMARY KEY (repository, digest))"""
    )
    db.execute("CREATE INDEX IF NOT EXISTS repo_digests_by_image ON repo_digests(image)")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _v1_images,
    _v2_records,
    _v3_file_index,
    _v4_registry,
    _v5_stat_identity,
    _v6_lean_layers,
    _v7_remote_layers,
    _v8_repo_digests,
]
"""Migration i brings a database from version i to i + 1. Append; never edit a released one."""

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite3.Connection, path: str, upto: int = SCHEMA_VERSION) -> None:
    """Bring the database to version `upto` in one transaction (safe if two processes open it)."""
    if db.execute("PRAGMA user_version").fetchone()[0] == upto:
        return  # current (versions only grow): no write lock for the check every open makes
    db.execute("BEGIN IMMEDIATE")
    try:
        version: int = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LaminaError(
                f"{path}: metadata schema version {version} is newer than this lamina "
                f"understands ({SCHEMA_VERSION})",
                hint="use the lamina version that created this root, or a newer one",
            )
        for step in MIGRATIONS[version:upto]:
            step(db)
        if version < upto:
            db.execute(f"PRAGMA user_version = {int(upto)}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
