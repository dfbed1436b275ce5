"""An image's names as Docker's reference store treats them, pure.

A name is a tag (`docker.io/library/busybox:latest`) or a repo digest
(`docker.io/library/busybox@sha256:…`), full as the store keeps them; Docker shows them
familiar (`busybox:latest`, `busybox@sha256:…`). The rules `rmi` follows are moby's
(daemon/images/image_delete.go):

- an image ID deletes without force only when its names are a *single reference*: at
  most one tag, and every repo digest in that tag's repository (`is_single_reference`);
- untagging a tag also removes the repo digests of its repository when no other tag of
  that repository is left (`removed_with`), so the image does not linger under them.
"""

from __future__ import annotations

from collections.abc import Sequence

from lamina.errors import InvalidInputError
from lamina.oci import Reference, parse_reference


def is_repo_digest(name: str) -> bool:
    return "@" in name


def _parsed(name: str) -> Reference:
    return parse_reference(name, default_tag=False)


def shown(name: str) -> str:
    """The name as Docker prints it (`busybox:latest`, `localhost:5000/a@sha256:…`)."""
    return _parsed(name).familiar()


def repository(name: str) -> str:
    """The full repository of a name, tag or digest dropped."""
    return _parsed(name).name


def familiar_digest(name: str) -> tuple[str, str]:
    """A stored repo digest (`repository@digest`) as Docker shows it: (repository, digest)."""
    ref = _parsed(name)
    return ref.familiar_name(), ref.digest


def repo_digest_name(text: str) -> str | None:
    """A user's `name[:tag]@digest` as the store keeps repo digests (`repository@digest`),
    or None when it is no such name."""
    try:
        ref = parse_reference(text)
    except InvalidInputError:
        return None
    return f"{ref.name}@{ref.digest}" if ref.digest else None


def sorted_names(names: Sequence[str]) -> list[str]:
    """In the order moby's reference store lists them: by their familiar string."""
    return sorted(names, key=shown)


def is_single_reference(names: Sequence[str]) -> bool:
    """moby's isSingleReference: at most one tag, and every repo digest in one repository,
    the tag's when there is one. False for no names at all."""
    if len(names) <= 1:
        return len(names) == 1
    tags = [n for n in names if not is_repo_digest(n)]
    if len(tags) > 1:
        return False
    digest_repositories = {repository(n) for n in names if is_repo_digest(n)}
    single = tags[0] if tags else names[0]
    return digest_repositories == {repository(single)}


def removed_with(name: str, names: Sequence[str]) -> list[str]:
    """What `rmi NAME` removes of an image's `names`: NAME itself and, when NAME is a tag
    and no other tag of its repository remains, that repository's repo digests."""
    gone = [name]
    if is_repo_digest(name):
        return gone
    repo = repository(name)
    others = [n for n in names if n != name and repository(n) == repo]
    if not any(not is_repo_digest(n) for n in others):
        gone += sorted_names(others)
    return gone
