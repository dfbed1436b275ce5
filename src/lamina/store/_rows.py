"""Container rows, image lookups and small verified blobs: the store as `lamina run` needs it.

`Store` (the whole facade) loads the content store's writers, the file index, gc and the
record dataclasses: tens of milliseconds before a container can start, three times what
runc takes to run one. This module is the light side of the same metadata: the one place
that reads and writes the `containers` table (`Store`'s container methods call these
functions), and `RowStore`, which opens the same database (`Database`, same pragmas,
same schema check) and answers what a container's start and end need: an image by tag or
digest with its layers' diff_ids, its config read and verified, the snapshot directories.
It imports no dataclass and no typing at run time.
"""

from __future__ import annotations

import os
import time

from lamina._frozen import Frozen
from lamina._lightjson import dumps, loads
from lamina._lightsqlite import sqlite3_c as _sqlite3  # (see `lamina.store._db`)
from lamina.errors import (
    AlreadyExistsError,
    DigestMismatchError,
    InvalidInputError,
    NotFoundError,
)
from lamina.store._db import Database
from lamina.store._layout import blob_path, snapshot_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from lamina._paths import StrPath


class ContainerRecord(Frozen):
    """A container: its image and whatever state the runtime keeps (JSON). Read-only."""

    _fields = __slots__ = ("id", "name", "image", "state", "created")
    id: str
    name: str
    image: str
    state: Any
    created: float

    def __init__(self, id: str, name: str, image: str, state: Any, created: float) -> None:
        self._set(id=id, name=name, image=image, state=state, created=created)

    __hash__ = None  # type: ignore[assignment]  # the state is a dict


class LayerRow:
    """A layer of an image as a container needs it: its diff_id (the snapshot's name)."""

    __slots__ = ("diff_id",)

    def __init__(self, diff_id: str) -> None:
        self.diff_id = diff_id


class ImageRow:
    """An image as a container needs it: manifest digest, config digest, layers bottom first."""

    __slots__ = ("config_digest", "digest", "layers")

    def __init__(self, digest: str, config_digest: str, layers: tuple[LayerRow, ...]) -> None:
        self.digest = digest
        self.config_digest = config_digest
        self.layers = layers

    @property
    def id(self) -> str:
        return self.config_digest


# -- the containers table (the one place that spells its SQL) ---------------------------


def add_container(
    db: Database, id: str, name: str, image: str, state: Any, durable: bool = True
) -> ContainerRecord:
    """Record a container, which keeps its image from prune; AlreadyExistsError if taken.
    (`durable`: see `Database.write`.)"""
    if not id or not name:
        raise InvalidInputError("a container needs an id and a name")
    now = time.time()
    with db.write(durable=durable) as conn:
        if conn.execute("SELECT 1 FROM images WHERE digest = ?", (image,)).fetchone() is None:
            raise NotFoundError(f"container {name}: image {image} is not in the store")
        try:
            conn.execute(
                "INSERT INTO containers VALUES (?, ?, ?, ?, ?)",
                (id, name, image, dumps(state, sort_keys=True), now),
            )
        except _sqlite3.IntegrityError:
            raise AlreadyExistsError(f"a container with id {id} or name {name} exists") from None
    return ContainerRecord(id, name, image, state, now)


def get_container(db: Database, id_or_name: str) -> ContainerRecord:
    """By id, name or unique id prefix, in that order (moby's: a full id wins over a name
    that is the same text); NotFoundError otherwise."""
    rows = (
        db.conn()
        .execute(
            "SELECT id, name, image, state, created FROM containers WHERE id = ? "
            "UNION SELECT id, name, image, state, created FROM containers WHERE name = ? "
            "AND NOT EXISTS (SELECT 1 FROM containers WHERE id = ?) "
            "UNION SELECT id, name, image, state, created FROM containers WHERE id GLOB ? "
            "AND NOT EXISTS (SELECT 1 FROM containers WHERE id = ? OR name = ?)",
            (id_or_name, id_or_name, id_or_name, _glob_prefix(id_or_name), id_or_name,
             id_or_name),
        )
        .fetchall()
    )
    if len(rows) != 1:
        what = "is ambiguous" if rows else "does not exist"
        raise NotFoundError(f"container {id_or_name!r} {what}")
    id, name, image, state, created = rows[0]
    return ContainerRecord(id, name, image, loads(state), created)


def list_containers(db: Database) -> list[ContainerRecord]:
    """Every container, oldest first."""
    rows = db.conn().execute(
        "SELECT id, name, image, state, created FROM containers ORDER BY created, id"
    )
    return [ContainerRecord(i, n, im, loads(s), c) for i, n, im, s, c in rows]


def set_container_state(db: Database, id: str, state: Any) -> None:
    """Replace a container's JSON state."""
    with db.write(gc_shared=False) as conn:
        changed = conn.execute(
            "UPDATE containers SET state = ? WHERE id = ?",
            (dumps(state, sort_keys=True), id),
        ).rowcount
    if not changed:
        raise NotFoundError(f"container {id} does not exist")


def rename_container(db: Database, id: str, name: str) -> None:
    """Give a container another (free) name; AlreadyExistsError if another has it."""
    with db.write(gc_shared=False) as conn:
        try:
            changed = conn.execute("UPDATE containers SET name = ? WHERE id = ?",
                                   (name, id)).rowcount  # fmt: skip
        except _sqlite3.IntegrityError:
            raise AlreadyExistsError(f"container name {name} is taken") from None
    if not changed:
        raise NotFoundError(f"container {id} does not exist")


def remove_container(db: Database, id: str, durable: bool = True) -> None:
    """Forget a container record (its directories are the runtime's)."""
    with db.write(gc_shared=False, durable=durable) as conn:
        if not conn.execute("DELETE FROM containers WHERE id = ?", (id,)).rowcount:
            raise NotFoundError(f"container {id} does not exist")


def _glob_prefix(text: str) -> str:
    escaped = "".join(f"[{c}]" if c in "*?[]" else c for c in text)
    return escaped + "*"


def read_verified(path: StrPath, digest: str, max_size: int) -> bytes:
    """The content of the blob file `path`, at most `max_size` bytes, checked against
    `digest` (`sha256:<hex>`). NotFoundError when absent."""
    try:
        # CPython's own sha256: the same digest as hashlib's, without loading OpenSSL
        # (milliseconds of every `lamina run`, for a config of a few kilobytes).
        from _sha256 import sha256  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - another Python
        from hashlib import sha256
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_size:
                raise InvalidInputError(
                    f"blob {digest} is {size} bytes, more than the {max_size} allowed here"
                )
            data = f.read(max_size + 1)
    except FileNotFoundError:
        raise NotFoundError(f"blob {digest} is not in the content store") from None
    actual = "sha256:" + sha256(data).hexdigest()
    if actual != digest:
        raise DigestMismatchError(f"blob {path}", digest, actual)
    return data


class RowStore:
    """The metadata db of an existing root, for a container's start and end (see module)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.snapshots_dir = os.path.join(root, "snapshots")
        self._db = Database(root)

    def ready(self) -> bool:
        """False when the root needs what only `Store` does first (layers to migrate)."""
        return self._db.conn().execute("SELECT 1 FROM pending_unpack LIMIT 1").fetchone() is None

    def close(self) -> None:
        self._db.close()

    # containers
    def add_container(
        self, id: str, name: str, image: str, state: Any, durable: bool = True
    ) -> ContainerRecord:
        return add_container(self._db, id, name, image, state, durable)

    def get_container(self, id_or_name: str) -> ContainerRecord:
        return get_container(self._db, id_or_name)

    def list_containers(self) -> list[ContainerRecord]:
        return list_containers(self._db)

    def set_container_state(self, id: str, state: Any) -> None:
        set_container_state(self._db, id, state)

    def remove_container(self, id: str) -> None:
        """Forget the record without waiting for the disk (no fsync of the WAL: a later
        commit's fsync, or a checkpoint, makes it durable). A removal lost to a power cut
        only brings back a record of a container with no process (the machine went down):
        the next command cleans that up as it would have, so `lamina run --rm` does not
        wait for the disk at its end."""
        remove_container(self._db, id, durable=False)

    # images
    def snapshot_path(self, diff_id: str) -> str:
        return snapshot_path(self.snapshots_dir, diff_id)

    def tagged(self, name: str) -> str | None:
        """The manifest digest a full tag name points at, or None."""
        row = self._db.conn().execute("SELECT digest FROM tags WHERE name = ?", (name,)).fetchone()
        return str(row[0]) if row else None

    def get_image(self, digest: str) -> ImageRow:
        """The image with this manifest digest; NotFoundError if absent."""
        with self._db.read() as db:
            row = db.execute(
                "SELECT config_digest FROM images WHERE digest = ?", (digest,)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"image {digest} is not in the store")
            layers = db.execute(
                "SELECT l.diff_id FROM image_layers x JOIN layers l ON l.digest = x.layer "
                "WHERE x.image = ? ORDER BY x.position",
                (digest,),
            ).fetchall()
        return ImageRow(digest, str(row[0]), tuple(LayerRow(d) for (d,) in layers))

    def config_bytes(self, image: ImageRow, max_size: int) -> bytes:
        """The image's config as stored, verified."""
        path = blob_path(self.root, image.config_digest)
        return read_verified(path, image.config_digest, max_size)
