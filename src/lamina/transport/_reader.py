"""Reading images out of a docker-archive or an OCI layout (directory or tar).

`open_archive` detects the format. An OCI index is preferred when the archive has one
(Docker 25+ writes both); a plain `docker save` archive gets a synthesized OCI manifest
whose layer digests are computed from the layer files as stored.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, BinaryIO, Protocol, cast

from lamina.errors import DigestMismatchError, InvalidInputError, NotFoundError
from lamina.layers import Compression, sniff_compression
from lamina.oci import (
    MAX_DOCUMENT_BYTES,
    MAX_OCI_LAYOUT_BYTES,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Reference,
    check_digest,
    digest_hex,
    host_platform,
    load_json_object,
    media_types,
    parse_reference,
    sha256_digest,
)
from lamina.store import VerifiedBlob
from lamina.transport._members import (
    DirFiles,
    Files,
    Slice,
    TarFiles,
    clean_path,
    hash_member,
    peek_member,
    read_small,
)

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
_MAX_INDEX_DEPTH = 4
_MAX_DOCKER_ENTRIES = 1000
_CONFIG_NAME = re.compile(r"^(?:.*/)?([0-9a-f]{64})(?:\.json)?$")


def _verified(piece: Slice, digest: str, size: int, what: str, verify: bool) -> VerifiedBlob:
    """A blob of an archive, checked against its descriptor's size, then its digest."""
    if piece.size != size:
        if piece.owned:
            os.close(piece.fd)
        raise InvalidInputError(
            f"{what}: {piece.label} holds {piece.size} bytes, its descriptor says {size}"
        )
    return VerifiedBlob(
        piece.fd, piece.offset, size, digest, what, piece.label, owned=piece.owned, verify=verify
    )


def layer_media_type(head: bytes) -> str:
    """The OCI layer media type of a layer file whose first bytes are `head`."""
    compression = sniff_compression(head)
    if compression in (Compression.GZIP, Compression.ZSTD):
        return compression.media_type
    return media_types.OCI_LAYER


@dataclass(frozen=True)
class ArchiveImage:
    """One image of an archive, as values; its blobs come from `ArchiveReader.open_blob`.

    `synthesized` is true for a docker-archive image without a manifest of its own:
    lamina made `manifest_bytes`, so its digest is not one any registry has seen.
    `ref_name` is the raw `org.opencontainers.image.ref.name` (often a bare tag).
    """

    names: tuple[Reference, ...]
    manifest: Manifest
    manifest_bytes: bytes
    config_bytes: bytes
    diff_ids: tuple[str, ...]
    synthesized: bool = False
    ref_name: str = ""

    @property
    def manifest_digest(self) -> str:
        return sha256_digest(self.manifest_bytes)

    @property
    def config_digest(self) -> str:
        """The image ID, as Docker shows it."""
        return self.manifest.config.digest


class ImageSource(Protocol):
    """Where images come from: a list of values, and blobs opened as verified streams."""

    def images(self) -> tuple[ArchiveImage, ...]: ...

    def open_blob(self, descriptor: Descriptor, *, verify: bool = True) -> BinaryIO: ...


def _names(annotations: Mapping[str, str], what: str) -> tuple[list[Reference], str]:
    ref_name = annotations.get(ANNOTATION_REF_NAME, "")
    texts = []
    if full := annotations.get(ANNOTATION_IMAGE_NAME, ""):
        texts.append(full)
    elif "/" in ref_name or ":" in ref_name:
        texts.append(ref_name)  # a whole reference, not just a tag
    return [_reference(text, what) for text in texts], ref_name


def _reference(text: object, what: str) -> Reference:
    if not isinstance(text, str):
        raise InvalidInputError(f"{what}: image name {str(text)[:80]!r} is not a string")
    try:
        return parse_reference(text)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{what}: {exc.message}", exc.hint) from None


def _blob_path(digest: str) -> str:
    return f"blobs/sha256/{digest_hex(digest)}"


def _unique(refs: list[Reference]) -> tuple[Reference, ...]:
    return tuple(dict.fromkeys(refs))


class ArchiveReader:
    """An opened archive: `images()` lists what it holds, `open_blob` streams content.

    Nothing is extracted and nothing is written: a tar is indexed once and read in
    slices, a directory is read without following links. Close it when done (it is a
    context manager); streams from `open_blob` must be read before that.
    """

    def __init__(self, path: str, files: Files, fmt: str) -> None:
        self.path = path
        self.format = fmt
        self._files = files
        self._legacy_blobs: dict[str, str] = {}
        self._images: tuple[ArchiveImage, ...] = ()

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._files.close()

    def images(self) -> tuple[ArchiveImage, ...]:
        """The images, in the order the archive lists them."""
        return self._images

    def _layer_digest(self, path: str, diff_id: str, what: str) -> tuple[str, int, str]:
        """Digest, size and media type of a docker-archive layer file.

        A plain tar's digest is its diff_id: it is taken from the config and checked
        when the blob is read (`open_blob`), which saves reading every layer twice. A
        compressed layer is hashed here, since its manifest needs its own digest.
        """
        size, head = peek_member(self._files, path, what)
        media_type = layer_media_type(head)
        if media_type == media_types.OCI_LAYER:
            return diff_id, size, media_type
        digest, size, _ = hash_member(self._files, path, what)
        return digest, size, media_type

    def open_blob(self, descriptor: Descriptor, *, verify: bool = True) -> BinaryIO:
        """A stream of the blob: at most `descriptor.size` bytes, digest checked at EOF.

        `verify=False` leaves the digest check to a caller that makes it anyway (the
        store's writer, given the descriptor's digest as the one expected).
        """
        digest = check_digest(descriptor.digest, "blob")
        if self._legacy_blobs:
            path = self._legacy_blobs.get(digest)
            if path is None:
                raise NotFoundError(f"blob {digest}: not in {self._files.description}")
        else:
            path = _blob_path(digest)
        piece = self._files.open_slice(path, f"blob {digest}")
        return cast(BinaryIO, _verified(piece, digest, descriptor.size, f"blob {digest}", verify))

    def _read_blob(self, descriptor: Descriptor, what: str) -> bytes:
        if descriptor.size > MAX_DOCUMENT_BYTES:
            raise InvalidInputError(
                f"{what}: {descriptor.size} bytes is more than the {MAX_DOCUMENT_BYTES} allowed"
            )
        piece = self._files.open_slice(_blob_path(descriptor.digest), what)
        with _verified(piece, descriptor.digest, descriptor.size, what, True) as blob:
            return blob.readall()

    # -- OCI layout -------------------------------------------------------------------

    def _load_oci(self) -> None:
        files = self._files
        if files.exists("oci-layout"):
            layout = load_json_object(
                read_small(files, "oci-layout", "oci-layout", MAX_OCI_LAYOUT_BYTES), "oci-layout"
            )
            if not isinstance(layout.get("imageLayoutVersion"), str):
                raise InvalidInputError("oci-layout: imageLayoutVersion must be a string")
        raw = read_small(files, "index.json", "index.json", MAX_DOCUMENT_BYTES)
        index = Index.from_bytes(raw, "index.json")
        found: dict[str, ArchiveImage] = {}
        for n, top in enumerate(index.manifests):
            what = f"index.json manifest {n} ({top.digest})"
            names, ref_name = _names(top.annotations, what)
            desc, manifest, data = self._select(top, what, 0)
            earlier = found.get(desc.digest)
            if earlier is not None:
                found[desc.digest] = ArchiveImage(
                    _unique([*earlier.names, *names]),
                    earlier.manifest,
                    earlier.manifest_bytes,
                    earlier.config_bytes,
                    earlier.diff_ids,
                    False,
                    earlier.ref_name or ref_name,
                )
                continue
            config_bytes = self._read_blob(
                manifest.config, f"{what} config {manifest.config.digest}"
            )
            diff_ids = self._check_layers(manifest, config_bytes, what)
            found[desc.digest] = ArchiveImage(
                _unique(names), manifest, data, config_bytes, diff_ids, False, ref_name
            )
        self._images = tuple(found.values())

    def _select(
        self, desc: Descriptor, what: str, depth: int
    ) -> tuple[Descriptor, Manifest, bytes]:
        """Follow `desc` down nested indexes to this platform's manifest."""
        data = self._read_blob(desc, what)
        media_type = desc.media_type
        if not media_type:  # old layouts leave it out of the descriptor
            doc: dict[str, Any] = load_json_object(data, what)
            media_type = media_types.OCI_INDEX if "manifests" in doc else media_types.OCI_MANIFEST
        if media_type in media_types.MANIFEST_TYPES:
            return desc, Manifest.from_bytes(data, what), data
        if media_type not in media_types.INDEX_TYPES:
            raise InvalidInputError(f"{what}: {media_type!r} is neither a manifest nor an index")
        if depth >= _MAX_INDEX_DEPTH:
            raise InvalidInputError(f"{what}: indexes nested more than {_MAX_INDEX_DEPTH} deep")
        child = _pick_platform(Index.from_bytes(data, what), what)
        return self._select(child, f"{what} -> {child.digest}", depth + 1)

    def _check_layers(self, manifest: Manifest, config_bytes: bytes, what: str) -> tuple[str, ...]:
        config = ImageConfig.from_bytes(config_bytes, f"{what} config")
        diff_ids = config.diff_ids
        if len(diff_ids) != len(manifest.layers):
            raise InvalidInputError(
                f"{what}: the manifest lists {len(manifest.layers)} layers but the config"
                f" lists {len(diff_ids)} diff_ids"
            )
        for n, layer in enumerate(manifest.layers):
            if not media_types.is_layer_type(layer.media_type):
                raise InvalidInputError(
                    f"{what}: layer {n} has media type {layer.media_type!r}, not a layer lamina"
                    " can unpack"
                )
            if not self._legacy_blobs and not self._files.exists(_blob_path(layer.digest)):
                raise NotFoundError(f"{what}: layer {n} blob {layer.digest} is missing")
        return diff_ids

    # -- docker save ------------------------------------------------------------------

    def _docker_entries(self) -> list[dict[str, Any]]:
        raw = read_small(self._files, "manifest.json", "manifest.json", MAX_DOCUMENT_BYTES)
        # The bounded decoder takes objects only; manifest.json is an array, so wrap it.
        doc = load_json_object(b'{"entries":' + raw + b"}", "manifest.json")
        entries = doc["entries"]
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise InvalidInputError("manifest.json: expected a list of objects")
        if len(entries) > _MAX_DOCKER_ENTRIES:
            raise InvalidInputError(f"manifest.json: {len(entries)} images is too many")
        return entries

    def _repo_tags(self, entry: dict[str, Any], what: str) -> list[Reference]:
        tags = entry.get("RepoTags") or []
        if not isinstance(tags, list):
            raise InvalidInputError(f"{what}: RepoTags must be a list")
        return [_reference(tag, f"{what} RepoTags") for tag in tags]

    def _add_docker_names(self) -> None:
        """Docker 25+ archives: names from manifest.json join the OCI images they tag."""
        by_config: dict[str, list[Reference]] = {}
        for n, entry in enumerate(self._docker_entries()):
            what = f"manifest.json entry {n}"
            match = _CONFIG_NAME.match(clean_path(entry.get("Config"), f"{what} Config"))
            if match:
                by_config.setdefault(f"sha256:{match.group(1)}", []).extend(
                    self._repo_tags(entry, what)
                )
        self._images = tuple(
            ArchiveImage(
                _unique([*image.names, *by_config.get(image.config_digest, [])]),
                image.manifest,
                image.manifest_bytes,
                image.config_bytes,
                image.diff_ids,
                image.synthesized,
                image.ref_name,
            )
            for image in self._images
        )

    def _load_docker(self) -> None:
        hashed: dict[str, tuple[str, int, str]] = {}
        images = []
        for n, entry in enumerate(self._docker_entries()):
            what = f"manifest.json entry {n}"
            config_path = clean_path(entry.get("Config"), f"{what} Config")
            config_bytes = read_small(
                self._files, config_path, f"{what} Config", MAX_DOCUMENT_BYTES
            )
            config_digest = sha256_digest(config_bytes)
            match = _CONFIG_NAME.match(config_path)
            if match and f"sha256:{match.group(1)}" != config_digest:
                raise DigestMismatchError(
                    f"{what} config {config_path!r}", f"sha256:{match.group(1)}", config_digest
                )
            raw_layers = entry.get("Layers")
            if not isinstance(raw_layers, list):
                raise InvalidInputError(f"{what}: Layers must be a list")
            config = ImageConfig.from_bytes(config_bytes, f"{what} config")
            if len(raw_layers) != len(config.diff_ids):
                raise InvalidInputError(
                    f"{what}: Layers lists {len(raw_layers)} files but the config lists"
                    f" {len(config.diff_ids)} diff_ids"
                )
            layers = []
            for k, (raw, diff_id) in enumerate(zip(raw_layers, config.diff_ids, strict=True)):
                path = clean_path(raw, f"{what} Layers[{k}]")
                if path not in hashed:
                    hashed[path] = self._layer_digest(path, diff_id, f"{what} Layers[{k}]")
                digest, size, media_type = hashed[path]
                # Two files claiming one digest: the first is read, and verified then.
                self._legacy_blobs.setdefault(digest, path)
                layers.append(Descriptor(media_type, digest, size))
            self._legacy_blobs.setdefault(config_digest, config_path)
            config_desc = Descriptor(media_types.OCI_CONFIG, config_digest, len(config_bytes))
            manifest = Manifest(config_desc, tuple(layers))
            images.append(
                ArchiveImage(
                    _unique(self._repo_tags(entry, what)),
                    manifest,
                    manifest.to_bytes(),
                    config_bytes,
                    config.diff_ids,
                    True,
                    "",
                )
            )
        self._images = tuple(images)


def _pick_platform(index: Index, what: str) -> Descriptor:
    arch = host_platform().architecture
    for desc in index.manifests:
        if desc.platform and desc.platform.os == "linux" and desc.platform.architecture == arch:
            return desc
    if len(index.manifests) == 1 and index.manifests[0].platform is None:
        return index.manifests[0]
    has = ", ".join(str(d.platform) for d in index.manifests if d.platform) or "no platforms"
    raise NotFoundError(f"{what}: no manifest for linux/{arch} (the index has {has})")


def open_archive(path: str | os.PathLike[str]) -> ArchiveReader:
    """Open a docker-archive or OCI layout (directory or tar) and list its images.

    Raises NotFoundError (no such path, a missing member or blob), InvalidInputError
    (not an archive, hostile content) or DigestMismatchError (content that is not what
    its digest says).
    """
    text = os.fspath(path)
    try:
        info = os.stat(text)
    except FileNotFoundError:
        raise NotFoundError(f"{text}: no such file or directory") from None
    files: Files
    if stat.S_ISDIR(info.st_mode):
        files, fmt = DirFiles(text), "oci-dir"
    elif stat.S_ISREG(info.st_mode):
        with open(text, "rb") as stream:
            head = stream.read(8)
        if sniff_compression(head) is not Compression.NONE:
            raise InvalidInputError(
                f"{text}: a compressed file, not a tar archive",
                hint="decompress it first (gunzip, zstd -d) and load the tar",
            )
        files, fmt = TarFiles(text), "oci-archive"
    else:
        raise InvalidInputError(f"{text}: neither a file nor a directory")
    reader = ArchiveReader(text, files, fmt)
    try:
        has_index = files.exists("index.json")
        has_docker = files.exists("manifest.json")
        if has_index:
            reader._load_oci()
            if has_docker:
                reader._add_docker_names()
                reader.format = "docker-archive" if fmt == "oci-archive" else fmt
        elif has_docker:
            reader._load_docker()
            reader.format = "docker-archive"
        else:
            raise InvalidInputError(
                f"{text}: neither an OCI layout (no index.json) nor a docker-archive"
                " (no manifest.json)"
            )
    except BaseException:
        reader.close()
        raise
    return reader
