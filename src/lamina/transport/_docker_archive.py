"""A docker-archive (`docker save`) as an image source on the transport core.

An image without an OCI manifest gets a synthesized one (`SourceImage.synthesized`):
layer digests are the sha256 of the layer files as stored, media types come from their
magic bytes.
"""

from __future__ import annotations

import re
from types import TracebackType
from typing import Any, BinaryIO, cast

from lamina.errors import DigestMismatchError, InvalidInputError, NotFoundError
from lamina.oci import (
    MAX_DOCUMENT_BYTES,
    Descriptor,
    ImageConfig,
    Manifest,
    Reference,
    check_digest,
    load_json_object,
    media_types,
    sha256_digest,
)
from lamina.transport._core import (
    SourceImage,
    describe_image,
    layer_media_type,
    reference_named,
    unique,
)
from lamina.transport._members import (
    Files,
    clean_path,
    hash_member,
    peek_member,
    read_small,
    verified_slice,
)

_MAX_DOCKER_ENTRIES = 1000
_CONFIG_NAME = re.compile(r"^(?:.*/)?([0-9a-f]{64})(?:\.json)?$")


def docker_entries(files: Files) -> list[dict[str, Any]]:
    """manifest.json's entries, bounded."""
    raw = read_small(files, "manifest.json", "manifest.json", MAX_DOCUMENT_BYTES)
    # The bounded decoder takes objects only; manifest.json is an array, so wrap it.
    doc = load_json_object(b'{"entries":' + raw + b"}", "manifest.json")
    entries = doc["entries"]
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InvalidInputError("manifest.json: expected a list of objects")
    if len(entries) > _MAX_DOCKER_ENTRIES:
        raise InvalidInputError(f"manifest.json: {len(entries)} images is too many")
    return entries


def _repo_tags(entry: dict[str, Any], what: str) -> list[Reference]:
    tags = entry.get("RepoTags") or []
    if not isinstance(tags, list):
        raise InvalidInputError(f"{what}: RepoTags must be a list")
    refs = [reference_named(tag, f"{what} RepoTags", default_tag=False) for tag in tags]
    for tag, ref in zip(tags, refs, strict=True):
        if not ref.tag or ref.digest:  # as docker load: a RepoTag is a name:tag, nothing else
            raise InvalidInputError(f"{what} RepoTags: invalid tag {tag!r}")
    return refs


def repo_tags_by_config(files: Files) -> dict[str, list[Reference]]:
    """Docker 25+ archives: manifest.json's RepoTags by config digest."""
    by_config: dict[str, list[Reference]] = {}
    for n, entry in enumerate(docker_entries(files)):
        what = f"manifest.json entry {n}"
        match = _CONFIG_NAME.match(clean_path(entry.get("Config"), f"{what} Config"))
        if match:
            by_config.setdefault(f"sha256:{match.group(1)}", []).extend(_repo_tags(entry, what))
    return by_config


class DockerArchiveSource:
    """An opened `docker save` archive: manifest.json → images; blobs are its files."""

    format = "docker-archive"

    def __init__(self, path: str, files: Files) -> None:
        self.path = path
        self._files = files
        self._blobs: dict[str, str] = {}  # digest → member path
        self._images = self._load()

    def __enter__(self) -> DockerArchiveSource:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._files.close()

    def images(self) -> tuple[SourceImage, ...]:
        return self._images

    def open_blob(
        self, descriptor: Descriptor, *, verify: bool = True, offset: int = 0
    ) -> BinaryIO:
        """A stream of the blob: at most `descriptor.size` bytes, digest checked at EOF."""
        digest = check_digest(descriptor.digest, "blob")
        path = self._blobs.get(digest)
        if path is None:
            raise NotFoundError(f"blob {digest}: not in {self._files.description}")
        piece = self._files.open_slice(path, f"blob {digest}")
        return cast(
            BinaryIO,
            verified_slice(
                piece, digest, descriptor.size, f"blob {digest}", verify=verify, offset=offset
            ),
        )

    def _layer_digest(self, path: str, diff_id: str, what: str) -> tuple[str, int, str]:
        """Digest, size and media type of a layer file.

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

    def _load(self) -> tuple[SourceImage, ...]:
        hashed: dict[str, tuple[str, int, str]] = {}
        images = []
        for n, entry in enumerate(docker_entries(self._files)):
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
                self._blobs.setdefault(digest, path)
                layers.append(Descriptor(media_type, digest, size))
            self._blobs.setdefault(config_digest, config_path)
            config_desc = Descriptor(media_types.OCI_CONFIG, config_digest, len(config_bytes))
            manifest = Manifest(config_desc, tuple(layers))
            images.append(
                describe_image(
                    unique(_repo_tags(entry, what)),
                    manifest.to_bytes(),
                    config_bytes,
                    what,
                    manifest=manifest,
                    synthesized=True,
                )
            )
        return tuple(images)
