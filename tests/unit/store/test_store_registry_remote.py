"""Lazy layers (a registry holds their blob) and bearer tokens in the metadata db."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest
from store_helpers import LAYER_TYPE, add_image

from lamina.errors import NotFoundError
from lamina.oci import sha256_digest
from lamina.store import LayerRecord, Lease, RemoteLayer, Store


def _lazy(store: Store, name: bytes, repository: str = "team/app") -> LayerRecord:
    """A layer recorded only as a blob that registry 'reg:5000' holds."""
    digest, diff_id = sha256_digest(b"blob:" + name), sha256_digest(b"tar:" + name)
    store.registry.remember_layers(
        [RemoteLayer(diff_id, "reg:5000", repository, digest, 10, LAYER_TYPE)]
    )
    return LayerRecord(digest, diff_id, LAYER_TYPE, 10)


def test_an_image_of_lazy_layers_is_recorded_checked_and_kept_without_their_bytes(
    store: Store,
) -> None:
    layer = _lazy(store, b"a")
    assert store.is_remote(layer.diff_id) and not store.has_layer(layer.diff_id)
    image = add_image(store, [layer], tags=["app:1"])
    assert store.get_image(image).layers[0].diff_id == layer.diff_id
    assert store.fsck().ok
    store.prune()
    assert store.is_remote(layer.diff_id) and store.fsck().ok
    store.untag("app:1")
    store.prune()
    # Nothing holds the layer any more: where it lived is forgotten with it.
    assert store.registry.remote_layers(layer.diff_id) == []


def test_a_layer_no_registry_holds_is_still_refused(store: Store) -> None:
    missing = LayerRecord(sha256_digest(b"x"), sha256_digest(b"y"), LAYER_TYPE, 1)
    with pytest.raises(NotFoundError, match="not in the content store"):
        add_image(store, [missing])


def test_a_cache_record_may_hold_a_lazy_layer(store: Store) -> None:
    layer = _lazy(store, b"c")
    store.put_cache("sha256:" + "1" * 64, {"layer": None}, snapshots=[layer.diff_id])
    assert store.fsck().ok
    with pytest.raises(NotFoundError):
        store.put_cache("sha256:" + "2" * 64, {}, snapshots=[sha256_digest(b"unknown")])


def test_fetch_remote_asks_the_fetcher_for_the_lazy_layers_only(store: Store) -> None:
    lazy = _lazy(store, b"f")
    blob = store.content.put_bytes(b"kept blob")
    kept = LayerRecord(blob.digest, sha256_digest(b"k"), LAYER_TYPE, blob.size)
    unknown = LayerRecord(sha256_digest(b"u"), sha256_digest(b"v"), LAYER_TYPE, 1)
    with store.lease() as lease:
        with pytest.raises(NotFoundError, match="reg:5000/team/app"):
            store.fetch_remote([lazy], lease)  # no fetcher: says where the layer is
        asked: list[list[str]] = []

        def fetcher(layers: Sequence[LayerRecord], held: Lease) -> None:
            asked.append([layer.diff_id for layer in layers])

        store.remote_fetcher = fetcher
        store.fetch_remote([kept, lazy, unknown], lease)
    assert asked == [[lazy.diff_id]]


def test_remote_layers_newest_first_and_by_registry(store: Store) -> None:
    layer = _lazy(store, b"r", "old/repo")
    time.sleep(0.01)
    store.registry.remember_layers(
        [RemoteLayer(layer.diff_id, "other:1", "new/repo", layer.digest, 10, LAYER_TYPE)]
    )
    assert [r.where() for r in store.registry.remote_layers(layer.diff_id)] == [
        "other:1/new/repo",
        "reg:5000/old/repo",
    ]
    assert [r.repository for r in store.registry.remote_layers(layer.diff_id, "reg:5000")] == [
        "old/repo"
    ]
    blob = store.registry.remote_blob(layer.digest)
    assert blob is not None and blob.registry == "other:1"
    assert store.registry.remote_blob(sha256_digest(b"none")) is None


def test_bearer_tokens_are_kept_until_they_expire(store: Store) -> None:
    registry = store.registry
    registry.save_token("reg:5000", "bob", "repository:a:pull", "tok-1", time.time() + 60)
    registry.save_token("reg:5000", "", "repository:a:pull", "tok-anon", time.time() + 60)
    registry.save_token("reg:5000", "bob", "repository:b:pull", "old", time.time() - 1)
    found = registry.token("reg:5000", "bob", "repository:a:pull")
    assert found is not None and found[0] == "tok-1"
    assert registry.token("reg:5000", "alice", "repository:a:pull") is None  # per account
    assert registry.token("reg:5000", "bob", "repository:b:pull") is None  # expired
    registry.forget_token("reg:5000", "bob", "repository:a:pull")
    assert registry.token("reg:5000", "bob", "repository:a:pull") is None
    assert registry.token("reg:5000", "", "repository:a:pull") is not None
