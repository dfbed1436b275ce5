"""Image references, normalised as Docker normalises them.

`busybox` → `docker.io/library/busybox:latest`; `localhost:5000/a/b@sha256:…` keeps
its registry and digest. `familiar()` shows a reference back as Docker shows it.
"""

from __future__ import annotations

from lamina._frozen import Frozen
from lamina.errors import InvalidInputError
from lamina.oci._digest import check_digest, is_digest

DEFAULT_DOMAIN = "docker.io"
_LEGACY_DOMAIN = "index.docker.io"
_OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"

_MAX_NAME = 255

# Docker's grammar (distribution/reference), checked with str methods, not `re` (which
# `lamina run` would load only for this): tests/unit/oci/test_oci_reference.py holds the
# regular expressions these stand for and compares them on many strings. Whole strings and
# ASCII only, as Go's anchored regexps match: no trailing newline, no Unicode letter.
_LOWER_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_ALNUM = _LOWER_ALNUM | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_COMPONENT_CHARS = _LOWER_ALNUM | frozenset("._-")
# Separators between alphanumeric runs are ".", "_", "__" or dashes: any other run of them
# holds one of these.
_BAD_SEPARATORS = ("..", "._", "_.", ".-", "-.", "_-", "-_", "___")
_LABEL_CHARS = _ALNUM | frozenset("-")
_WORD = _ALNUM | frozenset("_")
_TAG_CHARS = _WORD | frozenset(".-")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:")
_DIGITS = frozenset("0123456789")


def _is_component(text: str) -> bool:
    """`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`: one path component of a repository."""
    return (
        text[:1] in _LOWER_ALNUM
        and text[-1:] in _LOWER_ALNUM
        and _COMPONENT_CHARS.issuperset(text)
        and not any(bad in text for bad in _BAD_SEPARATORS)
    )


def _is_tag(text: str) -> bool:
    r"""`[\w][\w.-]{0,127}`, `\w` in ASCII: `[a-zA-Z0-9_]`."""
    return 0 < len(text) <= 128 and text[0] in _WORD and _TAG_CHARS.issuperset(text)


def _is_label(text: str) -> bool:
    """`[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?`: one label of a host name."""
    return text[:1] in _ALNUM and text[-1:] in _ALNUM and _LABEL_CHARS.issuperset(text)


def _is_domain(text: str) -> bool:
    r"""`(?:LABEL(?:\.LABEL)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?`: a registry's host and port."""
    if text.startswith("["):
        close = text.find("]")
        host, port = text[1:close], text[close + 1 :]
        if close < 0 or not host or not _IPV6_CHARS.issuperset(host):
            return False
    else:
        host, colon, port = text.partition(":")
        port = colon + port
        if not all(_is_label(label) for label in host.split(".")):
            return False
    return not port or (port[0] == ":" and len(port) > 1 and _DIGITS.issuperset(port[1:]))


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
    if is_digest(f"sha256:{text}"):  # 64 lowercase hex digits
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
        if not _is_tag(tag):
            raise InvalidInputError(f"invalid reference format: bad tag {tag!r} in {text!r}")
    domain, path = _split_domain(rest)
    if not _is_domain(domain):
        raise InvalidInputError(f"invalid reference format: bad registry {domain!r} in {text!r}")
    for component in path.split("/"):
        if not _is_component(component):
            if component.lower() != component and _is_component(component.lower()):
                raise InvalidInputError(
                    f"invalid reference format: repository name ({path}) must be lowercase"
                )
            raise InvalidInputError(f"invalid reference format: bad name {rest!r} in {text!r}")
    if len(f"{domain}/{path}") > _MAX_NAME:
        raise InvalidInputError(f"invalid reference format: {text[:80]!r} is longer than 255")
    if not tag and not digest and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)
