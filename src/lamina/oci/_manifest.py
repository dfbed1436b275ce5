"""Descriptors, manifests and indexes: read from hostile bytes, written canonically."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from lamina.errors import InvalidInputError
from lamina.oci._digest import check_digest
from lamina.oci._json import dump_json, load_json_object
from lamina.oci._limits import MAX_LAYERS
from lamina.oci._mediatypes import (
    CONFIG_TYPES,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
)

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class Platform:
    """The platform an image in an index runs on."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    @classmethod
    def parse(cls, text: str) -> Platform:
        """`os/arch[/variant]`, `os` or `arch`, as `--platform` takes it, normalised as
        containerd's `platforms.Parse` does (`x86_64` is amd64, `arm` is arm/v7, `arm64`
        or `linux` alone means linux/arm64 or this machine's linux); ValueError when
        malformed."""
        parts = text.strip().lower().split("/")
        if not 1 <= len(parts) <= 3 or not all(p and _SPECIFIER.issuperset(p) for p in parts):
            raise ValueError(f"invalid platform {text!r}: want os/arch[/variant]")
        if len(parts) == 1:
            (word,) = parts
            if _OS_ALIASES.get(word, word) in _KNOWN_OS:
                return cls(_OS_ALIASES.get(word, word), *_host_arch())
            if _ARCH_ALIASES.get(word, (word, ""))[0] not in _KNOWN_ARCH:
                raise ValueError(
                    f"invalid platform {text!r}: unknown operating system or architecture"
                )
            parts = ["linux", word]
        return cls(*parts).normalized()

    def normalized(self) -> Platform:
        """The same platform in containerd's normal form: `macos` is darwin, `aarch64`
        arm64, arm64's `v8` no variant, a bare `arm` arm/v7, `7` v7."""
        os_name = _OS_ALIASES.get(self.os.lower(), self.os.lower())
        arch, variant = self.architecture.lower(), self.variant.lower()
        arch, implied = _ARCH_ALIASES.get(arch, (arch, ""))
        variant = variant or implied
        if variant.isdigit():
            variant = f"v{variant}"
        if (arch == "arm64" and variant in ("v8", "v8.0")) or (arch == "amd64" and variant == "v1"):
            variant = ""
        elif arch == "arm" and not variant:
            variant = "v7"
        return Platform(os_name, arch, variant)

    def rank_for(self, want: Platform) -> int | None:
        """How well an image for this platform serves `want`, as containerd matches them
        (both normalised first): None not at all, 0 the platform itself, n the n-th
        fallback. A variant is an instruction-set level that runs the levels below it:
        arm/v7 takes v7, then v6, then v5 (v6: v6, v5); amd64/v3 takes v3, v2, then v1.
        `want` without a variant takes any of its architecture's, the plain one first."""
        got, want = self.normalized(), want.normalized()
        if (got.os, got.architecture) != (want.os, want.architecture):
            return None
        if got.variant == want.variant:
            return 0
        if not want.variant:
            return 1
        lowest = _LOWEST_LEVEL.get(want.architecture)
        have, wanted = _level(got.variant), _level(want.variant)
        if lowest is None or have is None or wanted is None or not lowest <= have < wanted:
            return None
        return wanted - have

    def to_json(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out


# platform.machine() → (OCI architecture, variant), as Go's GOARCH/GOARM name them.
_MACHINES = {
    "x86_64": ("amd64", ""), "amd64": ("amd64", ""), "aarch64": ("arm64", ""),
    "arm64": ("arm64", ""), "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"),
    "i386": ("386", ""), "i686": ("386", ""), "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""), "riscv64": ("riscv64", ""),
}  # fmt: skip


# containerd's platform words (platforms/database.go): a component is [a-z0-9_-]+.
_SPECIFIER = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
_OS_ALIASES = {"macos": "darwin"}
_KNOWN_OS = frozenset((
    "aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js",
    "linux", "nacl", "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows", "zos",
))  # fmt: skip
_ARCH_ALIASES = {
    "i386": ("386", ""), "x86_64": ("amd64", ""), "x86-64": ("amd64", ""),
    "aarch64": ("arm64", ""), "armhf": ("arm", "v7"), "armel": ("arm", "v6"),
}  # fmt: skip
_KNOWN_ARCH = frozenset((
    "386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "loong64", "mips",
    "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc", "ppc64", "ppc64le",
    "riscv", "riscv64", "s390", "s390x", "sparc", "sparc64", "wasm",
))  # fmt: skip


# The lowest variant (instruction-set level) each levelled architecture runs: arm's v5,
# amd64's v1 (which `normalized` writes as no variant).
_LOWEST_LEVEL = {"arm": 5, "amd64": 1}


def _level(variant: str) -> int | None:
    """`vN` → N; no variant → 1 (amd64's baseline); anything else None."""
    if not variant:
        return 1
    number = variant[1:]
    return int(number) if variant[0] == "v" and number.isdigit() and len(number) < 4 else None


def _host_arch() -> tuple[str, str]:
    host = host_platform()
    return host.architecture, host.variant


def host_platform() -> Platform:
    """This machine's platform (linux/amd64 on x86_64), from ``platform.machine()``.

    A machine not in the table keeps its own name as the architecture: never a guess.
    """
    import platform as _host  # here: loading `platform` is a cost every command would pay

    machine = _host.machine().lower()
    arch, variant = _MACHINES.get(machine, (machine, ""))
    return Platform("linux", arch, variant)


@dataclass(frozen=True)
class Descriptor:
    """A pointer to content: what it is, its digest, its size."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    platform: Platform | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        return out

    @classmethod
    def from_json(cls, value: object, what: str) -> Descriptor:
        if not isinstance(value, dict):
            raise InvalidInputError(f"{what}: a descriptor must be a JSON object")
        media_type = value.get("mediaType", "")
        size = value.get("size")
        if not isinstance(media_type, str):
            raise InvalidInputError(f"{what}: mediaType must be a string")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInputError(f"{what}: size must be a non-negative integer, got {size!r}")
        digest = check_digest(value.get("digest"), f"{what} digest")
        platform = None
        raw_platform = value.get("platform")
        if isinstance(raw_platform, dict):
            platform = Platform(
                os=str(raw_platform.get("os", "")),
                architecture=str(raw_platform.get("architecture", "")),
                variant=str(raw_platform.get("variant", "")),
            )
        return cls(media_type, digest, size, _string_map(value.get("annotations"), what), platform)


def _string_map(value: object, what: str) -> Mapping[str, str]:
    if value is None:
        return _EMPTY
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidInputError(f"{what}: annotations must map strings to strings")
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class Manifest:
    """An image manifest: one config and the layers in order, bottom first."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: str = OCI_MANIFEST
    annotations: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "config": self.config.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_bytes(self) -> bytes:
        return dump_json(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "manifest") -> Manifest:
        doc = load_json_object(data, what)
        if doc.get("schemaVersion") != 2:
            raise InvalidInputError(f"{what}: schemaVersion must be 2")
        media_type = doc.get("mediaType", OCI_MANIFEST)
        if media_type not in MANIFEST_TYPES:
            raise InvalidInputError(f"{what}: {media_type!r} is not an image manifest type")
        config = Descriptor.from_json(doc.get("config"), f"{what} config")
        if config.media_type not in CONFIG_TYPES:
            raise InvalidInputError(
                f"{what}: config type {config.media_type!r} is not an image config"
            )
        raw_layers = doc.get("layers")
        if not isinstance(raw_layers, list):
            raise InvalidInputError(f"{what}: layers must be a list")
        if len(raw_layers) > MAX_LAYERS:
            raise InvalidInputError(f"{what}: {len(raw_layers)} layers is more than {MAX_LAYERS}")
        layers = tuple(
            Descriptor.from_json(item, f"{what} layer {n}") for n, item in enumerate(raw_layers)
        )
        return cls(config, layers, media_type, _string_map(doc.get("annotations"), what))


@dataclass(frozen=True)
class Index:
    """An image index (or Docker manifest list): manifests for several platforms or names."""

    manifests: tuple[Descriptor, ...]
    media_type: str = OCI_INDEX
    annotations: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "manifests": [m.to_json() for m in self.manifests],
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_bytes(self) -> bytes:
        return dump_json(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "index") -> Index:
        doc = load_json_object(data, what)
        if doc.get("schemaVersion") != 2:
            raise InvalidInputError(f"{what}: schemaVersion must be 2")
        media_type = doc.get("mediaType", OCI_INDEX)
        if media_type not in INDEX_TYPES:
            raise InvalidInputError(f"{what}: {media_type!r} is not an index type")
        raw = doc.get("manifests")
        if not isinstance(raw, list):
            raise InvalidInputError(f"{what}: manifests must be a list")
        if len(raw) > MAX_LAYERS:
            raise InvalidInputError(f"{what}: {len(raw)} manifests is too many")
        manifests = tuple(
            Descriptor.from_json(m, f"{what} manifest {n}") for n, m in enumerate(raw)
        )
        return cls(manifests, media_type, _string_map(doc.get("annotations"), what))
