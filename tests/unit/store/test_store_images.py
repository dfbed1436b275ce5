"""Images, tags, resolve and disk usage in the metadata db."""

from __future__ import annotations

import pytest
from store_helpers import MANIFEST_TYPE, add_image, put_layer

from lamina.errors import ConflictError, InvalidInputError, NotFoundError
from lamina.oci import sha256_digest
from lamina.store import LayerRecord, Store


def test_add_image_records_layers_tags_and_sizes(store: Store) -> None:
    base, top = put_layer(store, b"base" * 100), put_layer(store, b"top")
    digest = add_image(store, [base, top], config=b'{"a":1}', tags=["docker.io/library/x:1"])
    image = store.get_image(digest)
    assert image.layers == (base, top)
    assert image.tags == ("docker.io/library/x:1",)
    assert image.id == sha256_digest(b'{"a":1}')
    assert image.config_size == 7
    assert image.size == image.manifest_size + 7 + 400 + 3
    assert store.image_layers(digest) == [base, top]
    assert [i.digest for i in store.list_images()] == [digest]
    assert store.layer(base.digest) == base


def test_add_image_refuses_a_missing_blob_and_writes_nothing(store: Store) -> None:
    present = put_layer(store, b"present")
    absent = LayerRecord(sha256_digest(b"absent"), sha256_digest(b"d"), "t", 6)
    config = store.content.put_bytes(b"{}").digest
    manifest = store.content.put_bytes(b"manifest").digest
    with pytest.raises(NotFoundError, match=absent.digest):
        store.add_image(manifest, config, [present, absent], media_type=MANIFEST_TYPE, tags=["t"])
    with pytest.raises(NotFoundError, match="config blob"):
        store.add_image(manifest, sha256_digest(b"nope"), [present], media_type=MANIFEST_TYPE)
    assert store.list_images() == []
    with pytest.raises(NotFoundError):
        store.resolve("t")
    with pytest.raises(NotFoundError):
        store.layer(present.digest)
    assert store.fsck().ok


def test_add_image_checks_layer_size_against_blob(store: Store) -> None:
    layer = put_layer(store, b"12345")
    lying = LayerRecord(layer.digest, layer.diff_id, layer.media_type, 4)
    with pytest.raises(InvalidInputError, match="record says 4 bytes, blob has 5"):
        add_image(store, [lying])
    assert store.list_images() == []


def test_add_existing_image_only_moves_tags(store: Store) -> None:
    layer = put_layer(store, b"l")
    first = add_image(store, [layer], tags=["a"])
    again = add_image(store, [layer], tags=["b"])
    assert first == again
    assert store.get_image(first).tags == ("a", "b")
    assert store.get_image(first).layers == (layer,)


def test_tag_moves_atomically_and_untag(store: Store) -> None:
    one = add_image(store, [put_layer(store, b"1")], config=b"1")
    two = add_image(store, [put_layer(store, b"2")], config=b"2")
    store.tag("r:latest", one)
    store.tag("r:latest", two)
    assert store.resolve("r:latest").digest == two
    assert store.get_image(one).tags == ()
    assert store.untag("r:latest") == two
    with pytest.raises(NotFoundError):
        store.untag("r:latest")
    with pytest.raises(NotFoundError, match="not in the store"):
        store.tag("r:latest", sha256_digest(b"none"))
    with pytest.raises(InvalidInputError):
        store.tag("has space", one)


def test_resolve_by_name_digest_and_id_prefix(store: Store) -> None:
    layer = put_layer(store, b"l")
    # Two configs chosen so that their IDs share a first hex digit, and a third that differs.
    configs = [f'{{"n":{i}}}'.encode() for i in range(40)]
    ids = [sha256_digest(c) for c in configs]
    i, j = next((i, j) for i in range(40) for j in range(i + 1, 40) if ids[i][7] == ids[j][7])
    a = add_image(store, [layer], config=configs[i], tags=["docker.io/library/a:1"])
    b = add_image(store, [layer], config=configs[j])
    assert store.resolve("docker.io/library/a:1").digest == a
    assert store.resolve(a).digest == a
    assert store.resolve(f"docker.io/library/a@{a}").digest == a
    assert store.resolve(ids[j]).digest == b
    assert store.resolve(ids[j][7:19]).digest == b
    assert store.resolve("sha256:" + ids[j][7:19]).digest == b
    with pytest.raises(InvalidInputError, match="ambiguous"):
        store.resolve(ids[i][7])
    with pytest.raises(NotFoundError):
        store.resolve("docker.io/library/missing:1")
    with pytest.raises(NotFoundError):
        store.resolve("sha256:" + "0" * 64)


def test_remove_image_guards_tags_and_containers(store: Store) -> None:
    digest = add_image(store, [put_layer(store, b"l")], tags=["t"])
    with pytest.raises(ConflictError, match="tagged t"):
        store.remove_image(digest)
    store.add_container("c1", "web", digest, {"status": "created"})
    with pytest.raises(ConflictError, match="web"):
        store.remove_image(digest, force=True)
    store.remove_container("c1")
    store.remove_image(digest, force=True)
    assert store.list_images() == []
    with pytest.raises(NotFoundError):
        store.resolve("t")
    with pytest.raises(NotFoundError):
        store.remove_image(digest)


def test_disk_usage_of_three_images_sharing_a_base(store: Store) -> None:
    # base (1000) is in A, B and C; mid (200) in B and C; a (30), b (40), c (50) unique.
    base = put_layer(store, b"B" * 1000)
    mid = put_layer(store, b"M" * 200)
    la, lb, lc = (put_layer(store, ch * n) for ch, n in ((b"a", 30), (b"b", 40), (b"c", 50)))
    img_a = add_image(store, [base, la], config=b"A" * 10, tags=["a"])
    img_b = add_image(store, [base, mid, lb], config=b"B" * 20, tags=["b"])
    img_c = add_image(store, [base, mid, lc, lc], config=b"C" * 30, tags=["c"])
    store.add_container("k", "k", img_c, {})
    usage = store.disk_usage()
    by_digest = {u.image.digest: u for u in usage.images}
    man = {d: store.get_image(d).manifest_size for d in (img_a, img_b, img_c)}
    a, b, c = by_digest[img_a], by_digest[img_b], by_digest[img_c]
    assert (a.size, a.shared_size, a.unique_size) == (man[img_a] + 10 + 1030, 1000, man[img_a] + 40)
    assert (b.size, b.shared_size, b.unique_size) == (man[img_b] + 20 + 1240, 1200, man[img_b] + 60)
    # lc is listed twice in C but counted once.
    assert (c.size, c.shared_size, c.unique_size) == (man[img_c] + 30 + 1250, 1200, man[img_c] + 80)
    assert (a.containers, b.containers, c.containers) == (0, 0, 1)
    users = {u.layer.digest: u.images for u in usage.layers}
    assert users == {base.digest: 3, mid.digest: 2, la.digest: 1, lb.digest: 1, lc.digest: 1}
    assert usage.blobs_size == 1000 + 200 + 30 + 40 + 50 + 60 + sum(man.values())
