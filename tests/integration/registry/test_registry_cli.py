"""The registry commands through the CLI: login with --password-stdin, push, pull with
--platform and --progress=json, logout; secrets never printed."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from registry_fixtures import Proxy, Registry
from registry_fixtures import lamina_cli as _cli

from lamina.api import Lamina
from lamina.errors import NotFoundError
from lamina.oci import Descriptor, Index, Platform, media_types

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_login_push_pull_logout_through_the_cli(
    lamina: Lamina, auth_registry: Registry, busybox_rootfs: Path, tmp_path: Path
) -> None:
    lamina.import_image(busybox_rootfs, "base:1")
    lamina.store.close()
    root = lamina.root
    host = auth_registry.host
    bad = _cli(root, "login", "-u", "alice", "--password-stdin", host, stdin="nope-secret\n")
    assert bad.returncode == 1 and "nope-secret" not in bad.stdout + bad.stderr
    assert len(bad.stderr.strip().splitlines()) <= 2  # one line, and a hint
    good = _cli(root, "login", "-u", "alice", "--password-stdin", host, stdin="s3cret\n")
    assert good.returncode == 0, good.stderr
    assert "Login Succeeded" in good.stdout and "s3cret" not in good.stdout + good.stderr
    pushed = _cli(root, "push", "--progress", "plain", "base:1", f"{host}/cli/base:1")
    assert pushed.returncode == 0, pushed.stderr
    assert "Pushed" in pushed.stderr and "digest: sha256:" in pushed.stdout
    other = tmp_path / "other-root"
    pulled = _cli(other, "pull", "--progress", "json", f"{host}/cli/base:1")
    assert pulled.returncode == 0, pulled.stderr
    events = [json.loads(line) for line in pulled.stdout.splitlines() if line.startswith("{")]
    assert {"downloading", "downloaded", "unpacked"} <= {e["event"] for e in events}
    assert _cli(root, "logout", host).stdout.startswith("Removing login credentials")
    refused = _cli(other, "pull", "-q", f"{host}/cli/base:1")
    assert refused.returncode == 1 and "lamina login" in refused.stderr


def test_pull_picks_the_platform_from_an_index_and_names_those_it_has(
    lamina: Lamina, other: Lamina, registry: Registry, busybox_rootfs: Path, tmp_path: Path
) -> None:
    lamina.import_image(busybox_rootfs, "base:1")
    amd = lamina.push("base:1", f"{registry.host}/multi/app:amd64")
    lamina.import_image(busybox_rootfs, "base:2", changes=["LABEL arch=arm64"])
    arm = lamina.push("base:2", f"{registry.host}/multi/app:arm64")

    def size(ref: str) -> int:
        return len(lamina.store.content.read_bytes(lamina.resolve(ref).digest, 1 << 20))

    index = Index((
        Descriptor(media_types.OCI_MANIFEST, amd.digest, size("base:1"),
                   platform=Platform("linux", "amd64")),
        Descriptor(media_types.OCI_MANIFEST, arm.digest, size("base:2"),
                   platform=Platform("linux", "arm64", "v8")),
    )).to_bytes()  # fmt: skip
    put = httpx.put(f"http://{registry.host}/v2/multi/app/manifests/multi", content=index,
                    headers={"Content-Type": media_types.OCI_INDEX})  # fmt: skip
    assert put.status_code == 201
    got = other.pull(f"{registry.host}/multi/app:multi", platform="linux/arm64")
    assert got.digest == arm.digest
    no_match = (r"no matching manifest for linux/s390x in the manifest list entries"
                r" \(the index has linux/amd64, linux/arm64/v8\)")  # fmt: skip
    with pytest.raises(NotFoundError, match=no_match):
        other.pull(f"{registry.host}/multi/app:multi", platform="linux/s390x")


@pytest.fixture
def gate(lamina: Lamina, registry: Registry, busybox_rootfs: Path) -> Iterator[Proxy]:
    """A bearer-token proxy holding `team/base:1` (pushed anonymously); the store closed."""
    proxy = Proxy(registry.host, bearer=True)
    try:
        lamina.import_image(busybox_rootfs, "base:1")
        lamina.push("base:1", f"{proxy.host}/team/base:1")
        lamina.store.close()
        yield proxy
    finally:
        proxy.close()


def test_a_bearer_token_is_kept_for_the_next_command_and_never_printed(
    lamina: Lamina, gate: Proxy
) -> None:
    ref = f"{gate.host}/team/base:1"
    outputs = []
    for _ in range(2):  # two commands: the second asks the token server nothing
        before = len(gate.token_requests)
        pulled = _cli(lamina.root, "pull", "--progress=json", ref)
        assert pulled.returncode == 0, pulled.stderr
        outputs.append(pulled.stdout + pulled.stderr)
        rmi = _cli(lamina.root, "rmi", ref)
        assert rmi.returncode == 0, rmi.stderr
    assert len(gate.token_requests) - before == 0
    assert gate.tokens and not any(t in out for t in gate.tokens for out in outputs)
    assert gate.count("GET", "/manifests/") >= 2
    # Tokens the registry no longer accepts are dropped and new ones fetched (the
    # registry's own, scope-less, for GET /v2/, and the pull scope's).
    gate.tokens.clear()
    again = _cli(lamina.root, "pull", "-q", ref)
    assert again.returncode == 0, again.stderr
    assert len(gate.token_requests) - before == 2


def test_a_refused_login_says_to_check_the_credentials_and_keeps_none(
    lamina: Lamina, auth_registry: Registry, tmp_path: Path
) -> None:
    lamina.store.close()
    gate = Proxy(auth_registry.host, bearer=True)  # its token server knows bob:hunter2
    try:
        for host in (auth_registry.host, gate.host):
            bad = _cli(lamina.root, "login", "-u", "bob", "--password-stdin", host,
                       stdin="wrong-pass\n")  # fmt: skip
            assert bad.returncode == 1
            assert "wrong-pass" not in bad.stdout + bad.stderr
            assert "check the user name and password" in bad.stderr, bad.stderr
            assert "log in first" not in bad.stderr
        config = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
        assert auth_registry.host not in config.read_text()
        assert gate.host not in config.read_text()
    finally:
        gate.close()


def test_login_to_a_url_keeps_the_credentials_under_its_host(
    lamina: Lamina, auth_registry: Registry, busybox_rootfs: Path
) -> None:
    lamina.import_image(busybox_rootfs, "base:1")
    lamina.store.close()
    host = auth_registry.host
    good = _cli(lamina.root, "login", "-u", "alice", "--password-stdin", f"http://{host}/",
                stdin="s3cret\n")  # fmt: skip
    assert good.returncode == 0, good.stderr
    config = json.loads((Path(os.environ["DOCKER_CONFIG"]) / "config.json").read_text())
    assert list(config["auths"]) == [host]
    pushed = _cli(lamina.root, "push", "-q", "base:1", f"{host}/url/base:1")
    assert pushed.returncode == 0, pushed.stderr
    out = _cli(lamina.root, "logout", f"http://{host}")
    assert out.stdout.strip() == f"Removing login credentials for {host}"


def test_pull_takes_the_layer_limits_as_flags_and_leaves_nothing(
    lamina: Lamina, registry: Registry, busybox_rootfs: Path, tmp_path: Path
) -> None:
    # The limit's hint says "raise it with --max-layer-size": pull must have that flag.
    top = tmp_path / "top"
    top.mkdir()
    (top / "two-mib").write_bytes(os.urandom(2 << 20))
    lamina.import_image(busybox_rootfs, "base:1")
    lamina.import_image(top, "big:1", base="base:1")
    lamina.push("big:1", f"{registry.host}/lim/big:1")
    lamina.store.close()
    other = tmp_path / "other-root"
    ref = f"{registry.host}/lim/big:1"
    refused = _cli(other, "pull", "-q", "--max-layer-size", "1M", ref)
    assert refused.returncode == 1, refused.stderr
    assert "layer size limit" in refused.stderr and "1048576" in refused.stderr
    assert "--max-layer-size" in refused.stderr and "Traceback" not in refused.stderr
    assert _cli(other, "images", "-q").stdout == ""
    snapshots = other / "snapshots"
    assert not snapshots.exists() or os.listdir(snapshots) == []
    bad = _cli(other, "pull", "-q", "--max-layer-ratio", "nan", ref)
    assert bad.returncode == 1 and "--max-layer-ratio=nan is not a ratio limit" in bad.stderr
    done = _cli(other, "pull", "-q", "--max-layer-size", "3M", ref)
    assert done.returncode == 0, done.stderr
    assert _cli(other, "images", "-q").stdout.strip()


def test_an_identity_token_is_exchanged_as_docker_does(lamina: Lamina, gate: Proxy) -> None:
    # config.json's `identitytoken` (or a helper's Username "<token>") is an OAuth2
    # refresh token: Docker POSTs it to the realm (grant_type=refresh_token); it is no
    # password for Basic auth.
    config = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    config.write_text(json.dumps({"auths": {gate.host: {"identitytoken": "rt-for-bob"}}}))
    gate.token_requests.clear()
    pulled = _cli(lamina.root, "pull", "-q", f"{gate.host}/team/base:1")
    assert pulled.returncode == 0, pulled.stderr
    assert "rt-for-bob" not in pulled.stdout + pulled.stderr
    assert gate.token_requests and {r["user"] for r in gate.token_requests} == {"<refresh>"}


def test_a_single_platform_image_of_another_platform_is_pulled_with_dockers_warning(
    lamina: Lamina, registry: Registry, busybox_rootfs: Path, tmp_path: Path
) -> None:
    # moby: a single-arch image that does not match --platform is kept (backward
    # compatibility) with a WARNING naming both platforms; an index would refuse it.
    lamina.import_image(busybox_rootfs, "base:1")
    lamina.push("base:1", f"{registry.host}/single/base:1")
    lamina.store.close()
    ref = f"{registry.host}/single/base:1"
    other = tmp_path / "other-root"
    pulled = _cli(other, "pull", "--platform", "linux/s390x", ref)
    assert pulled.returncode == 0, pulled.stderr
    assert (f"WARNING: image with reference {ref} was found but does not match the specified"
            " platform: wanted linux/s390x, actual: linux/") in pulled.stderr  # fmt: skip
    from lamina.oci import host_platform

    same = _cli(tmp_path / "third-root", "pull", "--platform", str(host_platform()), ref)
    assert same.returncode == 0 and "WARNING" not in same.stderr
