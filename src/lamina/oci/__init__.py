"""Pure data of the OCI image model: digests, media types, descriptors, manifests,
indexes, configs and references. Nothing here does I/O.

- digests: `check_digest`, `sha256_digest`, `chain_id`, `short_id`
- `Descriptor`, `Manifest`, `Index`, `Platform`: decoded from hostile bytes with bounds
  (`from_bytes`), encoded canonically (`to_bytes`: same value, same digest)
- `ImageConfig` + `History`: the image config, changed by `with_*` copies
- `parse_reference` → `Reference`: Docker's normalisation and familiar form
"""

from lamina._lazy import lazy_names
from lamina.oci import _mediatypes as media_types

TYPE_CHECKING = False  # not typing's: `lamina run` does without typing
if TYPE_CHECKING:
    from lamina.oci._config import History, ImageConfig
    from lamina.oci._digest import (
        chain_id,
        check_digest,
        digest_hex,
        is_digest,
        sha256_digest,
        short_id,
    )
    from lamina.oci._json import dump_json, load_json_object
    from lamina.oci._limits import (
        DEFAULT_MAX_LAYER_BYTES,
        MAX_DOCKERFILE_BYTES,
        MAX_DOCUMENT_BYTES,
        MAX_IGNORE_BYTES,
        MAX_OCI_LAYOUT_BYTES,
        MAX_PASSWD_BYTES,
    )
    from lamina.oci._manifest import Descriptor, Index, Manifest, Platform, host_platform
    from lamina.oci._reference import Reference, parse_reference
    from lamina.oci._time import human_duration, parse_rfc3339, split_ns

# Each name loads its own module on first use: `lamina run` needs a digest check and a
# reference, not the manifest and config models (and their dataclasses).
_LAZY = {
    "History": "lamina.oci._config",
    "ImageConfig": "lamina.oci._config",
    "chain_id": "lamina.oci._digest",
    "check_digest": "lamina.oci._digest",
    "digest_hex": "lamina.oci._digest",
    "is_digest": "lamina.oci._digest",
    "sha256_digest": "lamina.oci._digest",
    "short_id": "lamina.oci._digest",
    "dump_json": "lamina.oci._json",
    "load_json_object": "lamina.oci._json",
    "DEFAULT_MAX_LAYER_BYTES": "lamina.oci._limits",
    "MAX_DOCKERFILE_BYTES": "lamina.oci._limits",
    "MAX_DOCUMENT_BYTES": "lamina.oci._limits",
    "MAX_IGNORE_BYTES": "lamina.oci._limits",
    "MAX_OCI_LAYOUT_BYTES": "lamina.oci._limits",
    "MAX_PASSWD_BYTES": "lamina.oci._limits",
    "Descriptor": "lamina.oci._manifest",
    "Index": "lamina.oci._manifest",
    "Manifest": "lamina.oci._manifest",
    "Platform": "lamina.oci._manifest",
    "host_platform": "lamina.oci._manifest",
    "Reference": "lamina.oci._reference",
    "parse_reference": "lamina.oci._reference",
    "human_duration": "lamina.oci._time",
    "parse_rfc3339": "lamina.oci._time",
    "split_ns": "lamina.oci._time",
}

__all__ = [
    "human_duration",
    "DEFAULT_MAX_LAYER_BYTES",
    "MAX_DOCKERFILE_BYTES",
    "MAX_DOCUMENT_BYTES",
    "MAX_IGNORE_BYTES",
    "MAX_OCI_LAYOUT_BYTES",
    "MAX_PASSWD_BYTES",
    "Descriptor",
    "History",
    "ImageConfig",
    "Index",
    "Manifest",
    "Platform",
    "Reference",
    "chain_id",
    "check_digest",
    "digest_hex",
    "dump_json",
    "host_platform",
    "is_digest",
    "load_json_object",
    "media_types",
    "parse_reference",
    "parse_rfc3339",
    "split_ns",
    "sha256_digest",
    "short_id",
]


__getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__, globals())
