"""The small core every image source implements, and the adapters shared by all of them.

As go-containerregistry's `partial` package: a source (an OCI layout, a docker-archive,
a registry) only has to provide, per image, the raw manifest, the raw config and blobs
by digest. Everything else is derived here, once, for every source:

- `describe_image`: the manifest decoded, the config's diff_ids checked against the
  layers (as many, each a layer type lamina can unpack) → a `SourceImage` value;
- `select_manifest`: an index followed down to one platform's manifest;
- blob streams bounded at their size and checked against their digest as they are
  read: `verified_slice` for an archive's blobs (the store's `VerifiedBlob`), and
  `VerifyingStream` for a registry's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from lamina.errors import DigestMismatchError, InvalidInputError, NotFoundError
from lamina.layers import Compression, sniff_compression
from lamina.oci import (
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    Reference,
    host_platform,
    load_json_object,
    media_types,
    parse_reference,
    sha256_digest,
)

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
MAX_INDEX_DEPTH = 4


def layer_media_type(head: bytes) -> str:
    """The OCI layer media type of a layer file whose first bytes are `head`."""
    compression = sniff_compression(head)
    if compression in (Compression.GZIP, Compression.ZSTD):
        return compression.media_type
    return media_types.OCI_LAYER


@dataclass(frozen=True)
class SourceImage:
    """One image of a source, as values; its blobs come from the source's `open_blob`.

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


ArchiveImage = SourceImage  # the name `load` has always used


class BlobSource(Protocol):
    """Blobs by descriptor, from an offset on (see `ImageSource.open_blob`)."""

    def open_blob(
        self, descriptor: Descriptor, *, verify: bool = True, offset: int = 0
    ) -> BinaryIO: ...


class ImageSource(BlobSource, Protocol):
    """Where images come from: the core every transport implements.

    `images()` lists the source's images as values (raw manifest and config included);
    `open_blob` streams one blob by descriptor, starting at `offset` (to resume a
    partial download), bounded at its size; with `verify` (and offset 0) the digest
    is checked at end of file, else the caller checks it (the store's writer does).
    """

    def images(self) -> tuple[SourceImage, ...]: ...

    def open_blob(
        self, descriptor: Descriptor, *, verify: bool = True, offset: int = 0
    ) -> BinaryIO: ...

    def close(self) -> None: ...


def describe_image(
    names: tuple[Reference, ...],
    manifest_bytes: bytes,
    config_bytes: bytes,
    what: str,
    *,
    manifest: Manifest | None = None,
    synthesized: bool = False,
    ref_name: str = "",
) -> SourceImage:
    """The adapter from raw manifest + raw config to a checked `SourceImage`.

    The config must be what the manifest names (digest), and list one diff_id per
    layer; every layer must be a type lamina can unpack.
    """
    if manifest is None:
        manifest = Manifest.from_bytes(manifest_bytes, what)
    actual = sha256_digest(config_bytes)
    if actual != manifest.config.digest:
        raise DigestMismatchError(f"{what} config", manifest.config.digest, actual)
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
    return SourceImage(
        names, manifest, manifest_bytes, config_bytes, diff_ids, synthesized, ref_name
    )


def media_type_of(data: bytes, declared: str, what: str) -> str:
    """A manifest or index's media type: as declared, else from its fields."""
    if declared:
        return declared
    doc: dict[str, Any] = load_json_object(data, what)
    if isinstance(doc.get("mediaType"), str) and doc["mediaType"]:
        return str(doc["mediaType"])
    return media_types.OCI_INDEX if "manifests" in doc else media_types.OCI_MANIFEST


def pick_platform(index: Index, what: str, want: Platform | None = None) -> Descriptor:
    """The index entry for `want` (default: this machine's), the best by containerd's
    order (`Platform.rank_for`: arm/v7 takes v7, then v6, then v5); NotFoundError naming
    the platforms the index has when none matches."""
    want = (want or host_platform()).normalized()
    ranked = [
        (rank, n)
        for n, desc in enumerate(index.manifests)
        if desc.platform and (rank := desc.platform.rank_for(want)) is not None
    ]
    if ranked:
        return index.manifests[min(ranked)[1]]  # the best; of equals, the first listed
    if len(index.manifests) == 1 and index.manifests[0].platform is None:
        return index.manifests[0]
    has = ", ".join(str(d.platform) for d in index.manifests if d.platform) or "no platforms"
    raise NotFoundError(
        f"{what}: no matching manifest for {want} in the manifest list entries"
        f" (the index has {has})",
        hint="choose one of those with --platform",
    )


def select_manifest(
    fetch: Callable[[Descriptor, str], bytes],
    top: Descriptor,
    data: bytes,
    what: str,
    want: Platform | None = None,
) -> tuple[Descriptor, Manifest, bytes]:
    """Follow `top` (whose bytes are `data`) down nested indexes to one manifest.

    `fetch(descriptor, what)` returns a child's verified bytes.
    """
    desc = top
    for depth in range(MAX_INDEX_DEPTH + 1):
        media_type = media_type_of(data, desc.media_type, what)
        if media_type in media_types.MANIFEST_TYPES:
            return desc, Manifest.from_bytes(data, what), data
        if media_type not in media_types.INDEX_TYPES:
            raise InvalidInputError(f"{what}: {media_type!r} is neither a manifest nor an index")
        if depth == MAX_INDEX_DEPTH:
            break
        desc = pick_platform(Index.from_bytes(data, what), what, want)
        what = f"{what} -> {desc.digest}"
        data = fetch(desc, what)
    raise InvalidInputError(f"{what}: indexes nested more than {MAX_INDEX_DEPTH} deep")


def names_from_annotations(
    annotations: Mapping[str, str], what: str
) -> tuple[list[Reference], str]:
    """An OCI layout entry's image names (containerd's, or a whole ref.name) and ref.name."""
    ref_name = annotations.get(ANNOTATION_REF_NAME, "")
    texts = []
    if full := annotations.get(ANNOTATION_IMAGE_NAME, ""):
        texts.append(full)
    elif "/" in ref_name or ":" in ref_name:
        texts.append(ref_name)  # a whole reference, not just a tag
    return [reference_named(text, what) for text in texts], ref_name


def reference_named(text: object, what: str, *, default_tag: bool = True) -> Reference:
    """`text` parsed as an image reference, errors naming `what`."""
    if not isinstance(text, str):
        raise InvalidInputError(f"{what}: image name {str(text)[:80]!r} is not a string")
    try:
        return parse_reference(text, default_tag=default_tag)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{what}: {exc.message}", exc.hint) from None


def unique(refs: list[Reference]) -> tuple[Reference, ...]:
    return tuple(dict.fromkeys(refs))
