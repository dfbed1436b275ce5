"""Image sources and sinks on disk: docker-archive (`docker save`) and the OCI image layout.

Reading (`lamina load -i FILE`)::

    with open_archive(path) as archive:       # detects docker-archive / oci-archive / oci-dir
        for image in archive.images():        # ArchiveImage values
            image.names                       # tuple[Reference], normalised
            image.manifest, image.manifest_bytes, image.manifest_digest
            image.config_bytes                # checked against the config digest
            image.diff_ids                    # from the config; as many as the layers
            for layer in image.manifest.layers:
                with archive.open_blob(layer) as stream:   # verified while streaming
                    ...                       # DigestMismatchError at EOF if it lies

A docker-archive image without an OCI manifest gets a synthesized one
(`image.synthesized`): layer digests are the sha256 of the layer files as stored, media
types come from their magic bytes. Archives that are both (Docker 25+) are read through
their OCI index, with manifest.json's RepoTags added to the names. Nested indexes resolve
to this machine's linux/<arch> manifest. Nothing is extracted or written; hostile paths,
links out of the archive, duplicate members, missing blobs, wrong digests and mismatched
counts raise InvalidInputError / NotFoundError / DigestMismatchError.

Writing (`lamina save`)::

    with atomic_output("out.tar") as out:     # temp file beside, renamed at the end
        write_docker_archive(out, images, blobs)   # or write_oci_archive(out, ...)
    write_oci_layout_dir("dir", images, blobs)     # built beside, renamed into place

`images` are `SaveImage` values; `blobs` is any `BlobProvider` (`open_blob(digest)`,
`blob_size(digest)`), e.g. the store. Output is deterministic (sorted, owner 0:0,
mtime 0 or SOURCE_DATE_EPOCH).
"""

from lamina.transport._lean import (
    DEFAULT_MAX_LAYER_RATIO,
    DEFAULT_MAX_LAYER_SIZE,
    LayerBlob,
    LayerLimits,
    commit_changes_layer,
    commit_copy_layer,
    commit_dir_layer,
    ensure_layers,
    ingest_layer,
    layer_blob,
    migrate_layers,
    open_layer_tar,
    parse_size,
    unpack_blob,
    unpack_layer,
    unpack_tar_layer,
    verify_layer,
)
from lamina.transport._reader import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    ArchiveImage,
    ArchiveReader,
    ImageSource,
    open_archive,
)
from lamina.transport._writer import (
    BlobProvider,
    SaveImage,
    atomic_output,
    write_docker_archive,
    write_oci_archive,
    write_oci_layout_dir,
)

__all__ = [
    "DEFAULT_MAX_LAYER_RATIO",
    "DEFAULT_MAX_LAYER_SIZE",
    "LayerBlob",
    "LayerLimits",
    "commit_changes_layer",
    "commit_copy_layer",
    "commit_dir_layer",
    "ensure_layers",
    "ingest_layer",
    "layer_blob",
    "migrate_layers",
    "open_layer_tar",
    "parse_size",
    "unpack_blob",
    "unpack_layer",
    "unpack_tar_layer",
    "verify_layer",
    "ANNOTATION_IMAGE_NAME",
    "ANNOTATION_REF_NAME",
    "ArchiveImage",
    "ArchiveReader",
    "BlobProvider",
    "ImageSource",
    "SaveImage",
    "atomic_output",
    "open_archive",
    "write_docker_archive",
    "write_oci_archive",
    "write_oci_layout_dir",
]
