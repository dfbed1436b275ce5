"""Size caps for hostile input, in one place: every reader bounds what it reads by one
of these before it allocates anything."""

from __future__ import annotations

MiB = 1 << 20

# JSON documents: manifests, indexes, configs, a docker-archive's manifest.json.
MAX_DOCUMENT_BYTES = 8 * MiB
# An OCI layout's `oci-layout` file ({"imageLayoutVersion": "1.0.0"}).
MAX_OCI_LAYOUT_BYTES = 4096
# A Dockerfile, and a .dockerignore (BuildKit has no cap; these are generous).
MAX_DOCKERFILE_BYTES = 16 * MiB
MAX_IGNORE_BYTES = 4 * MiB
# An image's /etc/passwd or /etc/group, read to resolve USER.
MAX_PASSWD_BYTES = 16 * MiB
# One layer, uncompressed, when loading or saving (Lamina(max_layer_bytes=) overrides).
DEFAULT_MAX_LAYER_BYTES = 64 << 30
# Layers in one image (manifest or config).
MAX_LAYERS = 1000
