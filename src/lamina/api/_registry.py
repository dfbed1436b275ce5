"""`pull`, `push`, `login`, `logout`: images between the store and registries.

Pulled layers go through the same ingest as `load` (`layer_record`): each is unpacked
into its snapshot as it downloads, as `docker pull` extracts, every entry checked and the
digest and diff_id verified before anything refers to it. It is resumable: the bytes
land in ingest/ (on a download thread; the unpack reads them back as they land), so an
interrupted pull keeps them and the next asks only for the rest (Range). At most `jobs`
blobs download at once; a layer whose download is over unpacks on while the next
downloads. The compressed blob is not kept unless asked
(`keep_blobs`, as for `load`). Push sends each layer as `layers_for_push` names it (its
original blob if kept, else gzipped from its snapshot, the same digest every time) and
reads the bytes through `layer_blob_for_push`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar, cast

from lamina.api._transfer import ingest_blob, layer_record, layers_for_push, open_layer_blob
from lamina.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from lamina.layers import read_into
from lamina.oci import (
    Descriptor,
    Manifest,
    Platform,
    Reference,
    media_types,
    parse_reference,
    sha256_digest,
)
from lamina.store import ImageRecord, LayerRecord, Lease, RemoteLayer, Store
from lamina.transport import (
    Credentials,
    LayerLimits,
    RegistryBlobs,
    RegistryClient,
    RegistryError,
    RegistrySource,
    SourceImage,
    digest_changed_note,
    erase_credentials,
    list_tags,
    load_credentials,
    push_image,
    registry_host,
    save_credentials,
)

_MAX_MANIFEST = 8 << 20
_WAIT_FOR_OTHER_PULL = 3600.0
Events = Callable[[str, str, int], None]
"""(event, blob digest, bytes): pull: present/downloading/downloaded/unpacked; push:
known/existed/mounted/uploading/uploaded/resumed."""


def _quiet(event: str, digest: str, count: int) -> None:
    pass


_T = TypeVar("_T")
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_roomy = False


def roomy_malloc() -> None:
    """Let glibc's malloc keep freed memory (up to 256 MiB) and serve buffers of up to
    64 MiB from its heap: a download reads 1 MiB buffers by the hundred, and by default
    each comes from a fresh mmap or a trimmed heap, so every page of it faults and is
    zeroed again (a third of a pull's system time, measured). Once per process."""
    global _roomy
    if _roomy:
        return
    _roomy = True
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, 64 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 256 << 20)
    except (OSError, AttributeError):
        pass  # not glibc: its defaults stand


def _waiting(ingest: Callable[[], _T]) -> _T:
    """`ingest()`, waiting while another pull (this process or another) writes the same
    blob into ingest/ (ConflictError), then again: it then finds the layer there."""
    waited = 0.0
    while True:
        try:
            return ingest()
        except ConflictError:
            if waited > _WAIT_FOR_OTHER_PULL:
                raise
            time.sleep(0.2)
            waited += 0.2


def ingest_waiting(
    store: Store,
    lease: Lease,
    source: RegistryBlobs,
    desc: Descriptor,
    diff_id: str,
    limits: LayerLimits,
    *,
    what: str,
) -> None:
    """One layer blob from a registry into its snapshot, resumable, waiting for another
    pull of the same blob to finish rather than downloading it twice."""
    _waiting(lambda: ingest_blob(store, lease, source, desc, diff_id, limits,
                                 resumable=True, what=what))  # fmt: skip


@dataclass(frozen=True)
class PullResult:
    """An image pulled: the name it got, its ID and manifest digest, what travelled."""

    reference: str
    image_id: str
    digest: str
    layers_downloaded: int
    layers_present: int
    bytes_downloaded: int
    warnings: tuple[str, ...] = ()  # a single-platform image not of --platform (kept)


@dataclass(frozen=True)
class PushResult:
    """An image pushed: where, its manifest digest, what each blob needed."""

    reference: str
    digest: str
    uploaded: int
    mounted: int
    existed: int
    bytes_sent: int
    notes: tuple[str, ...] = ()  # layers whose digest changed (their blob was not kept)
    repository: str = ""  # registry/path, as Docker's "The push refers to repository [..]"
    tag: str = ""  # "" when pushed by digest
    size: int = 0  # the manifest's bytes, as Docker's "TAG: digest: D size: N"


def insecure_registries(root: Path) -> set[str]:
    """Registries allowed over plain HTTP besides loopback: `<root>/registries.json`'s
    `{"insecure": ["host:port", ...]}`."""
    path = root / "registries.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return set()
    except ValueError:
        raise InvalidInputError(f"{path}: not valid JSON") from None
    names = doc.get("insecure", []) if isinstance(doc, dict) else []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidInputError(f"{path}: insecure must be a list of host[:port] strings")
    return set(names)


def open_client(
    root: Path, domain: str, *, tls_verify: bool = True, jobs: int = 4, store: Store | None = None
) -> RegistryClient:
    """A client for `domain`, with the saved credentials and the plain-HTTP rule; bearer
    tokens are kept in `store`'s metadata db until they expire, for later commands."""
    insecure = not tls_verify or domain in insecure_registries(root)
    tokens = store.registry if store is not None else None
    return RegistryClient(domain, insecure=insecure, jobs=jobs, tokens=tokens)


def pull_image(
    store: Store,
    root: Path,
    text: str,
    *,
    platform: Platform | None = None,
    jobs: int = 4,
    limits: LayerLimits,
    keep_blobs: bool = False,
    tls_verify: bool = True,
    events: Events = _quiet,
    lazy: bool = False,
) -> PullResult:
    """Pull `text` (a reference) into the store and tag it; only missing blobs travel.

    `lazy` (a build's base image): layers the store lacks are recorded with the repository
    that holds them and fetched only when something needs their bytes (`_registry_lazy`).
    """
    ref = parse_reference(text)
    roomy_malloc()
    downloaded = [0]
    lock = threading.Lock()

    def count(n: int) -> None:
        with lock:
            downloaded[0] += n

    slots = threading.BoundedSemaphore(max(1, jobs))
    with open_client(root, ref.domain, tls_verify=tls_verify, jobs=jobs, store=store) as client:
        source = RegistrySource(client, ref, platform)
        (image,) = source.images()
        warnings = _platform_mismatch(ref, image, platform)
        tags = (str(Reference(ref.domain, ref.path, ref.tag)),) if ref.tag else ()
        with store.lease() as lease:

            def one(position: int) -> tuple[LayerRecord, bool]:
                layer = image.manifest.layers[position]
                diff_id = image.diff_ids[position]
                if store.has_layer(diff_id):
                    events("present", layer.digest, layer.size)
                elif lazy:
                    # Recorded with where it lives; fetched when something needs it.
                    lease.add_snapshot(diff_id)
                    events("lazy", layer.digest, layer.size)
                    return LayerRecord(layer.digest, diff_id, layer.media_type, layer.size,
                                       None), False  # fmt: skip
                counting = _CountingSource(source, count, events, slots)
                record, new = _waiting(
                    lambda: layer_record(
                        store, image, position, counting, lease, limits,
                        keep_blobs=keep_blobs, resumable=True,
                    )
                )  # fmt: skip
                if new:
                    events("downloaded", layer.digest, layer.size)
                    # Unpacked in the pass that downloaded it, as docker pull extracts.
                    events("unpacked", layer.digest, 0)
                return record, new

            # What the layers will write, leased in one transaction rather than a few per
            # layer (each waits for the disk, and they queue for the one writer).
            coming = [
                (desc, diff_id)
                for desc, diff_id in zip(image.manifest.layers, image.diff_ids, strict=True)
                if not store.has_layer(diff_id)
            ]
            lease.add_all(
                blobs=() if lazy else [desc.digest for desc, _ in coming],
                snapshots=[diff_id for _, diff_id in coming],
            )
            # `jobs` blobs download at once (`_CountingSource` holds a slot per download);
            # a layer unpacks from its ingest as it lands and goes on after its download
            # ends, so up to twice as many layers are at work as are downloading.
            with ThreadPoolExecutor(max_workers=max(1, 2 * jobs)) as pool:
                futures = [pool.submit(one, n) for n in range(len(image.manifest.layers))]
                results = [f.result() for f in futures]
            layers = [record for record, _ in results]
            written = sum(new for _, new in results)
            # Where each layer's original blob lives: a lazy layer is fetched from there,
            # and a push to this registry names (and mounts) it, keeping its digest.
            store.registry.remember_layers(
                RemoteLayer(d.diff_id, ref.domain, ref.path, d.digest, d.size, d.media_type)
                for d in layers
                if d.digest != d.diff_id
            )
            store.content.put_bytes(image.config_bytes, image.config_digest, lease=lease)
            store.content.put_bytes(image.manifest_bytes, image.manifest_digest, lease=lease)
            record = store.add_image(
                image.manifest_digest,
                image.config_digest,
                layers,
                media_type=image.manifest.media_type,
                tags=tags,
                # Docker's repo digest: the repository and the digest its reference
                # resolved to (an index's when the tag names one), named with the image.
                repo_digests=(f"{ref.name}@{source.top_digest}",),
            )
        store.registry.remember(
            ref.domain,
            ref.path,
            [image.manifest_digest, image.config_digest, *(d.digest for d in layers)],
        )
    return PullResult(
        str(ref), record.id, record.digest, written, len(layers) - written, downloaded[0],
        warnings,
    )  # fmt: skip


def _platform_mismatch(
    ref: Reference, image: SourceImage, platform: Platform | None
) -> tuple[str, ...]:
    """moby's warning for a single-platform image that is not the --platform asked for:
    it is kept (an index would have been refused), and the user told."""
    if platform is None:
        return ()
    from lamina.oci import ImageConfig

    doc = ImageConfig.from_bytes(image.config_bytes, f"config of {ref}").to_json()
    got = Platform(str(doc.get("os", "")), str(doc.get("architecture", "")),
                   str(doc.get("variant", ""))).normalized()  # fmt: skip
    want = platform.normalized()
    if got.rank_for(want) is not None:  # the rule an index entry is picked by
        return ()
    return (
        f"image with reference {ref} was found but does not match the specified platform:"
        f" wanted {want}, actual: {got}",
    )


class _CountingSource:
    """A registry source whose blob streams report their bytes."""

    def __init__(
        self,
        source: RegistrySource,
        count: Callable[[int], None],
        events: Events,
        slots: threading.BoundedSemaphore,
    ) -> None:
        self._source = source
        self._count = count
        self._events = events
        self._slots = slots

    def images(self) -> tuple[SourceImage, ...]:
        return self._source.images()

    def close(self) -> None:
        self._source.close()

    def open_blob(
        self, descriptor: Descriptor, *, verify: bool = True, offset: int = 0
    ) -> BinaryIO:
        def on_bytes(n: int) -> None:
            self._count(n)
            self._events("downloading", descriptor.digest, n)

        stream = self._source.open_blob(descriptor, verify=verify, offset=offset,
                                        on_bytes=on_bytes)  # fmt: skip
        return cast(BinaryIO, _Downloading(stream, self._slots))


class _Downloading(io.RawIOBase):
    """A blob stream holding one of a pull's download slots from its first read to its
    end (or close): at most `--jobs` blobs travel at once, however many layers unpack."""

    def __init__(self, stream: BinaryIO, slots: threading.BoundedSemaphore) -> None:
        super().__init__()
        self._stream = stream
        self._slots = slots
        self._held = False

    def readable(self) -> bool:
        return True

    def _hold(self) -> None:
        if not self._held:
            self._slots.acquire()
            self._held = True

    def _release(self) -> None:
        if self._held:
            self._held = False
            self._slots.release()

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        self._hold()
        count = read_into(self._stream, buffer)
        if not count:
            self._release()
        return count

    def read(self, size: int | None = -1, /) -> bytes:
        self._hold()
        data = self._stream.read(-1 if size is None else size)
        if not data:
            self._release()
        return data

    def close(self) -> None:
        if not self.closed:
            try:
                self._stream.close()
            finally:
                self._release()
        super().close()


def layer_blob_for_push(
    store: Store, descriptor: Descriptor, offset: int, root: Path | None = None
) -> BinaryIO:
    """The bytes a push sends for a blob, from `offset` on.

    A layer's blob as `layers_for_push` named it (kept, or compressed on the way out from
    its snapshot and cached; made again if pruned since), a config as stored, from
    `offset` on. Not hashed here: the registry checks every blob's digest when the upload
    closes (`PUT ?digest=`) and refuses one that does not match (DIGEST_INVALID, which
    fails the push naming the blob). A push reads exactly the blob's size, never its end,
    so a check at the end here would never run anyway. A blob the store lacks but a
    registry holds (a lazy layer, or a pulled layer's original blob that a mount could not
    bring over) streams from there, given the store `root` whose registry settings apply.
    """
    try:
        stream = open_layer_blob(store, descriptor.digest, verify=False)
    except NotFoundError:
        if root is None or store.registry.remote_blob(descriptor.digest) is None:
            raise
        from lamina.api._registry_lazy import remote_blob_stream

        return remote_blob_stream(store, root, descriptor.digest, offset)
    remaining = offset
    try:
        while remaining:
            skipped = stream.read(min(remaining, 1 << 20))
            if not skipped:
                raise NotFoundError(f"blob {descriptor.digest}: shorter than {offset} bytes")
            remaining -= len(skipped)
    except BaseException:
        stream.close()
        raise
    return stream


_AS_DOCKER = {
    media_types.OCI_LAYER_GZIP: media_types.DOCKER_LAYER_GZIP,
    media_types.OCI_LAYER: media_types.DOCKER_LAYER,
}
_AS_OCI = {docker: oci for oci, docker in _AS_DOCKER.items()}


def _layers_to_send(
    store: Store,
    lease: Lease,
    manifest: Manifest,
    image: ImageRecord,
    registry: str,
    notes: list[str],
) -> tuple[Descriptor, ...]:
    """The blob a push to `registry` names for each layer.

    A layer whose original blob that registry holds (a pulled layer, a cache import) goes
    as that blob, so its digest survives the round trip and the push mounts or skips it
    (Docker's distribution metadata does this); a lazy layer goes as the blob a registry
    holds, streamed through if it is elsewhere; the rest as `layers_for_push` says (the
    blob kept, else gzipped from the snapshot)."""
    docker = manifest.media_type == media_types.DOCKER_MANIFEST
    chosen: list[Descriptor | None] = []
    for desc, record in zip(manifest.layers, image.layers, strict=True):
        kept = store.content.has(desc.digest)
        if desc.digest != record.diff_id and (
            kept or store.registry.repositories_with(registry, desc.digest)
        ):
            chosen.append(None if kept else desc)  # its own blob, there already or here
            continue
        places = store.registry.remote_layers(record.diff_id, registry)
        if not places and not (kept or store.has_layer(record.diff_id)):
            places = store.registry.remote_layers(record.diff_id)  # lazy, elsewhere
        if places:
            place = places[0]
            kind = (_AS_DOCKER if docker else _AS_OCI).get(place.media_type, place.media_type)
            chosen.append(Descriptor(kind, place.digest, place.size))
        else:
            chosen.append(None)
    rest = [n for n, desc in enumerate(chosen) if desc is None]
    if rest:
        made = layers_for_push(
            store, lease,
            dataclasses.replace(manifest, layers=tuple(manifest.layers[n] for n in rest)),
            dataclasses.replace(image, layers=tuple(image.layers[n] for n in rest)),
        )  # fmt: skip
        for n, desc in zip(rest, made, strict=True):
            chosen[n] = desc
            was = manifest.layers[n]
            if was.digest not in (desc.digest, image.layers[n].diff_id):
                # Its compressed blob was not kept: made again, another digest (podman
                # says so too). A built layer (named by its diff_id) is not news.
                notes.append(digest_changed_note(image.layers[n].diff_id, was.digest, desc.digest))
    return tuple(desc for desc in chosen if desc is not None)


def push_to_registry(
    store: Store,
    root: Path,
    image: ImageRecord,
    text: str,
    *,
    jobs: int = 4,
    tls_verify: bool = True,
    events: Events = _quiet,
) -> PushResult:
    """Push a stored image to `text` (a reference with a tag, or none: by digest)."""
    ref = parse_reference(text)
    manifest_bytes = store.content.read_bytes(image.digest, _MAX_MANIFEST)
    manifest = Manifest.from_bytes(manifest_bytes, f"manifest {image.digest}")
    with (
        store.lease() as lease,
        open_client(root, ref.domain, tls_verify=tls_verify, jobs=jobs, store=store) as client,
    ):
        # Layers leave compressed: built ones exist only as snapshots, pulled ones may
        # not have kept their blob. The manifest then names the blobs that are sent.
        notes: list[str] = []
        layers = _layers_to_send(store, lease, manifest, image, ref.domain, notes)
        if layers != manifest.layers:
            manifest = dataclasses.replace(manifest, layers=layers)
            manifest_bytes = manifest.to_bytes()
        # A digest in the reference is checked before anything is sent: the tag beside
        # it must not be moved to another image in the registry.
        if ref.digest and ref.digest != (digest := sha256_digest(manifest_bytes)):
            raise InvalidInputError(
                f"{text}: the image's digest is {digest}",
                hint="push it by tag, or name the digest it has",
            )
        report = push_image(
            client,
            ref.path,
            ref.tag,
            manifest_bytes,
            image.media_type,
            store.registry,
            lambda desc, offset: layer_blob_for_push(store, desc, offset, root),
            jobs=jobs,
            events=lambda kind, desc, n: events(kind, desc.digest, n),
        )
        # As docker push: the image is now known as repository@digest (the digest of the
        # manifest sent, which differs from the stored one when layers were compressed).
        # (An image removed meanwhile has nothing to name: the push stands.)
        with contextlib.suppress(NotFoundError):
            store.repo_digests.add(f"{ref.name}@{report.manifest_digest}", image.digest)
    return PushResult(
        str(ref),
        report.manifest_digest,
        len(report.uploaded),
        len(report.mounted),
        len(report.existed) + len(report.known),
        report.bytes_sent,
        tuple(notes),
        f"{ref.domain}/{ref.path}",
        ref.tag or "",
        len(manifest_bytes),
    )


def _repository(text: str) -> Reference:
    """`text` as the repository `--all-tags` takes: a name without tag or digest."""
    name = text.rsplit("/", 1)[-1]
    if ":" in name or "@" in name:
        raise InvalidInputError("tag can't be used with --all-tags/-a")
    return parse_reference(text)


def remote_tags(store: Store, root: Path, text: str, *, tls_verify: bool = True) -> list[str]:
    """The full references of every tag the registry has for the repository `text` (a
    name without tag or digest), as `docker pull --all-tags` pulls them."""
    ref = _repository(text)
    with open_client(root, ref.domain, tls_verify=tls_verify, store=store) as client:
        tags = list_tags(client, ref.path)
    return [str(Reference(ref.domain, ref.path, tag)) for tag in sorted(set(tags))]


def local_tags(store: Store, text: str) -> list[str]:
    """Every tag the store has of the repository `text`, sorted, as `docker push
    --all-tags` pushes them; NotFoundError when it has none."""
    want = _repository(text)
    tags = []
    for record in store.list_images():
        for tag in record.tags:
            ref = parse_reference(tag)
            if (ref.domain, ref.path) == (want.domain, want.path):
                tags.append(tag)
    tags.sort()
    if not tags:
        raise NotFoundError(f"An image does not exist locally with the tag: {text}")
    return tags


def saved_credentials(registry: str) -> Credentials | None:
    """The credentials Docker's config holds for `registry`, when it holds a user name and
    a password (`docker login` without either tries them first)."""
    saved = load_credentials(registry)
    if saved is None or not saved.username or not saved.password:
        return None
    return saved


def login(root: Path, registry: str, username: str, password: str, *, tls_verify: bool) -> Path:
    """Check the credentials against the registry, then save them; where they went."""
    if not username or not password:
        raise InvalidInputError("login needs a user name and a password")
    registry = registry_host(registry)
    credentials = Credentials(username, password)
    insecure = not tls_verify or registry in insecure_registries(root)
    with RegistryClient(registry, insecure=insecure, credentials=credentials) as client:
        try:
            client.ping(login=True)
        except RegistryError as exc:
            if exc.code == "UNAUTHORIZED":  # not "log in first": this is the login
                exc.hint = "check the user name and password"
            raise
    return save_credentials(registry, credentials)


def logout(store: Store, registry: str) -> bool:
    """Forget `registry`'s credentials and the bearer tokens saved for it (a token kept
    would go on acting for the account logged out); whether credentials were saved."""
    registry = registry_host(registry)
    store.registry.forget_tokens(registry)
    return erase_credentials(registry)
