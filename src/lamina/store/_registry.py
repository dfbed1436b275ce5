"""What lamina knows about registries: which blobs a repository holds, open uploads.

    store.registry.remember("127.0.0.1:5000", "app", [digest, ...])   # after push/pull
    store.registry.known("127.0.0.1:5000", "app", digest)             # skip the HEAD
    store.registry.repositories_with("127.0.0.1:5000", digest)        # mount from there
    store.registry.save_upload(reg, repo, digest, location, offset)   # resume a push
    store.registry.upload(reg, repo, digest) → (location, offset) | None
    store.registry.forget_upload(reg, repo, digest)
    store.registry.remember_layer(RemoteLayer(diff_id, reg, repo, digest, size, type))
    store.registry.remote_layers(diff_id) → [RemoteLayer, ...]   # newest first
    store.registry.remote_blob(digest) → RemoteLayer | None

A remote layer says where a layer's compressed blob lives: the original blob of a pulled
layer (a push to that registry keeps its digest, as Docker's distribution metadata does)
and the layer of a lazy pull or build-cache import, which is fetched into its snapshot
only when something needs its bytes (`Store.fetch_remote`).

    store.registry.save_token(reg, account, scopes, token, expires)   # bearer tokens, kept
    store.registry.token(reg, account, scopes) → (token, expires) | None  # until expiry

A remembered location is a hint, not a truth: a registry may delete a blob, so a push
that skips one and is refused for it (BLOB_UNKNOWN on the manifest) forgets the
repository's hints and tries again (`forget_repository`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from lamina.oci import check_digest
from lamina.store._db import Database

_MAX_MOUNT_SOURCES = 8


@dataclass(frozen=True)
class RemoteLayer:
    """Layer `diff_id` as blob `digest` (`size` bytes, `media_type`) of a repository."""

    diff_id: str
    registry: str
    repository: str
    digest: str
    size: int
    media_type: str

    def where(self) -> str:
        return f"{self.registry}/{self.repository}"


_REMOTE_COLUMNS = "diff_id, registry, repository, digest, size, media_type"


class RegistryRecords:
    """Blob locations per registry and repository, and push upload sessions."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def remember(self, registry: str, repository: str, digests: Iterable[str]) -> None:
        now = time.time()
        rows = [(registry, repository, check_digest(d, "blob"), now) for d in digests]
        with self._db.write(gc_shared=False) as db:
            db.executemany(
                "INSERT INTO registry_blobs VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE"
                " SET seen = excluded.seen",
                rows,
            )

    def known(self, registry: str, repository: str, digest: str) -> bool:
        row = (
            self._db.conn()
            .execute(
                "SELECT 1 FROM registry_blobs WHERE registry = ? AND repository = ? AND digest = ?",
                (registry, repository, digest),
            )
            .fetchone()
        )
        return row is not None

    def repositories_with(self, registry: str, digest: str) -> list[str]:
        """Repositories of `registry` known to hold `digest`, most recently seen first."""
        rows = (
            self._db.conn()
            .execute(
                "SELECT repository FROM registry_blobs WHERE registry = ? AND digest = ?"
                " ORDER BY seen DESC LIMIT ?",
                (registry, digest, _MAX_MOUNT_SOURCES),
            )
            .fetchall()
        )
        return [r[0] for r in rows]

    def forget_repository(self, registry: str, repository: str) -> None:
        with self._db.write(gc_shared=False) as db:
            db.execute(
                "DELETE FROM registry_blobs WHERE registry = ? AND repository = ?",
                (registry, repository),
            )

    def save_upload(
        self, registry: str, repository: str, digest: str, location: str, offset: int
    ) -> None:
        with self._db.write(gc_shared=False) as db:
            db.execute(
                "INSERT INTO registry_uploads VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE"
                " SET location = excluded.location, offset = excluded.offset,"
                " updated = excluded.updated",
                (registry, repository, digest, location, offset, time.time()),
            )

    def upload(self, registry: str, repository: str, digest: str) -> tuple[str, int] | None:
        row = (
            self._db.conn()
            .execute(
                "SELECT location, offset FROM registry_uploads"
                " WHERE registry = ? AND repository = ? AND digest = ?",
                (registry, repository, digest),
            )
            .fetchone()
        )
        return (str(row[0]), int(row[1])) if row else None

    def forget_upload(self, registry: str, repository: str, digest: str) -> None:
        with self._db.write(gc_shared=False) as db:
            db.execute(
                "DELETE FROM registry_uploads WHERE registry = ? AND repository = ? AND digest = ?",
                (registry, repository, digest),
            )

    # -- layers whose blob a registry holds ------------------------------------------

    def remember_layers(self, layers: Iterable[RemoteLayer]) -> None:
        now = time.time()
        rows = [
            (check_digest(r.diff_id, "diff_id"), r.registry, r.repository,
             check_digest(r.digest, "blob"), r.size, r.media_type, now)
            for r in layers
        ]  # fmt: skip
        with self._db.write(gc_shared=False) as db:
            db.executemany(
                "INSERT INTO remote_layers VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE"
                " SET seen = excluded.seen, size = excluded.size,"
                " media_type = excluded.media_type",
                rows,
            )

    def remote_layers(self, diff_id: str, registry: str | None = None) -> list[RemoteLayer]:
        """Where layer `diff_id` is known to be (on `registry` only, if given), newest first."""
        query = f"SELECT {_REMOTE_COLUMNS} FROM remote_layers WHERE diff_id = ?"
        args: tuple[str, ...] = (diff_id,)
        if registry is not None:
            query += " AND registry = ?"
            args += (registry,)
        rows = self._db.conn().execute(query + " ORDER BY seen DESC LIMIT ?",
                                       (*args, _MAX_MOUNT_SOURCES)).fetchall()  # fmt: skip
        return [RemoteLayer(*row) for row in rows]

    def remote_blob(self, digest: str) -> RemoteLayer | None:
        """A repository known to hold layer blob `digest`, the most recently seen."""
        row = (
            self._db.conn()
            .execute(
                f"SELECT {_REMOTE_COLUMNS} FROM remote_layers WHERE digest = ?"
                " ORDER BY seen DESC LIMIT 1",
                (digest,),
            )
            .fetchone()
        )
        return None if row is None else RemoteLayer(*row)

    # -- bearer tokens, per registry, account and scope -----------------------------

    def token(self, registry: str, account: str, scopes: str) -> tuple[str, float] | None:
        """A saved token that has not expired, and when it expires (epoch seconds)."""
        row = (
            self._db.conn()
            .execute(
                "SELECT token, expires FROM registry_tokens WHERE registry = ? AND account = ?"
                " AND scopes = ? AND expires > ?",
                (registry, account, scopes, time.time()),
            )
            .fetchone()
        )
        return None if row is None else (str(row[0]), float(row[1]))

    def save_token(
        self, registry: str, account: str, scopes: str, token: str, expires: float
    ) -> None:
        with self._db.write(gc_shared=False) as db:
            db.execute("DELETE FROM registry_tokens WHERE expires <= ?", (time.time(),))
            db.execute(
                "INSERT OR REPLACE INTO registry_tokens VALUES (?, ?, ?, ?, ?)",
                (registry, account, scopes, token, expires),
            )

    def forget_tokens(self, registry: str) -> None:
        """Every bearer token saved for `registry`, whatever its account (logout)."""
        with self._db.write(gc_shared=False) as db:
            db.execute("DELETE FROM registry_tokens WHERE registry = ?", (registry,))

    def forget_token(self, registry: str, account: str, scopes: str) -> None:
        with self._db.write(gc_shared=False) as db:
            db.execute(
                "DELETE FROM registry_tokens WHERE registry = ? AND account = ? AND scopes = ?",
                (registry, account, scopes),
            )
