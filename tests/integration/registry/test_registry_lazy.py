"""Lazy layers: a build from a registry cache downloads a layer only when its bytes are needed."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import httpx
import pytest
from registry_fixtures import Proxy, Registry, tree_listing

from lamina.api import Lamina
from lamina.builder import BuildEvent

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_ACCEPT = "application/vnd.oci.image.manifest.v1+json"


def _build(api: Lamina, ctx: Path, dockerfile: str, **options: object) -> list[BuildEvent]:
    ctx.mkdir(exist_ok=True)
    (ctx / "file").write_text("context file\n")
    (ctx / "Dockerfile").write_text(dockerfile)
    events: list[BuildEvent] = []
    api.build(ctx, on_event=events.append, **options)
    return events


def _layer_digests(registry: Registry, repository: str, tag: str) -> set[str]:
    """The layer blobs a manifest names, read from the registry itself (not the proxy)."""
    response = httpx.get(
        f"http://{registry.host}/v2/{repository}/manifests/{tag}", headers={"Accept": _ACCEPT}
    )
    response.raise_for_status()
    return {layer["digest"] for layer in json.loads(response.content)["layers"]}


def _fetched(proxy: Proxy, layers: set[str]) -> list[str]:
    """Layer blobs downloaded through the proxy (configs and manifests are not layers)."""
    digests = [seen.path.rsplit("/", 1)[1] for seen in proxy.blob_gets()]
    return [digest for digest in digests if digest in layers]


def _tree(api: Lamina, ref: str, target: Path) -> dict[str, tuple[object, ...]]:
    target.mkdir()
    api.mount(ref, target)
    try:
        listing: dict[str, tuple[object, ...]] = tree_listing(target)
        return listing
    finally:
        api.umount(target)


DOCKERFILE = "FROM {base}\nRUN echo one > /one\nCOPY file /file\nRUN cat /one /file > /both\n"


@pytest.fixture
def cached(
    lamina: Lamina, proxy: Proxy, registry: Registry, busybox_rootfs: Path, tmp_path: Path
) -> tuple[str, str, set[str]]:
    """Store A built DOCKERFILE on a pushed base and exported its cache (mode=max):
    (the Dockerfile, the cache option, every layer blob the registry holds for it)."""
    lamina.import_image(busybox_rootfs, "base:1")
    base = f"{proxy.host}/lamina/base:1"
    lamina.push("base:1", base)
    cache = f"type=registry,ref={proxy.host}/lamina/cache:main"
    dockerfile = DOCKERFILE.format(base=base)
    _build(lamina, tmp_path / "a", dockerfile, tags=["app:1"], cache_to=[cache + ",mode=max"])
    layers = _layer_digests(registry, "lamina/cache", "main")
    layers |= _layer_digests(registry, "lamina/base", "1")
    proxy.reset()
    return dockerfile, cache, layers


def test_a_fully_cached_build_downloads_no_layer_and_fetches_on_first_use(
    lamina: Lamina, other: Lamina, proxy: Proxy, cached: tuple[str, str, set[str]], tmp_path: Path
) -> None:
    dockerfile, cache, layers = cached
    built = lamina.resolve("app:1")
    events = _build(other, tmp_path / "b", dockerfile, tags=["app:1"], cache_from=[cache])
    steps = [e.step for e in events if e.kind == "step" and "] FROM " not in e.text]
    assert steps and set(steps) == {e.step for e in events if e.kind == "cached"}, [
        e.text for e in events
    ]
    assert _fetched(proxy, layers) == []  # not one layer blob came down
    assert len(layers) >= 4 and proxy.blob_gets()  # (configs did: the proxy saw the build)

    image = other.resolve("app:1")
    assert image.digest == built.digest
    assert all(other.store.is_remote(layer.diff_id) for layer in image.layers)
    # Listed, inspected, checked and kept by prune without its layers' bytes.
    assert image.id in {summary.id for summary in other.images()}
    assert [row.created_by for row in other.history("app:1")] == [
        row.created_by for row in lamina.history("app:1")
    ]
    assert other.inspect("app:1")["Id"] == built.id
    assert other.store.fsck().ok
    other.store.prune()
    assert other.store.fsck().ok
    assert all(other.store.is_remote(layer.diff_id) for layer in image.layers)

    # mount needs the bytes: every layer is fetched once, then the tree is the built one.
    notices: list[str] = []
    other.lazy_layers.notice = notices.append
    assert _tree(other, "app:1", tmp_path / "mb") == _tree(lamina, "app:1", tmp_path / "ma")
    fetched = _fetched(proxy, layers)
    assert len(fetched) == len(set(fetched)) == len(image.layers)
    assert len(notices) == len(image.layers) and all("fetching layer" in n for n in notices)
    assert not any(other.store.is_remote(layer.diff_id) for layer in image.layers)
    assert other.store.fsck().ok

    assert other.analyze("app:1")  # indexed when they were fetched
    # Now local: save and run need nothing more from the registry.
    proxy.reset()
    out = io.BytesIO()
    other.save(["app:1"], out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as archive:
        assert "manifest.json" in archive.getnames()
    assert _fetched(proxy, layers) == []


def test_run_and_save_of_a_lazy_image_fetch_its_layers(
    other: Lamina, proxy: Proxy, cached: tuple[str, str, set[str]], tmp_path: Path
) -> None:
    from lamina.api import RunOptions

    dockerfile, cache, layers = cached
    _build(other, tmp_path / "b", dockerfile, tags=["app:1"], cache_from=[cache])
    assert _fetched(proxy, layers) == []
    assert other.store.disk_usage().images  # counted without their bytes
    out = io.BytesIO()
    other.save(["app:1"], out)
    assert len(_fetched(proxy, layers)) == len(other.resolve("app:1").layers)
    proxy.reset()
    _, code = other.containers.run(
        RunOptions("app:1", ["cat", "/both"], host_env={"PATH": "/bin"}, remove=True)
    )
    assert code == 0
    assert _fetched(proxy, layers) == []


def test_a_changed_last_step_downloads_only_what_its_rootfs_needs(
    lamina: Lamina, other: Lamina, proxy: Proxy, cached: tuple[str, str, set[str]], tmp_path: Path
) -> None:
    dockerfile, cache, layers = cached
    changed = dockerfile.replace("cat /one /file > /both", "cat /file /one > /both")
    events = _build(other, tmp_path / "b", changed, tags=["app:2"], cache_from=[cache])
    assert len([e for e in events if e.kind == "done"]) == 1  # only the last step ran
    # Its rootfs: the base, RUN's and COPY's layers; not the old last step's layer.
    below = lamina.resolve("app:1").layers[:-1]
    assert len(_fetched(proxy, layers)) == len(set(_fetched(proxy, layers))) == len(below)
    target = tmp_path / "m"
    target.mkdir()
    other.mount("app:2", target)
    try:
        assert (target / "both").read_text() == "context file\none\n"
    finally:
        other.umount(target)


def test_push_of_a_lazy_image_mounts_its_layers_without_downloading_them(
    other: Lamina, proxy: Proxy, cached: tuple[str, str, set[str]], tmp_path: Path
) -> None:
    dockerfile, cache, layers = cached
    _build(other, tmp_path / "b", dockerfile, tags=["app:1"], cache_from=[cache])
    pushed = other.push("app:1", f"{proxy.host}/elsewhere/app:1")
    assert _fetched(proxy, layers) == []
    assert pushed.uploaded == 1 and pushed.mounted == len(other.resolve("app:1").layers)
    # ... and what was pushed pulls into a third store as the same tree.
    third = Lamina(tmp_path / "root3")
    try:
        third.pull(f"{proxy.host}/elsewhere/app:1")
        assert _tree(third, f"{proxy.host}/elsewhere/app:1", tmp_path / "m3")["both"]
    finally:
        third.store.close()
    proxy.reset()
    report, _ = other.analyze("app:1")  # needs the files: fetches the layers
    assert report is not None
    assert len(_fetched(proxy, layers)) == len(other.resolve("app:1").layers)


def _pushed_by_skopeo(
    lamina: Lamina, busybox_rootfs: Path, tmp_path: Path, registry: Registry
) -> str:
    """`skopeo/base:1` on `registry`, its layer gzipped by skopeo (level 1): not the
    digest lamina's own gzip of the same tar gives."""
    from registry_fixtures import run

    lamina.import_image(busybox_rootfs, "base:1")
    layout = tmp_path / "layout"
    lamina.save(["base:1"], layout, fmt="oci-dir", compression="none")
    ref = f"{registry.host}/skopeo/base:1"
    run("skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false",
        "--dest-compress-format", "gzip", "--dest-compress-level", "1",
        f"oci:{layout}", f"docker://{ref}")  # fmt: skip
    return ref


def test_a_pulled_layer_pushed_back_to_its_registry_keeps_its_original_digest(
    lamina: Lamina, other: Lamina, registry: Registry, proxy: Proxy, busybox_rootfs: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    # A layer compressed by another tool (skopeo, gzip level 1): lamina's own gzip of
    # the same tar has another digest.
    _pushed_by_skopeo(lamina, busybox_rootfs, tmp_path, registry)
    original = _layer_digests(registry, "skopeo/base", "1")
    pulled = other.pull(f"{proxy.host}/skopeo/base:1")  # the blobs are not kept
    (layer,) = other.resolve(pulled.digest).layers
    assert not other.store.content.has(layer.digest) and layer.digest in original
    proxy.reset()
    pushed = other.push(pulled.digest, f"{proxy.host}/mirror/base:1")
    assert pushed.digest == pulled.digest  # the manifest names the original blobs
    assert pushed.uploaded == 0 and pushed.mounted == 2  # layer and config
    assert proxy.bytes_up() < 4096  # nothing uploaded
    assert _layer_digests(registry, "mirror/base", "1") == original


def test_two_pulls_of_the_same_new_layers_at_once_download_each_blob_once(
    lamina: Lamina, proxy: Proxy, busybox_rootfs: Path, tmp_path: Path
) -> None:
    import threading

    lamina.import_image(busybox_rootfs, "base:1")
    ref = f"{proxy.host}/lamina/base:1"
    pushed = lamina.push("base:1", ref)
    proxy.reset()
    proxy.faults.throttle = 0.005  # slow enough that the two pulls overlap
    apis = [Lamina(tmp_path / "shared"), Lamina(tmp_path / "shared")]  # two processes' worth
    results: list[object] = []

    def pull(api: Lamina) -> None:
        try:
            results.append(api.pull(ref))
        except Exception as exc:  # reported below
            results.append(exc)

    threads = [threading.Thread(target=pull, args=(api,)) for api in apis]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert all(getattr(r, "digest", None) == pushed.digest for r in results), results
        layers = _layer_digests_of(apis[0], pushed.digest)
        fetched = [s.path.rsplit("/", 1)[1] for s in proxy.blob_gets()]
        assert sorted(d for d in fetched if d in layers) == sorted(layers)  # each once
        assert apis[1].store.fsck().ok
    finally:
        for api in apis:
            api.store.close()


def test_a_layer_another_pull_made_while_this_one_waited_is_not_downloaded(
    lamina: Lamina,
    proxy: Proxy,
    busybox_rootfs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race behind the test above, made certain: the store lacks the layer when the
    pull looks, and has it once the pull holds the blob's ingest lock (another pull
    committed it in between). The pull must then use it, not download it again."""
    lamina.import_image(busybox_rootfs, "base:1")
    ref = f"{proxy.host}/lamina/base:1"
    pushed = lamina.push("base:1", ref)
    puller = Lamina(tmp_path / "puller")  # keeps no blobs: a layer is only its snapshot
    puller.pull(ref)
    puller.rmi([ref])  # its snapshots stay until a prune
    store = puller.store
    locked = False
    real_has_layer, real_writer = store.has_layer, store.content.writer

    def has_layer(diff_id: str) -> bool:
        return locked and real_has_layer(diff_id)

    def writer(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        nonlocal locked
        opened = real_writer(*args, **kwargs)  # type: ignore[arg-type]
        locked = True
        return opened

    monkeypatch.setattr(store, "has_layer", has_layer)
    monkeypatch.setattr(store.content, "writer", writer)
    proxy.reset()
    try:
        assert puller.pull(ref).digest == pushed.digest
        layers = _layer_digests_of(puller, pushed.digest)
        assert locked  # the pull did reach the ingest lock
        assert not [s for s in proxy.blob_gets() if s.path.rsplit("/", 1)[1] in layers]
        monkeypatch.undo()
        assert store.fsck().ok
    finally:
        store.close()


def test_a_layer_unpacked_by_a_pull_that_has_not_recorded_its_image_is_not_downloaded_again(
    lamina: Lamina,
    proxy: Proxy,
    busybox_rootfs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another pull unpacked and checked the blob but has not recorded its image yet (it
    still works on other layers, or was stopped there): the digest and diff_id were
    checked together by that ingest, so this pull trusts the snapshot instead of
    downloading the blob again to check it (the race two simultaneous pulls can lose)."""
    from lamina.errors import LaminaError

    lamina.import_image(busybox_rootfs, "base:1")
    ref = f"{proxy.host}/lamina/base:1"
    pushed = lamina.push("base:1", ref)
    puller = Lamina(tmp_path / "puller")
    store = puller.store

    def stopped(*args: object, **kwargs: object) -> None:
        raise LaminaError("stopped before the image was recorded")

    with monkeypatch.context() as patch:
        patch.setattr(store, "add_image", stopped)
        with pytest.raises(LaminaError, match="stopped before"):
            puller.pull(ref)
    assert not store.list_images()
    proxy.reset()
    try:
        assert puller.pull(ref).digest == pushed.digest
        layers = _layer_digests_of(puller, pushed.digest)
        assert not [s for s in proxy.blob_gets() if s.path.rsplit("/", 1)[1] in layers]
        assert store.fsck().ok
    finally:
        store.close()


def _layer_digests_of(api: Lamina, digest: str) -> list[str]:
    return [layer.digest for layer in api.store.get_image(digest).layers]


def test_a_lazy_layer_the_registry_cannot_serve_is_a_clear_error_and_nothing_breaks(
    other: Lamina, proxy: Proxy, cached: tuple[str, str, set[str]], tmp_path: Path
) -> None:
    from lamina.errors import LaminaError

    dockerfile, cache, _ = cached
    _build(other, tmp_path / "b", dockerfile, tags=["app:1"], cache_from=[cache])
    proxy.faults.fail_5xx = 1000
    target = tmp_path / "m"
    target.mkdir()
    with pytest.raises(LaminaError, match="503"):
        other.mount("app:1", target)
    assert not any(target.iterdir())
    image = other.resolve("app:1")
    assert any(other.store.is_remote(layer.diff_id) for layer in image.layers)
    assert other.store.fsck().ok
    proxy.reset()  # the registry is back: the same command now works
    assert _tree(other, "app:1", tmp_path / "m2")["both"]


def test_a_lazy_image_pushed_to_another_registry_streams_its_layers_through(
    other: Lamina, proxy: Proxy, cached: tuple[str, str, set[str]], tmp_path: Path
) -> None:
    dockerfile, cache, layers = cached
    _build(other, tmp_path / "b", dockerfile, tags=["app:1"], cache_from=[cache])
    image = other.resolve("app:1")
    second = Registry(tmp_path / "second")
    try:
        ref = f"{second.host}/copy/app:1"
        pushed = other.push("app:1", ref)
        assert pushed.uploaded == len(image.layers) + 1  # every layer and the config
        # Downloaded from the first registry once each, never unpacked here.
        fetched = _fetched(proxy, layers)
        assert len(fetched) == len(set(fetched)) == len(image.layers)
        assert all(other.store.is_remote(layer.diff_id) for layer in image.layers)
        third = Lamina(tmp_path / "root3")
        try:
            third.pull(ref)
            assert third.resolve(ref).id == image.id
            assert _tree(third, ref, tmp_path / "m3") == _tree(other, "app:1", tmp_path / "m2")
        finally:
            third.store.close()
    finally:
        second.stop()


def test_a_cache_that_lies_about_a_layer_size_is_caught_when_the_layer_arrives(
    other: Lamina, registry: Registry, cached: tuple[str, str, set[str]], tmp_path: Path
) -> None:
    from lamina.errors import InvalidInputError

    dockerfile, cache, _ = cached
    url = f"http://{registry.host}/v2/lamina/cache/manifests/main"
    doc = json.loads(httpx.get(url, headers={"Accept": _ACCEPT}).content)
    for layer in doc["layers"]:
        layer["annotations"]["io.lamina.layer.uncompressed-size"] = "1"
    put = httpx.put(url, content=json.dumps(doc), headers={"Content-Type": _ACCEPT})
    assert put.status_code == 201, put.text
    _build(other, tmp_path / "b", dockerfile, tags=["app:1"], cache_from=[cache])
    target = tmp_path / "m"
    target.mkdir()
    with pytest.raises(InvalidInputError, match="the build cache said 1 bytes"):
        other.mount("app:1", target)
    assert not any(target.iterdir())


def test_a_pulled_layer_pushed_to_another_registry_without_its_blob_says_its_digest_changed(
    lamina: Lamina, other: Lamina, registry: Registry, busybox_rootfs: Path, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    # As save does (and podman): a layer whose original blob is gone is recompressed on
    # the way out, so the manifest digest changes; the user is told which layer and why.
    ref = _pushed_by_skopeo(lamina, busybox_rootfs, tmp_path, registry)
    pulled = other.pull(ref)  # the blobs are not kept
    (layer,) = other.resolve(pulled.digest).layers
    other.store.close()
    second = Registry(tmp_path / "second")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "lamina", "--root", str(other.root), "push", "-q",
             pulled.digest, f"{second.host}/mirror/base:1"],
            capture_output=True, text=True, env=dict(os.environ), timeout=300,
        )  # fmt: skip
    finally:
        second.stop()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() != pulled.digest
    assert f"layer {layer.diff_id}" in done.stderr and "digest changed" in done.stderr
    assert layer.digest in done.stderr
