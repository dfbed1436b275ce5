"""Repo digests in the store: recorded with the image, found by `resolve`, a name that
keeps an image from prune, removed with the image in the same transaction."""

from __future__ import annotations

import sqlite3

import pytest
from store_helpers import MANIFEST_TYPE, add_image, put_layer

from lamina.errors import ConflictError, InvalidInputError, NotFoundError
from lamina.oci import sha256_digest
from lamina.store import Store

REGISTRY_DIGEST = sha256_digest(b"the manifest as the registry has it")
NAME = f"127.0.0.1:5000/app@{REGISTRY_DIGEST}"


def _pulled(store: Store, content: bytes = b"l", name: str = NAME) -> str:
    """An image recorded as a pull by digest records it: no tag, one repo digest."""
    digest = add_image(store, [put_layer(store, content)], config=content)
    image = store.get_image(digest)
    store.add_image(image.digest, image.config_digest, image.layers,
                    media_type=MANIFEST_TYPE, repo_digests=[name])  # fmt: skip
    return str(digest)


def _rows(store: Store) -> list[tuple[str, str, str]]:
    db = sqlite3.connect(store.root / "metadata.db")
    try:
        return db.execute("SELECT repository, digest, image FROM repo_digests").fetchall()
    finally:
        db.close()


def test_a_repo_digest_is_recorded_with_the_image_and_resolves_to_it(store: Store) -> None:
    digest = _pulled(store)
    image = store.get_image(digest)
    assert (image.tags, image.repo_digests, image.names) == ((), (NAME,), (NAME,))
    assert store.resolve(NAME).digest == digest  # REGISTRY_DIGEST is no image's digest
    assert store.repo_digests.find(NAME) == digest
    assert store.list_images()[0].repo_digests == (NAME,)


def test_an_image_named_only_by_a_repo_digest_is_not_dangling(store: Store) -> None:
    digest = _pulled(store)
    dangling = add_image(store, [put_layer(store, b"other")], config=b"other")
    report = store.prune()
    assert report.images_removed == (dangling,)
    assert store.get_image(digest).repo_digests == (NAME,)
    assert store.disk_usage().reclaimable_size == 0  # nothing prune would take
    assert store.repo_digests.remove(NAME) == digest
    assert store.prune().images_removed == (digest,)
    assert _rows(store) == []


def test_removing_the_image_removes_its_repo_digests(store: Store) -> None:
    digest = _pulled(store)
    with pytest.raises(ConflictError, match="is tagged"):  # a name: refused without force
        store.remove_image(digest)
    assert _rows(store) == [("127.0.0.1:5000/app", REGISTRY_DIGEST, digest)]
    store.remove_image(digest, force=True)
    assert _rows(store) == []
    assert store.repo_digests.find(NAME) is None
    with pytest.raises(NotFoundError):
        store.resolve(NAME)


def test_a_later_pull_of_the_same_name_moves_it(store: Store) -> None:
    first = _pulled(store, b"one")
    second = _pulled(store, b"two")
    assert store.repo_digests.find(NAME) == second
    assert store.get_image(first).repo_digests == ()
    assert store.prune().images_removed == (first,)


def test_add_needs_the_image_and_a_well_formed_name(store: Store) -> None:
    digest = add_image(store, [put_layer(store, b"l")])
    with pytest.raises(NotFoundError, match="not in the store"):
        store.repo_digests.add(NAME, sha256_digest(b"no such image"))
    for bad in ("app", f"app@{REGISTRY_DIGEST[:20]}", f"@{REGISTRY_DIGEST}",
                f"a b@{REGISTRY_DIGEST}", f"a@b@{REGISTRY_DIGEST}"):  # fmt: skip
        with pytest.raises(InvalidInputError):
            store.repo_digests.add(bad, digest)
        with pytest.raises(InvalidInputError):
            store.add_image(digest, store.get_image(digest).config_digest, [],
                            media_type=MANIFEST_TYPE, repo_digests=[bad])  # fmt: skip
        assert store.repo_digests.find(bad) is None
    assert _rows(store) == []
    store.repo_digests.add(NAME, digest)
    assert store.get_image(digest).repo_digests == (NAME,)


def test_an_unrecorded_name_at_digest_still_finds_the_image_by_its_manifest_digest(
    store: Store,
) -> None:
    digest = add_image(store, [put_layer(store, b"l")], tags=["docker.io/library/a:1"])
    assert store.resolve(f"docker.io/library/a@{digest}").digest == digest
    with pytest.raises(NotFoundError):
        store.resolve(f"docker.io/library/a@{REGISTRY_DIGEST}")
