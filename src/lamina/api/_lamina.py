"""`Lamina`: one store root and everything a user can do with it, as Python calls.

The CLI is a thin shell over this class, and tests drive it directly.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from lamina.api._container_host import HostCommands, tag_name
from lamina.api._image_names import (
    familiar_digest,
    is_repo_digest,
    is_single_reference,
    removed_with,
    repo_digest_name,
    shown,
    sorted_names,
)
from lamina.api._root import default_root
from lamina.errors import ConflictError, InvalidInputError, NotFoundError
from lamina.oci import ImageConfig, Reference, parse_reference
from lamina.store import DiskUsage, FsckReport, ImageRecord, PruneReport, Store, open_store

if TYPE_CHECKING:
    from lamina.analysis import Comparison, ImageReport, LayerInput, StoreReport
    from lamina.api._container_commands import Containers
    from lamina.api._history import HistoryRow
    from lamina.api._registry import PullResult, PushResult
    from lamina.api._transfer_types import LoadResult
    from lamina.builder import BuildResult
    from lamina.transport import LayerLimits


def _ignore(event: str, digest: str, count: int) -> None:
    pass


# The fields `docker image inspect` always shows under "Config", set or not, so that a
# template such as `{{.Config.Labels}}` or `{{.Config.Entrypoint}}` works on any image.
DOCKER_CONFIG_FIELDS: dict[str, Any] = {
    "Hostname": "",
    "Domainname": "",
    "User": "",
    "AttachStdin": False,
    "AttachStdout": False,
    "AttachStderr": False,
    "Tty": False,
    "OpenStdin": False,
    "StdinOnce": False,
    "Env": None,
    "Cmd": None,
    "Image": "",
    "Volumes": None,
    "WorkingDir": "",
    "Entrypoint": None,
    "OnBuild": None,
    "Labels": None,
}


@dataclass(frozen=True)
class ImageSummary:
    """A line of `lamina images`: familiar (repository, tag) pairs, ID, config time, size."""

    id: str
    digest: str
    repo_tags: tuple[tuple[str, str], ...]
    created: str
    content_size: int
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Familiar (repository, digest) pairs of its repo digests (`docker images --digests`).
    repo_digests: tuple[tuple[str, str], ...] = ()

    @property
    def dangling(self) -> bool:
        """No name at all: no tag and no repo digest."""
        return not self.repo_tags and not self.repo_digests


def familiar(name: str) -> tuple[str, str]:
    """A stored full tag name as Docker shows it: (repository, tag)."""
    ref = parse_reference(name)
    return ref.familiar_name(), ref.tag or "<none>"


def _is_parent(stacks: Mapping[str, tuple[Sequence[Any], Sequence[Any]]], image_id: str) -> bool:
    """Whether another image's layers and history start with all of `image_id`'s."""
    layers, history = stacks[image_id]
    for other, (other_layers, other_history) in stacks.items():
        if other == image_id or len(other_history) <= len(history):
            continue
        if tuple(other_layers[: len(layers)]) == tuple(layers) and tuple(
            other_history[: len(history)]
        ) == tuple(history):
            return True
    return False


def normalize_tag(text: str) -> str:
    """A user's image name as the store keeps it: `busybox` → `docker.io/library/busybox:latest`."""
    ref = parse_reference(text)
    if ref.digest:
        raise InvalidInputError(f"{text!r}: a tag cannot contain a digest")
    return str(ref)


class Lamina(HostCommands):
    """The store at `root` and the commands that work on it."""

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        max_layer_bytes: int | None = None,
        max_layer_ratio: float | None = None,
        progress: Callable[[int, int, str], object] | None = None,
    ) -> None:
        # Absolute: mounts and runc need absolute paths, and a relative --root must not
        # change meaning if the working directory does.
        self.root = Path(root if root is not None else default_root()).absolute()
        self.store: Store = open_store(self.root)
        self._limit_args = (max_layer_bytes, max_layer_ratio)
        self._limits: LayerLimits | None = None
        if self.store.pending_unpacks():
            from lamina.transport import migrate_layers

            # A store from before the lean model: each layer becomes its snapshot once.
            migrate_layers(self.store, progress)
        # Lazy layers (a registry holds them) are fetched when something needs their bytes.
        from lamina.api._registry_lazy import LazyLayers

        self.lazy_layers = LazyLayers(self.store, self.root, lambda: self.limits)
        self.store.remote_fetcher = self.lazy_layers
        self._containers: Containers | None = None

    @property
    def containers(self) -> Containers:
        """run, ps, stop, rm, logs, exec, diff, commit...: see `lamina.api._container_commands`."""
        if self._containers is None:
            from lamina.api._container_commands import Containers

            self._containers = Containers(self)
        return self._containers

    @property
    def limits(self) -> LayerLimits:
        """Bounds what one arriving layer may decompress to: a gzip bomb stops here.
        Given to `Lamina()`, else LAMINA_MAX_LAYER_SIZE / LAMINA_MAX_LAYER_RATIO, else
        defaults; read on first use (a command that takes no layer in never imports
        `lamina.transport`)."""
        if self._limits is None:
            from lamina.transport import LayerLimits

            self._limits = LayerLimits.from_env(*self._limit_args)
        return self._limits

    @limits.setter
    def limits(self, value: LayerLimits) -> None:
        self._limits = value

    @property
    def max_layer_bytes(self) -> int:
        return self.limits.max_size

    # -- finding images -------------------------------------------------------------

    def resolve(self, ref: str) -> ImageRecord:
        """An image by name (`busybox`, `a/b:t`), by repo digest (`name@digest`; a
        `name:tag@digest` by its digest, as Docker does), by digest or by ID prefix."""
        normal = tag_name(ref) or repo_digest_name(ref)
        if normal is not None:
            try:
                return self.store.resolve(normal)
            except NotFoundError:
                pass
        try:
            return self.store.resolve(ref)
        except NotFoundError:
            raise NotFoundError(
                f"no such image: {ref}", hint="`lamina images` lists names and IDs"
            ) from None

    def resolve_image(self, ref: str) -> ImageRecord:
        """`resolve` for the image commands (tag, history, rmi): a missing image is moby's
        "No such image: NAME:TAG" (the tag `latest` when none was given)."""
        try:
            return self.resolve(ref)
        except NotFoundError as exc:
            try:
                shown = parse_reference(ref).familiar()
            except InvalidInputError:
                shown = ref
            raise NotFoundError(f"No such image: {shown}", hint=exc.hint) from None

    def config(self, image: ImageRecord) -> ImageConfig:
        """The image's config, read from the store and verified."""
        return self.store.image_config(image)

    def container_config(self, image: ImageRecord) -> dict[str, Any]:
        """The runtime defaults of the image's config (Env, Cmd, Entrypoint, ...): a copy."""
        return self.config(image).container_config

    def full(self) -> Lamina:
        """This (a container's host: see `lamina.api._container_host`)."""
        return self

    @staticmethod
    def layer_sizes(image: ImageRecord) -> list[int]:
        """Uncompressed bytes per layer, as Docker counts image size (stored size if unknown)."""
        return [
            layer.uncompressed_size if layer.uncompressed_size is not None else layer.size
            for layer in image.layers
        ]

    def container_image_size(self, cid: str) -> int:
        """Uncompressed bytes of the layers of the image container `cid` was made from (0
        when that image is gone): found by its manifest digest, never ambiguous as a config
        ID is when two manifests share a config."""
        try:
            image = self.store.get_image(self.store.get_container(cid).image)
        except NotFoundError:
            return 0
        return sum(self.layer_sizes(image))

    # -- read-only views ------------------------------------------------------------

    def images(
        self, *, filters: Sequence[str] = (), all_images: bool = False
    ) -> list[ImageSummary]:
        """Images, newest config first, as `docker images [-a] [--filter K=V]...` lists them.

        Without `all_images`, a nameless image that another image was built on (its
        layers and history a prefix of the other's) is left out, as Docker leaves out
        intermediate images. `filters`: see `lamina.api._filters`.
        """
        from lamina.api._filters import parse_image_filters, select_images

        wanted = parse_image_filters(filters)
        records = self.store.list_images()
        configs = {image.digest: self.config(image) for image in records}
        out = []
        for image in records:
            config = configs[image.digest]
            out.append(
                ImageSummary(
                    id=image.id,
                    digest=image.digest,
                    repo_tags=tuple(sorted(familiar(t) for t in image.tags)),
                    created=config.created,
                    content_size=sum(self.layer_sizes(image)),
                    labels=dict(config.container_config.get("Labels") or {}),
                    repo_digests=tuple(sorted(familiar_digest(d) for d in image.repo_digests)),
                )
            )
        out.sort(key=lambda s: (s.created, s.id), reverse=True)
        if not all_images:
            stacks = {
                image.id: (configs[image.digest].diff_ids, configs[image.digest].history)
                for image in records
            }
            out = [s for s in out if not s.dangling or not _is_parent(stacks, s.id)]
        return select_images(out, wanted, lambda ref: self._created_of(ref))

    def _created_of(self, ref: str) -> str:
        return self.config(self.resolve(ref)).created

    def history(self, ref: str) -> list[HistoryRow]:
        image = self.resolve_image(ref)
        from lamina.api._history import history_rows

        return history_rows(image.id, self.config(image), self.layer_sizes(image))

    def inspect(self, ref: str) -> dict[str, Any]:
        """What `docker image inspect` shows, from the store's records and the config."""
        image = self.resolve_image(ref)
        config = self.config(image)
        doc = config.to_json()
        repo_tags = [":".join(familiar(t)) for t in sorted(image.tags)]
        return {
            "Id": image.id,
            "RepoTags": repo_tags,
            "RepoDigests": [shown(d) for d in sorted_names(image.repo_digests)],
            "Created": config.created,
            "Author": doc.get("author", ""),
            "Config": {**DOCKER_CONFIG_FIELDS, **config.container_config},
            "Architecture": config.architecture,
            "Os": config.os,
            "Size": sum(self.layer_sizes(image)),
            "RootFS": {"Type": "layers", "Layers": list(config.diff_ids)},
            "Descriptor": {
                "mediaType": image.media_type,
                "digest": image.digest,
                "size": image.manifest_size,
            },
            "Layers": [
                {
                    "Digest": layer.digest,
                    "DiffID": layer.diff_id,
                    "MediaType": layer.media_type,
                    "Size": layer.size,
                }
                for layer in image.layers
            ],
        }

    def df(self) -> DiskUsage:
        return self.store.disk_usage()

    # -- building ------------------------------------------------------------------

    def build(self, context: Path, **options: Any) -> BuildResult:
        """`lamina build`: see `build_image` for the options (tags, build_args, target, …)."""
        from lamina.api._build import build_image

        return build_image(self, context, **options)

    # -- moving images in and out ----------------------------------------------------

    def load(
        self, path: Path | BinaryIO, *, keep_blobs: bool | None = None
    ) -> list[LoadResult]:
        """Load a docker-archive or OCI layout (dir or tar); see `load_archive`. A stream
        (stdin) is read as an archive: a regular file in place, a pipe spooled first.

        `keep_blobs` (default: LAMINA_KEEP_BLOBS=1, else no): also keep compressed layer
        blobs as they arrived, so saving gives their original digests back.
        """
        from lamina.api._transfer import load_archive, load_stream

        keep = _keep_blobs(keep_blobs)
        if isinstance(path, (str, Path)):
            return load_archive(self.store, Path(path), self.limits, keep_blobs=keep)
        return load_stream(self.store, path, self.limits, keep_blobs=keep)

    def save(
        self,
        refs: Sequence[str],
        output: Path | BinaryIO,
        fmt: str = "docker-archive",
        compression: str = "gzip",
    ) -> list[str]:
        """Save images; each under the name it was asked by (by ID: no name), as Docker does.

        `output` is a path (written atomically; a directory for `oci-dir`) or a binary
        file object the caller owns, such as the CLI's stdout: the api never writes there.
        OCI layouts get layers compressed with `compression` (gzip, zstd or none); returns
        notes for the user (a digest that changed because its blob was not kept).
        """
        from lamina.api._save import save_images
        from lamina.layers import Compression

        try:
            chosen_compression = Compression(compression)
        except ValueError:
            raise InvalidInputError(f"unknown compression {compression!r}") from None
        if chosen_compression not in (Compression.GZIP, Compression.ZSTD, Compression.NONE):
            raise InvalidInputError(f"lamina does not write {compression} layers")

        chosen: list[tuple[ImageRecord, tuple[Reference, ...]]] = []
        for ref in refs:
            image = self.resolve(ref)
            name = self._tag_named(ref, image)
            chosen.append((image, (parse_reference(name),) if name else ()))
        return save_images(self.store, chosen, output, fmt, chosen_compression)

    def pull(
        self,
        ref: str,
        *,
        platform: str | None = None,
        jobs: int = 4,
        tls_verify: bool = True,
        events: Callable[[str, str, int], None] | None = None,
        keep_blobs: bool | None = None,
        lazy: bool = False,
    ) -> PullResult:
        """Pull an image from its registry; layers the store has are not downloaded.

        Each layer is unpacked into its snapshot as it arrives; `keep_blobs` as for `load`;
        `lazy`: layers are fetched only when something needs them (`_registry_lazy`)."""
        from lamina.api._registry import pull_image
        from lamina.oci import Platform

        want = None
        if platform:
            try:
                want = Platform.parse(platform)
            except ValueError as exc:
                raise InvalidInputError(str(exc)) from None
        return pull_image(
            self.store, self.root, ref, platform=want, jobs=jobs, limits=self.limits,
            keep_blobs=_keep_blobs(keep_blobs), tls_verify=tls_verify, events=events or _ignore,
            lazy=lazy,
        )  # fmt: skip

    def remote_tags(self, repository: str, *, tls_verify: bool = True) -> list[str]:
        """Every tag a registry has for `repository`, as full references (`pull -a`)."""
        from lamina.api._registry import remote_tags

        return remote_tags(self.store, self.root, repository, tls_verify=tls_verify)

    def local_tags(self, repository: str) -> list[str]:
        """Every tag this store has of `repository`, as full names (`push -a`)."""
        from lamina.api._registry import local_tags

        return local_tags(self.store, repository)

    def push(
        self,
        image: str,
        ref: str | None = None,
        *,
        jobs: int = 4,
        tls_verify: bool = True,
        events: Callable[[str, str, int], None] | None = None,
    ) -> PushResult:
        """Push a stored image to `ref` (default: the name it was asked by)."""
        from lamina.api._registry import push_to_registry

        record = self.resolve(image)
        target = ref or image
        return push_to_registry(
            self.store, self.root, record, target, jobs=jobs, tls_verify=tls_verify,
            events=events or _ignore,
        )  # fmt: skip

    def login(
        self, registry: str, username: str, password: str, *, tls_verify: bool = True
    ) -> Path:
        """Check credentials against the registry and save them in Docker's config.json."""
        from lamina.api._registry import login

        return login(self.root, registry, username, password, tls_verify=tls_verify)

    def saved_login(self, registry: str) -> tuple[str, str] | None:
        """The user name and password saved for `registry`, when both are."""
        from lamina.api._registry import saved_credentials

        saved = saved_credentials(registry)
        return None if saved is None else (saved.username, saved.password)

    def logout(self, registry: str) -> bool:
        from lamina.api._registry import logout

        return logout(self.store, registry)

    def import_image(
        self,
        source: Path | BinaryIO,
        reference: str | None = None,
        *,
        base: str | None = None,
        message: str = "",
        changes: Sequence[str] = (),
    ) -> str:
        """Make an image of a rootfs directory or tarball (a file, or a stream: stdin);
        returns its ID.

        With `base`, the new layer holds only the difference between the base image's
        tree and `source` (whiteouts for what `source` lacks).
        """
        from lamina.api._import import import_rootfs
        from lamina.api._instructions import apply_changes
        from lamina.layers import diff_trees

        if isinstance(source, (str, os.PathLike)):
            source = Path(source)
        tags = [normalize_tag(reference)] if reference else []
        if base is None:
            return import_rootfs(
                self.store,
                source,
                base_config=None,
                base_layers=(),
                changes_for=None,
                message=message,
                instructions=changes,
                apply_changes=apply_changes,
                tags=tags,
            )
        image = self.resolve(base)
        if not isinstance(source, Path) or not source.is_dir():
            raise InvalidInputError(f"--base needs a directory to compare, and {source} is not one")
        mount_dir = self.root / "tmp" / f"import-{os.getpid()}"
        self.mount(image.id, mount_dir)
        try:
            return import_rootfs(
                self.store,
                source,
                base_config=self.config(image),
                base_layers=image.layers,
                changes_for=lambda tree: diff_trees(mount_dir, tree),
                message=message,
                instructions=changes,
                apply_changes=apply_changes,
                tags=tags,
            )
        finally:
            self.umount(mount_dir)
            mount_dir.rmdir()

    def mount(self, ref: str, target: Path) -> None:
        """Mount the image read-only at `target` until `umount`."""
        from lamina.api._mount import mount_image

        mount_image(self.store, self.resolve(ref), Path(target))

    def umount(self, target: Path) -> None:
        from lamina.api._mount import unmount_image

        unmount_image(self.store, Path(target))

    # -- analysis (answers from the file index; see lamina.analysis) -------------------

    def index_layers(self, refs: Sequence[str] | None = None, progress: Any = None) -> int:
        """Index the layers of `refs` (every image if None) not indexed yet: the file
        index of a store older than it. `progress(done, total, diff_id)` is told."""
        from lamina.api._analyze import index_layers

        images = [self.resolve(r) for r in refs] if refs is not None else self.store.list_images()
        layers = [layer for image in images for layer in image.layers]
        if not self.store.file_index.missing(layer.diff_id for layer in layers):
            return 0
        return index_layers(self.store, layers, self.max_layer_bytes, progress)

    def analyze(
        self, ref: str, *, base: str | None = None, progress: Any = None
    ) -> tuple[ImageReport, list[LayerInput]]:
        """Waste, duplicates and totals of image `ref`, and the layers they came from.

        The user's layers start above `base` (an image whose layers `ref` starts
        with), else above the FROM image lamina recorded when it built `ref`."""
        from lamina.api._analyze import analyze

        image = self.resolve(ref)
        base_image = self.resolve(base) if base is not None else None
        self.index_layers([ref], progress)
        return analyze(self.store, ref, image, self.config(image), base_image, base)

    def compare(
        self, ref: str, against: str, progress: Any = None,
        layers: Sequence[LayerInput] | None = None,
    ) -> Comparison:  # fmt: skip
        """What image `ref` changes relative to image `against`. `layers`: `ref`'s layers
        as `analyze(ref)` returned them, so they are not read again."""
        from lamina.api._analyze import compare

        image, other = self.resolve(ref), self.resolve(against)
        self.index_layers([ref, against], progress)
        return compare(self.store, ref, image, self.config(image), against, other,
                       self.config(other), layers)  # fmt: skip

    def analyze_store(self, progress: Any = None) -> StoreReport:
        """Which images share which layers, and identical files in different layers."""
        from lamina.api._analyze import store_report

        self.index_layers(None, progress)
        return store_report(self.store)

    # -- names ----------------------------------------------------------------------

    def tag(self, source: str, target: str) -> None:
        """`docker tag`: the new name is checked first (docker's client does, before the
        daemon looks the image up); a name with a digest is refused."""
        try:
            ref = parse_reference(target)
        except InvalidInputError as exc:
            raise InvalidInputError(
                f'Error parsing reference: "{target}" is not a valid repository/tag: '
                f"{exc.message}",
                exc.hint,
            ) from None
        if ref.digest:
            raise InvalidInputError(
                "refusing to create a tag with a digest reference",
                hint="give the new name a tag (NAME[:TAG]), not @sha256:…",
            )
        image = self.resolve_image(source)
        self.store.tag(str(ref), image.digest)

    def rmi(self, refs: list[str], *, force: bool = False) -> list[str]:
        """Docker's rules: a name (tag or repo digest) untags; the last name, or an ID,
        deletes the image (moby's, in `lamina.api._image_names`).

        An ID whose names are not a single reference needs `force`; an image a container
        uses is never removed. Returns Docker's `Untagged:` / `Deleted:` lines.
        """
        lines: list[str] = []
        containers = self.store.list_containers()  # (rmi removes none: read once)
        for ref in refs:
            image = self.resolve_image(ref)
            names = sorted_names(image.names)
            by_name = self._name_of(ref, image)
            users = [c.id for c in containers if c.image == image.digest]
            if users and by_name is None:
                # moby: a running container is a hard conflict, a stopped one a soft one.
                # (Only these containers' states are made true, not every one's.)
                fresh = [self.containers.refresh(c) for c in containers if c.id in users]
                running = [r.id for r in fresh if r is not None and r.state["status"] == "running"]
                if running or not force:
                    state, cid = ("running", running[0]) if running else ("stopped", users[0])
                    raise ConflictError(
                        f"conflict: unable to delete {image.id[7:19]} "
                        f"({'cannot be forced' if running else 'must be forced'}) - "
                        f"image is being used by {state} container {cid[:12]}",
                        hint="remove the container first (lamina rm)",
                    )
                # Forced: the names go, the image stays for the containers that use it.
                lines += self._unname(names)
                continue
            if by_name is not None:
                if users and not force and is_single_reference(names):
                    raise ConflictError(
                        f'conflict: unable to remove repository reference "{ref}" (must force)'
                        f" - container {users[0][:12]} is using its referenced image "
                        f"{image.id[7:19]}",
                        hint="remove the container first (lamina rm), or use -f to untag",
                    )
                gone = removed_with(by_name, names)
                lines += self._unname(gone)
                if len(gone) < len(names) or users:
                    continue  # other names stay, or the image stays for its containers
            elif len(names) > 1 and not is_single_reference(names) and not force:
                raise ConflictError(
                    f"conflict: unable to delete {image.id[7:19]} (must be forced) - "
                    "image is referenced in multiple repositories",
                    hint="remove the names one by one, or use -f",
                )
            else:
                lines += self._unname(names)
            self.store.remove_image(image.digest, force=True)
            lines.append(f"Deleted: {image.id}")
        return lines

    def _unname(self, names: Sequence[str], said: str = "Untagged") -> list[str]:
        """Remove tags and repo digests; Docker's line for each."""
        for name in names:
            if is_repo_digest(name):
                self.store.repo_digests.remove(name)
            else:
                self.store.untag(name)
        return [f"{said}: {shown(name)}" for name in names]

    def _name_of(self, ref: str, image: ImageRecord) -> str | None:
        """The name of `image` (tag or repo digest) that `ref` spells, or None (an ID)."""
        return self._tag_named(ref, image) or (
            name if (name := repo_digest_name(ref)) in image.repo_digests else None
        )

    @staticmethod
    def _tag_named(ref: str, image: ImageRecord) -> str | None:
        try:
            normal = str(parse_reference(ref))
        except InvalidInputError:
            return None
        return normal if normal in image.tags else None

    # -- upkeep ---------------------------------------------------------------------

    def prune(self, *, keep_build_cache: bool = False) -> PruneReport:
        """Like `docker system prune`: the build cache goes too, unless kept, then
        nameless images and every blob and snapshot nothing holds any more."""
        removed = 0 if keep_build_cache else self.store.remove_cache()
        # Compressed layer blobs made for sending are a cache too, pruned with it.
        report = self.store.prune(keep_layer_blobs=keep_build_cache)
        return dataclasses.replace(report, cache_records_removed=removed)

    def prune_images(self, *, all_images: bool = False) -> tuple[list[str], int]:
        """`docker image prune [-a]`: dangling images (no tag, no repo digest) no container
        uses, or with `all_images` every image no container uses, its names first; then
        whatever blob and snapshot nothing holds any more. The build cache stays. Returns
        docker's report lines (`untagged: NAME`, `deleted: ID`, image by image) and the
        bytes freed."""
        used = {c.image for c in self.store.list_containers()}
        untagged: dict[str, list[str]] = {}
        images = self.store.list_images()
        for image in images if all_images else ():
            if image.digest not in used:
                untagged[image.digest] = self._unname(sorted_names(image.names), "untagged")
        ids = {image.digest: image.id for image in images}
        report = self.store.prune(keep_layer_blobs=True)
        lines: list[str] = []
        for digest in report.images_removed:
            lines += untagged.get(digest, [])
            if digest in ids:
                lines.append(f"deleted: {ids[digest]}")
        return lines, report.bytes_freed

    def fsck(self) -> FsckReport:
        """The store's checks, plus every snapshot's tar rebuilt and checked against its
        diff_id (a snapshot changed behind lamina's back is reported)."""
        from lamina.errors import LaminaError
        from lamina.transport import verify_layer

        report = self.store.fsck()
        problems = list(report.problems)
        for snap in self.store.list_snapshots():
            if not self.store.has_layer(snap.diff_id):
                continue  # reported by the store's own checks (or pending migration)
            try:
                verify_layer(self.store, snap.diff_id)
            except LaminaError as exc:
                problems.append(f"snapshot {snap.diff_id} does not match its diff_id: {exc}")
        return dataclasses.replace(report, problems=problems)


def _keep_blobs(asked: bool | None) -> bool:
    """`--keep-blobs` when given, else LAMINA_KEEP_BLOBS (1/true/yes/on, any case; 0,
    false, no, off or unset: no; anything else is an error, not a silent no)."""
    if asked is not None:
        return asked
    text = os.environ.get("LAMINA_KEEP_BLOBS", "")
    value = text.strip().lower()
    if value in ("1", "t", "true", "yes", "on"):
        return True
    if value in ("", "0", "f", "false", "no", "off"):
        return False
    raise InvalidInputError(
        f"LAMINA_KEEP_BLOBS={text!r} is not a boolean", hint="set it to 1 or 0, or unset it"
    )
