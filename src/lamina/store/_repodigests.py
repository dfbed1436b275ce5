"""Repo digests: the names a registry knows an image by, `repository@sha256:…`.

    store.repo_digests.add("127.0.0.1:5000/app@sha256:…", image)   # after a push
    store.repo_digests.find("127.0.0.1:5000/app@sha256:…") → image | None
    store.repo_digests.remove("127.0.0.1:5000/app@sha256:…") → image   # rmi NAME@DIGEST

As Docker's reference store keeps them: a pull (by tag or by digest) records the
repository with the digest its reference resolved to (an index's digest when the tag
names one), in the transaction that records the image (`add_image(repo_digests=...)`);
a push records the digest the registry gave the manifest. One repository and digest
name one image: a later pull or push of the same name moves it (moby's `AddDigest` with
force). A repo digest is a name like a tag: an image that has one is not dangling
(prune keeps it), and the records go with their image in the statement that deletes it
(`ON DELETE CASCADE`). Names are stored normalised (`docker.io/library/busybox@…`);
`ImageRecord.repo_digests` lists an image's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from lamina.errors import InvalidInputError, NotFoundError
from lamina.oci import check_digest
from lamina.store._db import Database

_UPSERT = (
    "INSERT INTO repo_digests VALUES (?, ?, ?) "
    "ON CONFLICT(repository, digest) DO UPDATE SET image = excluded.image"
)
_MAX_NAME = 1024


def split_repo_digest(name: str) -> tuple[str, str]:
    """`repository@sha256:<hex>` → (repository, digest), both checked for shape."""
    repository, at, digest = name.rpartition("@")
    if (
        not at
        or not repository
        or len(repository) > _MAX_NAME
        or any(c.isspace() or not c.isprintable() or c == "@" for c in repository)
    ):
        raise InvalidInputError(f"repo digest {name[:100]!r} is not REPOSITORY@DIGEST")
    return repository, check_digest(digest, f"repo digest {name[:100]!r}")


def record_repo_digests(db: sqlite3.Connection, image: str, names: Iterable[str]) -> None:
    """Point each `repository@digest` at `image`, inside the caller's write transaction."""
    db.executemany(_UPSERT, [(*split_repo_digest(name), image) for name in names])


def image_named(db: sqlite3.Connection, name: str) -> str | None:
    """The manifest digest of the image `name` (`repository@digest`) names, or None."""
    try:
        repository, digest = split_repo_digest(name)
    except InvalidInputError:
        return None
    row = db.execute(
        "SELECT image FROM repo_digests WHERE repository = ? AND digest = ?", (repository, digest)
    ).fetchone()
    return None if row is None else str(row[0])


class RepoDigests:
    """An image's repo digests: add (after a push), find (resolve), remove (rmi)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, name: str, image: str) -> None:
        """Point `name` (`repository@digest`) at the image with manifest digest `image`."""
        split_repo_digest(name)
        with self._db.write() as db:
            if db.execute("SELECT 1 FROM images WHERE digest = ?", (image,)).fetchone() is None:
                raise NotFoundError(f"cannot record {name}: image {image} is not in the store")
            record_repo_digests(db, image, [name])

    def find(self, name: str) -> str | None:
        """The manifest digest of the image `name` (`repository@digest`) names, or None."""
        return image_named(self._db.conn(), name)

    def remove(self, name: str) -> str:
        """Forget `name`; return the manifest digest of the image it named."""
        repository, digest = split_repo_digest(name)
        with self._db.write(gc_shared=False) as db:
            row = db.execute(
                "DELETE FROM repo_digests WHERE repository = ? AND digest = ? RETURNING image",
                (repository, digest),
            ).fetchone()
        if row is None:
            raise NotFoundError(f"repo digest {name} does not exist")
        return str(row[0])
