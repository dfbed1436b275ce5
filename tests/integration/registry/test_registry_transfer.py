"""Push and pull against Debian's docker-registry, checked by independent clients
(skopeo, umoci, buildah) and by counting what crosses a proxy."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from registry_fixtures import Proxy, Registry, run, tree_listing

from lamina.api import Lamina
from lamina.errors import LaminaError, NotFoundError
from lamina.oci import media_types

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SKOPEO = ["skopeo", "--insecure-policy"]


def _layered(lamina: Lamina, rootfs: Path, tmp: Path, tag: str, app: bytes) -> str:
    """busybox base + a top layer holding /app/data: the same base for every `app`."""
    if not lamina.store.list_images() or not any(
        "base:1" in t for i in lamina.store.list_images() for t in i.tags
    ):
        lamina.import_image(rootfs, "base:1")
    top = tmp / f"top-{tag.replace(':', '-').replace('/', '-')}"
    if top.exists():
        import shutil

        shutil.rmtree(top)
    run("cp", "-a", rootfs, top)
    (top / "app").mkdir()
    (top / "app" / "data").write_bytes(app)
    return lamina.import_image(top, tag, base="base:1")


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[list[tuple[Lamina, Path]]]:
    mounts: list[tuple[Lamina, Path]] = []
    yield mounts
    for api, target in mounts:
        api.umount(target)


def _mount(api: Lamina, ref: str, target: Path, mounts: list[tuple[Lamina, Path]]) -> Path:
    target.mkdir(parents=True)
    api.mount(ref, target)
    mounts.append((api, target))
    return target


def test_skopeo_and_umoci_read_what_lamina_pushes(
    lamina: Lamina, registry: Registry, busybox_rootfs: Path, tmp_path: Path,
    mounted: list[tuple[Lamina, Path]],
) -> None:  # fmt: skip
    _layered(lamina, busybox_rootfs, tmp_path, "app:1", b"version one\n")
    ref = f"{registry.host}/lamina/app:1"
    result = lamina.push("app:1", ref)
    layout = tmp_path / "layout"
    run(*SKOPEO, "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{layout}:app")
    inspect = json.loads(run(*SKOPEO, "inspect", "--tls-verify=false", f"docker://{ref}"))
    assert inspect["Digest"] == result.digest
    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--image", f"{layout}:app", bundle)
    tree = _mount(lamina, "app:1", tmp_path / "mnt", mounted)
    assert tree_listing(bundle / "rootfs") == tree_listing(tree)


def test_lamina_pulls_what_buildah_builds_and_skopeo_pushes(
    lamina: Lamina, registry: Registry, tmp_path: Path, mounted: list[tuple[Lamina, Path]]
) -> None:
    flags = ["--root", str(tmp_path / "b-root"), "--runroot", str(tmp_path / "b-run"),
             "--storage-driver", "vfs"]  # fmt: skip
    (tmp_path / "hello.txt").write_text("hello from buildah\n")
    container = run("buildah", *flags, "from", "scratch").strip()
    try:
        run("buildah", *flags, "copy", container, "/bin/busybox", "/bin/busybox")
        run("buildah", *flags, "copy", container, tmp_path / "hello.txt", "/hello.txt")
        run("buildah", *flags, "commit", container, "lamina-test/hello:1")
        layout = tmp_path / "from-buildah"
        run("buildah", *flags, "push", "lamina-test/hello:1", f"oci:{layout}:hello")
        ref = f"{registry.host}/buildah/hello:1"
        run(*SKOPEO, "copy", "--dest-tls-verify=false", f"oci:{layout}:hello", f"docker://{ref}")
        pulled = lamina.pull(ref)
        assert pulled.layers_downloaded >= 1
        bundle = tmp_path / "bundle"
        run("umoci", "unpack", "--image", f"{layout}:hello", bundle)
        tree = _mount(lamina, ref, tmp_path / "mnt", mounted)
        assert tree_listing(bundle / "rootfs") == tree_listing(tree)
        assert (tree / "hello.txt").read_text() == "hello from buildah\n"
    finally:
        run("buildah", *flags, "rm", "--all")
        run("buildah", *flags, "rmi", "--all", "--force")


def test_only_missing_bytes_travel_push_pull_and_mount(
    lamina: Lamina, other: Lamina, proxy: Proxy, busybox_rootfs: Path, tmp_path: Path
) -> None:
    _layered(lamina, busybox_rootfs, tmp_path, "app:1", b"one" * 100_000)
    repo = f"{proxy.host}/lamina/app"
    lamina.push("app:1", f"{repo}:1")
    other.pull(f"{repo}:1")

    # A new top layer: exactly that layer, the config and the manifest go up.
    _layered(lamina, busybox_rootfs, tmp_path, "app:2", b"two" * 100_000)
    new = lamina.resolve("app:2")
    proxy.reset()
    result = lamina.push("app:2", f"{repo}:2")
    # Layers leave gzipped from their snapshots: what went up is what the pushed manifest names.
    manifest_bytes = _pushed_manifest(proxy, "lamina/app", "2")
    assert hashlib.sha256(manifest_bytes).hexdigest() == result.digest.split(":")[1]
    manifest = json.loads(manifest_bytes)
    assert [d["mediaType"] for d in manifest["layers"]] == [media_types.OCI_LAYER_GZIP] * 2
    top = manifest["layers"][-1]
    puts = [s for s in proxy.log if s.method == "PUT"]
    uploaded = sorted(s.path.split("digest=")[1].replace("%3A", ":") for s in puts
                      if "/blobs/uploads/" in s.path)  # fmt: skip
    assert uploaded == sorted([top["digest"], new.config_digest])
    assert proxy.count("PUT", "/manifests/") == 1
    assert proxy.bytes_up() == top["size"] + lamina.store.content.size(new.config_digest) + len(
        manifest_bytes
    )
    # The base layer is remembered: not even a HEAD for it.
    base_layer = manifest["layers"][0]["digest"]
    assert not [s for s in proxy.log if s.method == "HEAD" and base_layer in s.path]
    assert result.uploaded == 2

    # Pull the new version into the store holding the old one: only that layer comes down.
    proxy.reset()
    pulled = other.pull(f"{repo}:2")
    assert pulled.layers_downloaded == 1 and pulled.layers_present == 1
    gets = proxy.blob_gets()
    assert sorted(s.path.rsplit("/", 1)[1] for s in gets) == sorted(
        [top["digest"], new.config_digest]
    )
    assert proxy.bytes_down() == top["size"] + lamina.store.content.size(new.config_digest)

    # Another repository of the same registry: mounted, not uploaded.
    proxy.reset()
    again = lamina.push("app:2", f"{proxy.host}/elsewhere/app:2")
    assert proxy.count("PATCH", "/blobs/uploads/") == 0
    mounts = [s for s in proxy.log if s.method == "POST" and "mount=" in s.path]
    assert len(mounts) == 3 and all(s.status == 201 for s in mounts)
    assert again.mounted == 3 and again.uploaded == 0


def _pushed_manifest(proxy: Proxy, repository: str, tag: str) -> bytes:
    """The manifest the registry holds (read behind the proxy's back: not counted)."""
    answer = httpx.get(
        f"http://{proxy.upstream}/v2/{repository}/manifests/{tag}",
        headers={"Accept": f"{media_types.OCI_MANIFEST}, {media_types.DOCKER_MANIFEST}"},
    )
    assert answer.status_code == 200, answer.text
    return answer.content


def test_an_existing_manifest_skips_its_children(
    lamina: Lamina, proxy: Proxy, busybox_rootfs: Path
) -> None:
    lamina.import_image(busybox_rootfs, "base:1")
    lamina.push("base:1", f"{proxy.host}/lamina/base:1")
    lamina.store.registry.forget_repository(proxy.host, "lamina/base")
    proxy.reset()
    lamina.push("base:1", f"{proxy.host}/lamina/base:latest")
    assert [s.method for s in proxy.log if s.path != "/v2/"] == ["HEAD", "PUT"]


def test_pull_of_a_missing_tag_or_repository_is_one_clear_error(
    lamina: Lamina, registry: Registry
) -> None:
    with pytest.raises(NotFoundError, match=r"manifest unknown|name unknown") as info:
        lamina.pull(f"{registry.host}/nothing/here:1")
    assert info.value.hint
    assert lamina.store.list_images() == []


def test_plain_http_is_refused_for_a_registry_that_is_not_loopback(lamina: Lamina) -> None:
    from lamina.transport import RegistryClient

    client = RegistryClient("registry.invalid:5000")
    assert not client.plain_http_allowed
    assert RegistryClient("localhost:5000").plain_http_allowed
    assert RegistryClient("registry.invalid:5000", insecure=True).plain_http_allowed
    with pytest.raises(LaminaError, match="unreachable"):
        lamina.pull("registry.invalid:5000/x/y:1")


def test_basic_auth_login_pull_push_and_logout(
    lamina: Lamina, auth_registry: Registry, busybox_rootfs: Path
) -> None:
    lamina.import_image(busybox_rootfs, "base:1")
    ref = f"{auth_registry.host}/private/base:1"
    with pytest.raises(LaminaError, match="unauthorized") as refused:
        lamina.push("base:1", ref)
    assert "lamina login" in (refused.value.hint or "")
    with pytest.raises(LaminaError, match="unauthorized") as wrong:
        lamina.login(auth_registry.host, "alice", "wrong-password")
    assert "wrong-password" not in str(wrong.value)
    config = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    assert auth_registry.host not in config.read_text()
    lamina.login(auth_registry.host, "alice", "s3cret")
    assert config.stat().st_mode & 0o777 == 0o600
    assert auth_registry.host in json.loads(config.read_text())["auths"]
    lamina.push("base:1", ref)
    lamina.rmi(["base:1"])
    assert lamina.pull(ref).layers_present == 1
    # skopeo reads the same config.json lamina wrote
    run(*SKOPEO, "inspect", "--tls-verify=false", "--authfile", config, f"docker://{ref}")
    assert lamina.logout(auth_registry.host)
    with pytest.raises(LaminaError, match="unauthorized"):
        lamina.pull(ref)


def test_bearer_token_challenge_with_a_token_per_scope_forgotten_at_logout(
    lamina: Lamina, registry: Registry, busybox_rootfs: Path
) -> None:
    gate = Proxy(registry.host, bearer=True)
    try:
        lamina.import_image(busybox_rootfs, "base:1")
        lamina.login(gate.host, "bob", "hunter2")
        lamina.push("base:1", f"{gate.host}/team/base:1")
        assert gate.token_requests and all(t["user"] == "bob" for t in gate.token_requests)
        scopes = " ".join(t["path"] for t in gate.token_requests)
        assert "repository%3Ateam%2Fbase%3Apull%2Cpush" in scopes
        pushes = len(gate.token_requests)
        lamina.rmi(["base:1"])
        lamina.pull(f"{gate.host}/team/base:1")
        # one token for the pull scope (the push fetched it for its HEADs), kept in the
        # store and reused by the pull for the manifest, config and every layer
        pull_scope = "/token?service=test&scope=repository%3Ateam%2Fbase%3Apull"
        assert [t["path"] for t in gate.token_requests].count(pull_scope) == 1
        assert not [t for t in gate.token_requests[pushes:] if "scope=" in t["path"]]
        with pytest.raises(LaminaError, match="refused the credentials"):
            lamina.login(gate.host, "bob", "not-his")
        # logout forgets bob's tokens too (kept, they would go on acting for him), and
        # only that registry's
        lamina.store.registry.save_token("other.example:5000", "", "x", "t", 2e9)
        assert _saved_tokens(lamina, gate.host) > 0
        assert lamina.logout(gate.host)
        assert _saved_tokens(lamina, gate.host) == 0
        assert _saved_tokens(lamina, "other.example:5000") == 1
        asked = len(gate.token_requests)
        lamina.pull(f"{gate.host}/team/base:1")  # asks for a token again, as nobody
        users = [t["user"] for t in gate.token_requests[asked:]]
        assert users and set(users) == {""}
    finally:
        gate.close()


def _saved_tokens(lamina: Lamina, host: str) -> int:
    query = "SELECT COUNT(*) FROM registry_tokens WHERE registry = ?"
    with contextlib.closing(sqlite3.connect(lamina.root / "metadata.db")) as db:
        return int(db.execute(query, (host,)).fetchone()[0])


def test_a_push_completes_when_the_registry_lost_a_blob_lamina_remembers(
    lamina: Lamina, registry: Registry, busybox_rootfs: Path, tmp_path: Path
) -> None:
    _layered(lamina, busybox_rootfs, tmp_path, "app:1", b"one")
    _layered(lamina, busybox_rootfs, tmp_path, "app:2", b"two")
    lamina.push("app:1", f"{registry.host}/lost/app:1")
    manifest = json.loads(
        httpx.get(
            f"http://{registry.host}/v2/lost/app/manifests/1",
            headers={"Accept": f"{media_types.OCI_MANIFEST}, {media_types.DOCKER_MANIFEST}"},
        ).content
    )
    base = manifest["layers"][0]["digest"].split(":")[1]
    blob = registry.storage / "docker/registry/v2/blobs/sha256" / base[:2] / base / "data"
    blob.unlink()  # the registry lost it; lamina still remembers it is there
    assert lamina.store.registry.known(registry.host, "lost/app", f"sha256:{base}")
    result = lamina.push("app:2", f"{registry.host}/lost/app:2")
    # the lost base layer went again, with the new top layer and config; nothing else
    assert (result.uploaded, result.mounted, result.existed) == (3, 0, 0)
    assert blob.exists()
    other = Lamina(tmp_path / "root-check")
    try:
        other.pull(f"{registry.host}/lost/app:2")
    finally:
        other.store.close()


def test_a_damaged_blob_in_the_store_fails_the_push_once_and_clearly(
    lamina: Lamina, registry: Registry, busybox_rootfs: Path, tmp_path: Path
) -> None:
    lamina.import_image(busybox_rootfs, "base:1")
    lamina.push("base:1", f"{registry.host}/first/base:1")  # the layer's gzip blob is cached
    manifest = json.loads(_pushed_manifest(Proxy(registry.host), "first/base", "1"))
    layer = manifest["layers"][0]
    blob = lamina.root / "blobs" / "sha256" / layer["digest"].split(":")[1]
    blob.chmod(0o644)
    with blob.open("r+b") as f:  # bit rot: one byte in the middle
        f.seek(layer["size"] // 2)
        byte = f.read(1)
        f.seek(layer["size"] // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    second = Registry(tmp_path / "second")
    gate = Proxy(second.host)
    try:
        with pytest.raises(LaminaError, match=layer["digest"]) as failed:
            lamina.push("base:1", f"{gate.host}/second/base:1")
        assert "fsck" in (failed.value.hint or "")
        # sent once, not again and again; and nothing names it there
        assert layer["size"] <= gate.bytes_up() < 2 * layer["size"]
        assert httpx.get(f"http://{second.host}/v2/second/base/tags/list").status_code == 404
    finally:
        gate.close()
        second.stop()
