"""The read-only values the store takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LayerRecord:
    """One layer blob: compressed digest, uncompressed diff_id, media type and sizes.

    `uncompressed_size` is None until someone has measured it (a pulled layer not yet unpacked).
    """

    digest: str
    diff_id: str
    media_type: str
    size: int
    uncompressed_size: int | None = None


@dataclass(frozen=True)
class ImageRecord:
    """An image held by the store. `id` is Docker's image ID: the config digest."""

    digest: str
    config_digest: str
    media_type: str
    manifest_size: int
    config_size: int
    created: float
    layers: tuple[LayerRecord, ...]
    tags: tuple[str, ...]
    repo_digests: tuple[str, ...] = ()  # `repository@digest` names a registry gave it

    @property
    def names(self) -> tuple[str, ...]:
        """Every name it has, tags and repo digests: none means dangling."""
        return self.tags + self.repo_digests

    @property
    def id(self) -> str:
        return self.config_digest

    @property
    def size(self) -> int:
        """Bytes of the blobs it holds: manifest, config and each distinct layer once."""
        distinct = {layer.digest: layer.size for layer in self.layers}
        return self.manifest_size + self.config_size + sum(distinct.values())


@dataclass(frozen=True)
class LayerUsage:
    """A layer and how many images use it."""

    layer: LayerRecord
    images: int


@dataclass(frozen=True)
class ImageUsage:
    """Disk use of one image, as `docker system df -v` shows it.

    shared_size = bytes of its layers that other images use too;
    unique_size = size - shared_size.
    """

    image: ImageRecord
    size: int
    shared_size: int
    unique_size: int
    containers: int


@dataclass(frozen=True)
class DiskUsage:
    """What `df` reports: per image, per layer, and totals of what is on disk."""

    images: tuple[ImageUsage, ...]
    layers: tuple[LayerUsage, ...]
    blobs_size: int
    snapshots_size: int
    cache_records: int

    @property
    def active_images(self) -> int:
        """Images a container uses (docker/cli's ACTIVE)."""
        return sum(1 for u in self.images if u.containers)

    @property
    def reclaimable_size(self) -> int:
        """Bytes only the images prune would remove hold."""
        return sum(u.unique_size for u in self.images if not u.image.names and not u.containers)


@dataclass(frozen=True)
class SnapshotRecord:
    """An unpacked layer under snapshots/<diff_id hex>/ as the snapshots package recorded it."""

    diff_id: str
    state: str
    size: int
    created: float


@dataclass(frozen=True)
class CacheRecord:
    """A build cache entry: key → JSON value, and the content it keeps alive."""

    key: str
    value: Any
    blobs: tuple[str, ...]
    snapshots: tuple[str, ...]
    created: float
    last_used: float


# A file whose mtime is this close to now may still change without its size or mtime
# moving (git's "racy" timestamps): neither the stat cache nor a build record trusts it.
RACY_SECONDS = 2.0


@dataclass(frozen=True)
class FileIdentity:
    """What a stat says about a context file; equal identities mean unchanged content.

    The fields git's index trusts: an in-place edit that restores size and mtime
    (``touch -r``) still moves the ctime, which no user can set."""

    path: str
    size: int
    mtime_ns: int
    inode: int
    mode: int
    ctime_ns: int = 0
    dev: int = 0
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class PruneReport:
    """What `prune` removed."""

    images_removed: tuple[str, ...] = ()
    blobs_removed: tuple[str, ...] = ()
    bytes_freed: int = 0
    snapshots_removed: tuple[str, ...] = ()
    ingests_removed: int = 0
    leases_expired: int = 0
    cache_records_removed: int = 0


@dataclass(frozen=True)
class FsckReport:
    """`problems`: broken content or dangling references. `strays`: leftovers prune collects."""

    problems: list[str] = field(default_factory=list)
    strays: list[str] = field(default_factory=list)
    blobs_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems
