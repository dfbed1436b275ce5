"""An OCI image layout (directory or tar) as an image source on the transport core."""

from __future__ import annotations

from types import TracebackType
from typing import BinaryIO, cast

from lamina.errors import InvalidInputError, NotFoundError
from lamina.oci import (
    MAX_DOCUMENT_BYTES,
    Descriptor,
    Index,
    Platform,
    Reference,
    check_digest,
    digest_hex,
    load_json_object,
)
from lamina.transport._core import (
    SourceImage,
    describe_image,
    names_from_annotations,
    select_manifest,
    unique,
)
from lamina.transport._members import Files, read_small, verified_slice


def _blob_path(digest: str) -> str:
    return f"blobs/sha256/{digest_hex(digest)}"


class OciLayoutSource:
    """An opened OCI layout: `index.json` → images; blobs read from `blobs/sha256/`.

    Nothing is extracted and nothing is written. Close it when done (it is a context
    manager); streams from `open_blob` must be read before that.
    """

    def __init__(self, path: str, files: Files, fmt: str, platform: Platform | None = None) -> None:
        self.path = path
        self.format = fmt
        self._files = files
        self._platform = platform
        self._images = self._load()

    def __enter__(self) -> OciLayoutSource:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._files.close()

    def images(self) -> tuple[SourceImage, ...]:
        """The images, in the order index.json lists them (one per manifest)."""
        return self._images

    def add_names(self, by_config: dict[str, list[Reference]]) -> None:
        """Names from elsewhere (a Docker 25+ manifest.json) join the images they tag."""
        self._images = tuple(
            SourceImage(
                unique([*image.names, *by_config.get(image.config_digest, [])]),
                image.manifest,
                image.manifest_bytes,
                image.config_bytes,
                image.diff_ids,
                image.synthesized,
                image.ref_name,
            )
            for image in self._images
        )

    def open_blob(
        self, descriptor: Descriptor, *, verify: bool = True, offset: int = 0
    ) -> BinaryIO:
        """A stream of the blob: at most `descriptor.size` bytes, digest checked at EOF."""
        digest = check_digest(descriptor.digest, "blob")
        piece = self._files.open_slice(_blob_path(digest), f"blob {digest}")
        return cast(
            BinaryIO,
            verified_slice(
                piece, digest, descriptor.size, f"blob {digest}", verify=verify, offset=offset
            ),
        )

    def _read_blob(self, descriptor: Descriptor, what: str) -> bytes:
        if descriptor.size > MAX_DOCUMENT_BYTES:
            raise InvalidInputError(
                f"{what}: {descriptor.size} bytes is more than the {MAX_DOCUMENT_BYTES} allowed"
            )
        piece = self._files.open_slice(_blob_path(descriptor.digest), what)
        with verified_slice(piece, descriptor.digest, descriptor.size, what) as blob:
            return blob.readall()

    def _load(self) -> tuple[SourceImage, ...]:
        files = self._files
        if files.exists("oci-layout"):
            layout = load_json_object(
                read_small(files, "oci-layout", "oci-layout", 4096), "oci-layout"
            )
            if not isinstance(layout.get("imageLayoutVersion"), str):
                raise InvalidInputError("oci-layout: imageLayoutVersion must be a string")
        raw = read_small(files, "index.json", "index.json", MAX_DOCUMENT_BYTES)
        index = Index.from_bytes(raw, "index.json")
        found: dict[str, SourceImage] = {}
        for n, top in enumerate(index.manifests):
            what = f"index.json manifest {n} ({top.digest})"
            names, ref_name = names_from_annotations(top.annotations, what)
            names = _tags_only(names, top.digest, what)
            desc, manifest, data = select_manifest(
                self._read_blob, top, self._read_blob(top, what), what, self._platform
            )
            earlier = found.get(desc.digest)
            if earlier is not None:
                found[desc.digest] = SourceImage(
                    unique([*earlier.names, *names]),
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
            image = describe_image(
                unique(names), data, config_bytes, what, manifest=manifest, ref_name=ref_name
            )
            for k, layer in enumerate(manifest.layers):
                if not files.exists(_blob_path(layer.digest)):
                    raise NotFoundError(f"{what}: layer {k} blob {layer.digest} is missing")
            found[desc.digest] = image
        return tuple(found.values())


def _tags_only(names: list[Reference], digest: str, what: str) -> list[Reference]:
    """The names an image is tagged with: a name's digest must be the entry's own (one
    naming other content is refused) and is dropped, as lamina's tags carry none."""
    kept = []
    for name in names:
        if name.digest:
            if name.digest != digest:
                raise InvalidInputError(f"{what}: image name {str(name)!r} names another digest")
            if not name.tag:
                continue
            name = Reference(name.domain, name.path, name.tag)
        kept.append(name)
    return kept
