"""Image sources and sinks: docker-archive (`docker save`), the OCI image layout, and
registries speaking the OCI distribution API.

The core (as go-containerregistry's `partial`): a source lists `SourceImage` values
(raw manifest, raw config, and what the shared adapters derive from them: manifest,
diff_ids, checked layer types) and opens blobs by descriptor, verified as they stream::

    with open_archive(path) as source:        # OciLayoutSource or DockerArchiveSource
        for image in source.images():         # SourceImage values
            image.names                       # tuple[Reference], normalised
            image.manifest, image.manifest_bytes, image.manifest_digest
            image.config_bytes, image.diff_ids
            for layer in image.manifest.layers:
                with source.open_blob(layer) as stream:   # verified while streaming
                    ...                       # DigestMismatchError at EOF if it lies


`describe_image`, `select_manifest` and `pick_platform` are the adapters every source
uses; `ImageSource` is the Protocol. A docker-archive image without an OCI manifest gets a
synthesized one (`image.synthesized`). Nothing is extracted or written by a source;
hostile paths, links out of the archive, duplicate members, missing blobs, wrong digests
and mismatched counts raise InvalidInputError / NotFoundError / DigestMismatchError.

Registries (OCI distribution API)::

    client = RegistryClient("127.0.0.1:5000")            # auth, retries, Retry-After
    source = RegistrySource(client, ref, platform)       # the same core as an archive
    push_image(client, repo, tag, manifest_bytes, media_type, locations, open_at)

A build cache travels as BuildKit's cache manifest (`encode_cache`, `decode_cache`).

Credentials come from Docker's config.json (`load_credentials`; `save_credentials`
and `erase_credentials` for login/logout) and are never printed.

Writing (`lamina save`)::

    with atomic_output("out.tar") as out:     # temp file beside, renamed at the end
        write_docker_archive(out, images, blobs)   # or write_oci_archive(out, ...)
    write_oci_layout_dir("dir", images, blobs)     # built beside, renamed into place

`images` are `SaveImage` values; `blobs` is any `BlobProvider` (`open_blob(digest)`,
`blob_size(digest)`), e.g. the store. Output is deterministic (sorted, owner 0:0,
mtime 0 or SOURCE_DATE_EPOCH).
"""

from typing import TYPE_CHECKING

from lamina._lazy import lazy_names

# Every name loads on first use: a save needs the writer and a layer's way out, not the
# archive readers, the unpacking code or the registry (httpx costs a `load` or `save` a few
# tenths of a second), and each module is a file a cold command reads from disk.
_LAZY = {
    "CACHE_CONFIG_MEDIA_TYPE": "_buildkit_cache",
    "CacheEntry": "_buildkit_cache",
    "CacheLayer": "_buildkit_cache",
    "cache_manifest_parts": "_buildkit_cache",
    "decode_cache": "_buildkit_cache",
    "encode_cache": "_buildkit_cache",
    "parse_cache_option": "_buildkit_cache",
    "ANNOTATION_IMAGE_NAME": "_core",
    "ANNOTATION_REF_NAME": "_core",
    "ArchiveImage": "_core",
    "BlobSource": "_core",
    "ImageSource": "_core",
    "SourceImage": "_core",
    "describe_image": "_core",
    "pick_platform": "_core",
    "select_manifest": "_core",
    "Credentials": "_credentials",
    "config_dir": "_credentials",
    "erase_credentials": "_credentials",
    "load_credentials": "_credentials",
    "registry_host": "_credentials",
    "save_credentials": "_credentials",
    "DockerArchiveSource": "_docker_archive",
    "DEFAULT_MAX_LAYER_RATIO": "_lean",
    "DEFAULT_MAX_LAYER_SIZE": "_lean",
    "LayerLimits": "_lean",
    "commit_changes_layer": "_lean",
    "commit_copy_layer": "_lean",
    "commit_dir_layer": "_lean",
    "ensure_layers": "_lean",
    "ingest_layer": "_lean",
    "migrate_layers": "_lean",
    "parse_size": "_lean",
    "unpack_blob": "_lean",
    "unpack_layer": "_lean",
    "unpack_tar_layer": "_lean",
    "OciLayoutSource": "_oci_layout",
    "LayerBlob": "_outgoing",
    "digest_changed_note": "_outgoing",
    "layer_blob": "_outgoing",
    "open_layer_tar": "_outgoing",
    "verify_layer": "_outgoing",
    "ArchiveReader": "_reader",
    "open_archive": "_reader",
    "BlobProvider": "_writer",
    "SaveImage": "_writer",
    "atomic_output": "_writer",
    "write_docker_archive": "_writer",
    "write_oci_archive": "_writer",
    "write_oci_layout_dir": "_writer",
    "BlobLocations": "_registry_sink",
    "BlobStream": "_registry_source",
    "PushReport": "_registry_sink",
    "RegistryAuth": "_registry_client",
    "RegistryBlobs": "_registry_source",
    "RegistryClient": "_registry_client",
    "RegistryError": "_registry_client",
    "RegistrySource": "_registry_source",
    "fetch_manifest": "_registry_source",
    "list_tags": "_registry_source",
    "is_loopback": "_registry_client",
    "parse_challenge": "_registry_client",
    "parse_retry_after": "_registry_client",
    "push_image": "_registry_sink",
}

if TYPE_CHECKING:
    from lamina.transport._buildkit_cache import (
        CACHE_CONFIG_MEDIA_TYPE,
        CacheEntry,
        CacheLayer,
        cache_manifest_parts,
        decode_cache,
        encode_cache,
        parse_cache_option,
    )
    from lamina.transport._core import (
        ANNOTATION_IMAGE_NAME,
        ANNOTATION_REF_NAME,
        ArchiveImage,
        BlobSource,
        ImageSource,
        SourceImage,
        describe_image,
        pick_platform,
        select_manifest,
    )
    from lamina.transport._credentials import (
        Credentials,
        config_dir,
        erase_credentials,
        load_credentials,
        registry_host,
        save_credentials,
    )
    from lamina.transport._docker_archive import (
        DockerArchiveSource,
    )
    from lamina.transport._lean import (
        DEFAULT_MAX_LAYER_RATIO,
        DEFAULT_MAX_LAYER_SIZE,
        LayerLimits,
        commit_changes_layer,
        commit_copy_layer,
        commit_dir_layer,
        ensure_layers,
        ingest_layer,
        migrate_layers,
        parse_size,
        unpack_blob,
        unpack_layer,
        unpack_tar_layer,
    )
    from lamina.transport._oci_layout import (
        OciLayoutSource,
    )
    from lamina.transport._outgoing import (
        LayerBlob,
        digest_changed_note,
        layer_blob,
        open_layer_tar,
        verify_layer,
    )
    from lamina.transport._reader import (
        ArchiveReader,
        open_archive,
    )
    from lamina.transport._registry_client import (
        RegistryAuth,
        RegistryClient,
        RegistryError,
        is_loopback,
        parse_challenge,
        parse_retry_after,
    )
    from lamina.transport._registry_sink import BlobLocations, PushReport, push_image
    from lamina.transport._registry_source import (
        BlobStream,
        RegistryBlobs,
        RegistrySource,
        fetch_manifest,
        list_tags,
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
    "CACHE_CONFIG_MEDIA_TYPE",
    "DEFAULT_MAX_LAYER_RATIO",
    "DEFAULT_MAX_LAYER_SIZE",
    "LayerBlob",
    "LayerLimits",
    "commit_changes_layer",
    "commit_copy_layer",
    "commit_dir_layer",
    "ensure_layers",
    "ingest_layer",
    "digest_changed_note",
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
    "BlobLocations",
    "BlobProvider",
    "BlobSource",
    "BlobStream",
    "CacheEntry",
    "CacheLayer",
    "Credentials",
    "DockerArchiveSource",
    "ImageSource",
    "OciLayoutSource",
    "PushReport",
    "RegistryAuth",
    "RegistryBlobs",
    "RegistryClient",
    "RegistryError",
    "RegistrySource",
    "SaveImage",
    "SourceImage",
    "atomic_output",
    "cache_manifest_parts",
    "config_dir",
    "erase_credentials",
    "fetch_manifest",
    "decode_cache",
    "describe_image",
    "encode_cache",
    "is_loopback",
    "list_tags",
    "load_credentials",
    "open_archive",
    "parse_cache_option",
    "parse_challenge",
    "parse_retry_after",
    "pick_platform",
    "push_image",
    "registry_host",
    "save_credentials",
    "select_manifest",
    "write_docker_archive",
    "write_oci_archive",
    "write_oci_layout_dir",
]

__getattr__, __dir__ = lazy_names(
    __name__,
    {name: f"{__name__}.{module}" for name, module in _LAZY.items()},
    __all__,
    globals(),
)
