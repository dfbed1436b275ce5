"""Digests: `sha256:<64 hex>`, the names of all content."""

from __future__ import annotations

from lamina.errors import InvalidInputError

_HEX = frozenset("0123456789abcdef")


def is_digest(value: str) -> bool:
    """Whether `value` is a well-formed sha256 digest: `sha256:` and 64 lowercase hex digits,
    nothing else (no `re`: `lamina run` checks digests and loads no regex machinery)."""
    return len(value) == 71 and value.startswith("sha256:") and _HEX.issuperset(value[7:])


def check_digest(value: object, what: str = "digest") -> str:
    """Return `value` if it is a well-formed sha256 digest; raise InvalidInputError otherwise.

    Only sha256 is accepted: a digest also names a file, so its shape must be exact
    before it ever reaches a path.
    """
    if not isinstance(value, str) or not is_digest(value):
        shown = repr(value)[:100]
        raise InvalidInputError(f"{what}: {shown} is not a sha256 digest (sha256:<64 hex digits>)")
    return value


def digest_hex(digest: str) -> str:
    """The hex part of a checked digest."""
    return check_digest(digest)[len("sha256:") :]


def sha256_digest(data: bytes) -> str:
    """The digest of `data`."""
    import hashlib  # (loads OpenSSL: only where something is hashed)

    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_id(diff_ids: list[str]) -> str:
    """Identity of a layer stack.

    chain(L1) = diff_id(L1); chain(L1..Ln) = sha256(chain(L1..Ln-1) + " " + diff_id(Ln)).
    """
    if not diff_ids:
        raise InvalidInputError("chain_id of an empty layer stack")
    chain = check_digest(diff_ids[0], "diff_id")
    for diff_id in diff_ids[1:]:
        chain = sha256_digest(f"{chain} {check_digest(diff_id, 'diff_id')}".encode())
    return chain


def short_id(digest: str, length: int = 12) -> str:
    """Docker's short form of an ID: the first `length` hex digits."""
    return digest.split(":", 1)[-1][:length]
