"""Images, layers and tags in the metadata db."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from lamina.errors import ConflictError, InvalidInputError, NotFoundError
from lamina.oci import MAX_DOCUMENT_BYTES, ImageConfig, check_digest, is_digest
from lamina.store._content import ContentStore
from lamina.store._db import Database
from lamina.store._records import (
    DiskUsage,
    ImageRecord,
    ImageUsage,
    LayerRecord,
    LayerUsage,
)
from lamina.store._repodigests import image_named, record_repo_digests, split_repo_digest

_ID_PREFIX = re.compile(r"(?:sha256:)?([0-9a-f]{1,64})")  # fullmatch: no "\n" after it
_MAX_NAME = 1024
_UPSERT_TAG = (
    "INSERT INTO tags VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET digest = excluded.digest"
)


def check_tag_name(name: str) -> str:
    """A tag name is stored as given (already normalised); only its shape is checked here."""
    if not name or len(name) > _MAX_NAME or any(c.isspace() or not c.isprintable() for c in name):
        raise InvalidInputError(f"tag name {name[:100]!r} is empty, too long or has whitespace")
    return name


class ImagesMixin:
    """Image records: add (all or nothing), look up, tag, resolve, remove, disk usage."""

    _db: Database
    content: ContentStore
    snapshots_dir: Path

    def has_layer(self, diff_id: str) -> bool:
        raise NotImplementedError  # LeanLayersMixin

    def layer_available(self, diff_id: str) -> bool:
        raise NotImplementedError  # LeanLayersMixin

    def add_image(
        self,
        manifest_digest: str,
        config_digest: str,
        layers: Sequence[LayerRecord],
        *,
        media_type: str,
        tags: Sequence[str] = (),
        repo_digests: Sequence[str] = (),
    ) -> ImageRecord:
        """Record an image whose blobs are committed, and point `tags` and `repo_digests`
        (`repository@digest` names, see `_repodigests`) at it, in one transaction.

        NotFoundError (and nothing written) if the manifest, config or a layer blob is
        missing; InvalidInputError if a layer's size differs from its blob's. Adding an
        image that exists only applies the tags.
        """
        check_digest(manifest_digest, "manifest digest")
        check_digest(config_digest, "config digest")
        for layer in layers:
            check_digest(layer.digest, "layer digest")
            check_digest(layer.diff_id, f"diff_id of layer {layer.digest}")
        for name in tags:
            check_tag_name(name)
        for name in repo_digests:
            split_repo_digest(name)
        with self._db.write() as db:
            # Checked under the shared gc lock: no prune can remove them before COMMIT.
            manifest_size = self._blob_size(manifest_digest, "manifest")
            config_size = self._blob_size(config_digest, "config")
            for layer in layers:
                if not self.content.has(layer.digest) and self.layer_available(layer.diff_id):
                    # The snapshot is the layer (a blob is made when it leaves), or a
                    # registry holds its blob: fetched when something needs its bytes.
                    continue
                size = self._blob_size(layer.digest, "layer")
                if size != layer.size:
                    raise InvalidInputError(
                        f"layer {layer.digest}: record says {layer.size} bytes, blob has {size}"
                    )
            fresh = db.execute(
                "INSERT OR IGNORE INTO images VALUES (?, ?, ?, ?, ?, ?)",
                (
                    manifest_digest,
                    config_digest,
                    media_type,
                    manifest_size,
                    config_size,
                    time.time(),
                ),
            ).rowcount
            if fresh:
                self._insert_layers(db, manifest_digest, layers)
                blobs = {manifest_digest, config_digest} | {layer.digest for layer in layers}
                db.executemany(
                    "INSERT INTO image_blobs VALUES (?, ?)", [(manifest_digest, b) for b in blobs]
                )
            db.executemany(
                _UPSERT_TAG,
                [(name, manifest_digest) for name in tags],
            )
            record_repo_digests(db, manifest_digest, repo_digests)
            # Read back inside the transaction: once it commits, a prune may take an
            # untagged image before a second read could see it.
            (image,) = self._load_images(db, manifest_digest)
        return image

    def _blob_size(self, digest: str, what: str) -> int:
        try:
            return self.content.size(digest)
        except NotFoundError:
            raise NotFoundError(
                f"{what} blob {digest} is not in the content store; the image was not added",
                hint="write every blob before recording the image",
            ) from None

    @staticmethod
    def _insert_layers(db: sqlite3.Connection, image: str, layers: Sequence[LayerRecord]) -> None:
        for position, layer in enumerate(layers):
            row = db.execute(
                "SELECT diff_id FROM layers WHERE digest = ?", (layer.digest,)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO layers VALUES (?, ?, ?, ?, ?)",
                    (
                        layer.digest,
                        layer.diff_id,
                        layer.media_type,
                        layer.size,
                        layer.uncompressed_size,
                    ),
                )
            elif row[0] != layer.diff_id:
                raise InvalidInputError(
                    f"layer {layer.digest}: diff_id {layer.diff_id} given, "
                    f"but the store knows it as {row[0]}"
                )
            elif layer.uncompressed_size is not None:
                db.execute(
                    "UPDATE layers SET uncompressed_size = ? WHERE digest = ?",
                    (layer.uncompressed_size, layer.digest),
                )
            db.execute("INSERT INTO image_layers VALUES (?, ?, ?)", (image, position, layer.digest))

    def get_image(self, digest: str) -> ImageRecord:
        """The image with this manifest digest; NotFoundError if absent."""
        with self._db.read() as db:
            image = self._load_images(db, digest)
        if not image:
            raise NotFoundError(f"image {digest} is not in the store")
        return image[0]

    def list_images(self) -> list[ImageRecord]:
        """Every image, newest first, with its tags and layers."""
        with self._db.read() as db:
            return self._load_images(db)

    @staticmethod
    def _load_images(db: sqlite3.Connection, only_digest: str | None = None) -> list[ImageRecord]:
        only = "WHERE {} = ?" if only_digest is not None else ""
        args = (only_digest,) if only_digest is not None else ()
        rows = db.execute(
            "SELECT digest, config_digest, media_type, manifest_size, config_size, created "
            f"FROM images {only.format('digest')} ORDER BY created DESC, digest",
            args,
        ).fetchall()
        tags: dict[str, list[str]] = {}
        for image, name in db.execute(
            f"SELECT digest, name FROM tags {only.format('digest')} ORDER BY name", args
        ):
            tags.setdefault(image, []).append(name)
        repo_digests: dict[str, list[str]] = {}
        for image, name in db.execute(
            f"SELECT image, repository || '@' || digest AS name FROM repo_digests "
            f"{only.format('image')} ORDER BY name",
            args,
        ):
            repo_digests.setdefault(image, []).append(name)
        layers: dict[str, list[LayerRecord]] = {}
        for image, *layer in db.execute(
            "SELECT x.image, l.digest, l.diff_id, l.media_type, l.size, l.uncompressed_size "
            f"FROM image_layers x JOIN layers l ON l.digest = x.layer {only.format('x.image')} "
            "ORDER BY x.image, x.position",
            args,
        ):
            layers.setdefault(image, []).append(LayerRecord(*layer))
        return [
            ImageRecord(
                digest=digest,
                config_digest=config,
                media_type=media_type,
                manifest_size=manifest_size,
                config_size=config_size,
                created=created,
                layers=tuple(layers.get(digest, ())),
                tags=tuple(tags.get(digest, ())),
                repo_digests=tuple(repo_digests.get(digest, ())),
            )
            for digest, config, media_type, manifest_size, config_size, created in rows
        ]

    def manifest_bytes(self, image: ImageRecord) -> bytes:
        """The image's manifest as stored, verified, bounded by MAX_DOCUMENT_BYTES."""
        return self.content.read_bytes(image.digest, MAX_DOCUMENT_BYTES)

    def config_bytes(self, image: ImageRecord) -> bytes:
        """The image's config as stored, verified, bounded by MAX_DOCUMENT_BYTES."""
        return self.content.read_bytes(image.config_digest, MAX_DOCUMENT_BYTES)

    def image_config(self, image: ImageRecord) -> ImageConfig:
        """The image's config, read from the content store and decoded: the one way to."""
        return ImageConfig.from_bytes(self.config_bytes(image), f"config {image.config_digest}")

    def image_layers(self, digest: str) -> list[LayerRecord]:
        """The image's layers, bottom first."""
        return list(self.get_image(digest).layers)

    def layer(self, digest: str) -> LayerRecord:
        """What the store knows about a layer blob; NotFoundError if no image recorded it."""
        row = (
            self._db.conn()
            .execute(
                "SELECT digest, diff_id, media_type, size, uncompressed_size FROM layers "
                "WHERE digest = ?",
                (digest,),
            )
            .fetchone()
        )
        if row is None:
            raise NotFoundError(f"layer {digest} is not recorded in the store")
        return LayerRecord(*row)

    def record_layer(self, layer: LayerRecord) -> None:
        """Remember that blob `layer.digest` holds the tar `layer.diff_id`, as an ingest
        that checked both found, before any image names it (gc drops the row if none
        comes). A row the store has already is kept as it is."""
        check_digest(layer.digest, "layer digest")
        check_digest(layer.diff_id, "diff_id")
        with self._db.write() as db:
            db.execute(
                "INSERT OR IGNORE INTO layers VALUES (?, ?, ?, ?, ?)",
                (layer.digest, layer.diff_id, layer.media_type, layer.size,
                 layer.uncompressed_size),
            )  # fmt: skip

    def layer_by_diff_id(self, diff_id: str) -> LayerRecord | None:
        """A stored layer blob with this content, whatever its compression; None if none.

        Prefers the smallest blob, so a compressed copy wins over a plain one.
        """
        row = (
            self._db.conn()
            .execute(
                "SELECT digest, diff_id, media_type, size, uncompressed_size FROM layers "
                "WHERE diff_id = ? ORDER BY size, digest LIMIT 1",
                (check_digest(diff_id, "diff_id"),),
            )
            .fetchone()
        )
        return None if row is None else LayerRecord(*row)

    def tag(self, name: str, manifest_digest: str) -> None:
        """Point `name` at an image, replacing what it pointed at (atomically)."""
        check_tag_name(name)
        with self._db.write() as db:
            if (
                db.execute("SELECT 1 FROM images WHERE digest = ?", (manifest_digest,)).fetchone()
                is None
            ):
                raise NotFoundError(
                    f"cannot tag {name}: image {manifest_digest} is not in the store"
                )
            db.execute(
                _UPSERT_TAG,
                (name, manifest_digest),
            )

    def untag(self, name: str) -> str:
        """Remove a tag; return the manifest digest it pointed at."""
        with self._db.write(gc_shared=False) as db:
            row = db.execute("DELETE FROM tags WHERE name = ? RETURNING digest", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"tag {name} does not exist")
        return str(row[0])

    def resolve(self, ref: str) -> ImageRecord:
        """Find an image by full tag name, by repo digest (`repository@digest` as recorded),
        by digest (manifest or config; `name@digest` whose repo digest is not recorded
        too), or by a unique prefix of its ID (config digest, `sha256:` optional)."""
        db = self._db.conn()
        row = db.execute("SELECT digest FROM tags WHERE name = ?", (ref,)).fetchone()
        if row is not None:
            return self.get_image(row[0])
        digest = ref.rsplit("@", 1)[-1]
        if "@" in ref and (named := image_named(db, ref)) is not None:
            return self.get_image(named)  # a repo digest, as Docker's reference store
        if is_digest(digest):
            rows = db.execute(
                "SELECT digest FROM images WHERE digest = ? UNION "
                "SELECT digest FROM images WHERE config_digest = ? AND NOT EXISTS "
                "(SELECT 1 FROM images WHERE digest = ?)",
                (digest, digest, digest),
            ).fetchall()
            if not rows and "@" in ref:
                raise NotFoundError(f"image {ref} is not in the store")
        elif match := _ID_PREFIX.fullmatch(ref):
            rows = db.execute(
                "SELECT digest FROM images WHERE config_digest GLOB ?",
                (f"sha256:{match.group(1)}*",),
            ).fetchall()
        else:
            rows = []
        if not rows:
            raise NotFoundError(
                f"no image named {ref!r}", hint="`lamina images` lists names and IDs"
            )
        if len(rows) > 1:
            shown = ", ".join(sorted(r[0] for r in rows)[:5])
            raise InvalidInputError(
                f"image ID {ref!r} is ambiguous: it matches {len(rows)} images ({shown})",
                hint="give more digits of the ID, or the manifest digest",
            )
        return self.get_image(rows[0][0])

    def remove_image(self, digest: str, *, force: bool = False) -> None:
        """Forget an image record (its blobs go at the next prune).

        ConflictError if a container uses it, or if names (tags, repo digests) point at it
        and not `force` (with `force` the names go too, in the same transaction).
        """
        with self._db.write(gc_shared=False) as db:
            if db.execute("SELECT 1 FROM images WHERE digest = ?", (digest,)).fetchone() is None:
                raise NotFoundError(f"image {digest} is not in the store")
            used = [
                r[0] for r in db.execute("SELECT name FROM containers WHERE image = ?", (digest,))
            ]
            if used:
                raise ConflictError(
                    f"image {digest} is used by container(s) {', '.join(used)}",
                    hint="remove the containers first",
                )
            names = [r[0] for r in db.execute(
                "SELECT name FROM tags WHERE digest = ?1 UNION ALL "
                "SELECT repository || '@' || digest FROM repo_digests WHERE image = ?1",
                (digest,))]  # fmt: skip
            if names and not force:
                raise ConflictError(
                    f"image {digest} is tagged {', '.join(names)}", hint="untag it, or force"
                )
            db.execute("DELETE FROM tags WHERE digest = ?", (digest,))
            db.execute("DELETE FROM repo_digests WHERE image = ?", (digest,))
            db.execute("DELETE FROM images WHERE digest = ?", (digest,))
            # Its containers' init layer goes with it (in the transaction: no container of
            # this image can be created meanwhile; were it rolled back, the next container
            # makes the layer again).
            from lamina.store._gc import drop_init_layer
            from lamina.store._layout import init_layer_name

            drop_init_layer(self.snapshots_dir, init_layer_name(digest))

    def disk_usage(self) -> DiskUsage:
        """Per image: size, bytes shared with other images, unique bytes; per layer: users."""
        with self._db.read() as db:
            images = self._load_images(db)
            containers = dict(
                db.execute("SELECT image, count(*) FROM containers GROUP BY image").fetchall()
            )
            snapshots_size = db.execute("SELECT coalesce(sum(size), 0) FROM snapshots").fetchone()[
                0
            ]
            cache_records = db.execute("SELECT count(*) FROM cache").fetchone()[0]
        users: dict[str, int] = {}
        records: dict[str, LayerRecord] = {}
        for image in images:
            for layer in {layer.digest: layer for layer in image.layers}.values():
                users[layer.digest] = users.get(layer.digest, 0) + 1
                records[layer.digest] = layer
        usages = []
        for image in images:
            distinct = {layer.digest: layer.size for layer in image.layers}
            shared = sum(size for d, size in distinct.items() if users[d] > 1)
            usages.append(
                ImageUsage(
                    image, image.size, shared, image.size - shared, containers.get(image.digest, 0)
                )
            )
        blobs_size = 0
        for digest in self.content.iter_digests():
            with contextlib.suppress(NotFoundError):
                blobs_size += self.content.size(digest)
        return DiskUsage(
            images=tuple(usages),
            layers=tuple(LayerUsage(records[d], n) for d, n in sorted(users.items())),
            blobs_size=blobs_size,
            snapshots_size=int(snapshots_size),
            cache_records=int(cache_records),
        )
