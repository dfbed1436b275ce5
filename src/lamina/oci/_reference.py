"""Image references, normalised as Docker normalises them.

`busybox` → `docker.io/library/busybox:latest`; `localhost:5000/a/b@sha256:…` keeps
its registry and digest. `familiar()` shows a reference back as Docker shows it.
"""

from __future__ import annotations

import re

from lamina._frozen import Frozen
from lamina.errors import InvalidInputError
from lamina.oci._digest import check_digest

DEFAULT_DOMAIN = "docker.io"
_LEGACY_DOMAIN = "index.docker.io"
_OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"

# All used with fullmatch and ASCII, as Go's anchored regexps are: `$` would let a
# trailing newline through, and a Unicode `\w` or `[0-9]` would take letters Docker refuses.
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", re.ASCII)
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?",
    re.ASCII,
)
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_MAX_NAME = 255


class Reference(Frozen):
    """A normalised image reference: registry domain, repository path, tag and/or digest.
    Read-only. (Not a dataclass: `lamina run` parses one; see `lamina._frozen`.)"""

    _fields = __slots__ = ("domain", "path", "tag", "digest")
    domain: str
    path: str
    tag: str
    digest: str

    def __init__(self, domain: str, path: str, tag: str = "", digest: str = "") -> None:
        self._set(domain=domain, path=path, tag=tag, digest=digest)

    @property
    def name(self) -> str:
        """The full repository name, `docker.io/library/busybox`."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def familiar_name(self) -> str:
        """The repository as Docker shows it: `busybox`, `me/app`, `localhost:5000/app`."""
        if self.domain == DEFAULT_DOMAIN:
            path = self.path
            if path.startswith(_OFFICIAL_PREFIX) and path.count("/") == 1:
                path = path[len(_OFFICIAL_PREFIX) :]
            return path
        return self.name

    def familiar(self) -> str:
        """The whole reference as Docker shows it: `busybox:latest`."""
        out = self.familiar_name()
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain == _LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = _OFFICIAL_PREFIX + path
    return domain, path


def parse_reference(text: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalise `text`; `latest` is added when neither tag nor digest is given.

    Raises InvalidInputError naming what is wrong, as `docker tag` would refuse it.
    """
    if not text or len(text) > 1024:
        raise InvalidInputError(f"invalid reference format: {text[:80]!r}")
    if re.fullmatch(r"[0-9a-f]{64}", text, re.ASCII):
        raise InvalidInputError(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings",
            hint="use the ID without a name, or give a repository name",
        )
    rest, at, digest = text.partition("@")
    if at and not digest:
        raise InvalidInputError(f"invalid reference format: no digest after '@' in {text!r}")
    if digest:
        check_digest(digest, f"reference {text!r}")
    tag = ""
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise InvalidInputError(f"invalid reference format: bad tag {tag!r} in {text!r}")
    domain, path = _split_domain(rest)
    if not _DOMAIN.fullmatch(domain):
        raise InvalidInputError(f"invalid reference format: bad registry {domain!r} in {text!r}")
    for component in path.split("/"):
        if not _COMPONENT.fullmatch(component):
            if component.lower() != component and _COMPONENT.fullmatch(component.lower()):
                raise InvalidInputError(
                    f"invalid reference format: repository name ({path}) must be lowercase"
                )
            raise InvalidInputError(f"invalid reference format: bad name {rest!r} in {text!r}")
    if len(f"{domain}/{path}") > _MAX_NAME:
        raise InvalidInputError(f"invalid reference format: {text[:80]!r} is longer than 255")
    if not tag and not digest and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)
