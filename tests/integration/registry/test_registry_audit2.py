"""A second audit of push/pull/login/logout against docker/cli, moby and the
distribution spec, through the CLI and a real docker-registry: each test failed first."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import httpx
import pytest
from registry_fixtures import Registry
from registry_fixtures import lamina_cli as _cli

from lamina.api import Lamina

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _tags(registry: Registry, repository: str) -> list[str]:
    response = httpx.get(f"http://{registry.host}/v2/{repository}/tags/list")
    if response.status_code == 404:
        return []
    return sorted(response.json().get("tags") or [])


def test_push_to_a_digest_the_image_does_not_have_moves_no_tag(
    lamina: Lamina, registry: Registry, busybox_rootfs: Path
) -> None:
    """`push IMAGE repo:tag@sha256:OTHER` is refused before anything is sent: before,
    the tag was written in the registry and then the command failed."""
    lamina.import_image(busybox_rootfs, "base:1")
    lamina.store.close()
    wrong = "sha256:" + "0" * 64
    out = _cli(lamina.root, "push", "base:1", f"{registry.host}/audit/base:moved@{wrong}")
    assert out.returncode == 1
    assert "the image's digest is sha256:" in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 2
    assert _tags(registry, "audit/base") == []
    # Naming the digest it has is fine, and the tag beside it is written.
    first = _cli(lamina.root, "push", "-q", "base:1", f"{registry.host}/audit/base:1")
    assert first.returncode == 0, first.stderr
    digest = first.stdout.strip()
    again = _cli(lamina.root, "push", "-q", "base:1", f"{registry.host}/audit/base:2@{digest}")
    assert again.returncode == 0, again.stderr
    assert _tags(registry, "audit/base") == ["1", "2"]


def test_push_prints_what_docker_push_prints(
    lamina: Lamina, registry: Registry, busybox_rootfs: Path
) -> None:
    """docker push: "The push refers to repository [R]" first and "TAG: digest: D size: N"
    last, N the manifest's bytes as the registry serves them."""
    lamina.import_image(busybox_rootfs, "base:1")
    lamina.store.close()
    out = _cli(lamina.root, "push", "--progress", "plain", "base:1", f"{registry.host}/show/b")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == f"The push refers to repository [{registry.host}/show/b]"
    served = httpx.get(
        f"http://{registry.host}/v2/show/b/manifests/latest",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json,"
                           "application/vnd.docker.distribution.manifest.v2+json"},
    )  # fmt: skip
    digest = served.headers["docker-content-digest"]
    assert lines[-1] == f"latest: digest: {digest} size: {len(served.content)}"
    quiet = _cli(lamina.root, "push", "-q", "base:1", f"{registry.host}/show/b:2")
    assert quiet.stdout.strip() == digest


def test_push_of_a_tag_already_there_says_each_layer_exists(
    lamina: Lamina, registry: Registry, busybox_rootfs: Path
) -> None:
    """docker push of an unchanged image prints "Layer already exists" per layer; before,
    a manifest the registry had made lamina print nothing and "0 already there"."""
    lamina.import_image(busybox_rootfs, "base:1")
    lamina.store.close()
    target = f"{registry.host}/again/base:1"
    first = _cli(lamina.root, "push", "--progress", "plain", "base:1", target)
    assert first.returncode == 0, first.stderr
    pushed = [line for line in first.stderr.splitlines() if line.endswith(": Pushed")]
    again = _cli(lamina.root, "push", "--progress", "plain", "base:1", target)
    assert again.returncode == 0, again.stderr
    existing = [line for line in again.stderr.splitlines() if "Layer already exists" in line]
    assert len(existing) == len(pushed) >= 2
    assert {line.split(":")[0] for line in existing} == {line.split(":")[0] for line in pushed}
    assert f", {len(pushed)} already there" in again.stdout


def test_push_all_tags_pushes_every_local_tag_of_the_repository(
    lamina: Lamina, registry: Registry, busybox_rootfs: Path
) -> None:
    """docker push -a REPO: every local tag of REPO, none of another; a tag with -a is
    refused with docker/cli's message; a repository with no tag is an error."""
    lamina.import_image(busybox_rootfs, "base:1")
    repo = f"{registry.host}/every/b"
    lamina.tag("base:1", f"{repo}:x")
    lamina.tag("base:1", f"{repo}:y")
    lamina.tag("base:1", f"{registry.host}/every/other:z")
    lamina.store.close()
    out = _cli(lamina.root, "push", "--all-tags", "--progress", "plain", repo)
    assert out.returncode == 0, out.stderr
    assert _tags(registry, "every/b") == ["x", "y"]
    assert _tags(registry, "every/other") == []
    finals = [line.split(":")[0] for line in out.stdout.splitlines() if ": digest: " in line]
    assert finals == ["x", "y"]
    tagged = _cli(lamina.root, "push", "-a", f"{repo}:x")
    assert tagged.returncode == 1
    assert tagged.stderr.strip().splitlines()[0].endswith("tag can't be used with --all-tags/-a")
    missing = _cli(lamina.root, "push", "-a", f"{registry.host}/every/none")
    assert missing.returncode == 1 and "An image does not exist locally" in missing.stderr


def test_login_without_a_user_uses_the_saved_credentials(
    lamina: Lamina, auth_registry: Registry, tmp_path: Path
) -> None:
    """docker login REGISTRY, already logged in and without a terminal, authenticates
    with the saved credentials; saved ones the registry refuses are said to fail, and
    the usual non-TTY error follows, leaving the saved entry as it was."""
    root, host = lamina.root, auth_registry.host
    lamina.store.close()
    nothing = _cli(root, "login", host)
    assert nothing.returncode == 1 and "non TTY" in nothing.stderr
    good = _cli(root, "login", "-u", "alice", "--password-stdin", host, stdin="s3cret")
    assert good.returncode == 0, good.stderr
    again = _cli(root, "login", host)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        "Authenticating with existing credentials...",
        "Login Succeeded",
    ]
    config = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    doc = json.loads(config.read_text())
    doc["auths"][host]["auth"] = base64.b64encode(b"alice:stale-secret").decode()
    config.write_text(json.dumps(doc))
    stale = _cli(root, "login", host)
    assert stale.returncode == 1
    assert "Login did not succeed" in stale.stderr and "non TTY" in stale.stderr
    assert "stale-secret" not in stale.stdout + stale.stderr
    assert json.loads(config.read_text()) == doc


def test_a_registry_name_without_an_address_is_not_blamed_on_tls(tmp_path: Path) -> None:
    """A name that does not resolve (RFC 2606's .invalid): one line and a hint about the
    name; before, the hint told the user to turn TLS checks off."""
    out = _cli(tmp_path / "root", "pull", "no-such-registry.invalid/x:1")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2, out.stderr
    assert "no-such-registry.invalid is unreachable" in lines[0]
    assert "check the registry's name" in lines[1] and "tls-verify" not in out.stderr


def test_pull_all_tags_pulls_every_tag_the_registry_has(
    lamina: Lamina, registry: Registry, busybox_rootfs: Path, tmp_path: Path
) -> None:
    """docker pull -a REPO: every tag of the repository (docker-registry pages them with
    `Link` when asked with n=); a tag with -a is refused with docker/cli's message."""
    lamina.import_image(busybox_rootfs, "base:1")
    repo = f"{registry.host}/many/b"
    for tag in ("v1", "v2", "v3"):
        lamina.push("base:1", f"{repo}:{tag}")
    lamina.store.close()
    root = tmp_path / "pulling"
    out = _cli(root, "pull", "-a", repo)
    assert out.returncode == 0, out.stderr
    assert [line for line in out.stdout.splitlines() if "Pulling from" in line] == [
        f"{tag}: Pulling from {repo}" for tag in ("v1", "v2", "v3")
    ]
    listed = _cli(root, "images", "--format", "{{.Repository}}:{{.Tag}}")
    assert sorted(listed.stdout.split()) == [f"{repo}:v1", f"{repo}:v2", f"{repo}:v3"]
    tagged = _cli(root, "pull", "-a", f"{repo}:v1")
    assert tagged.returncode == 1
    assert tagged.stderr.strip().splitlines()[0].endswith("tag can't be used with --all-tags/-a")
    missing = _cli(root, "pull", "-a", f"{registry.host}/many/none")
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) <= 2


def test_tag_lists_are_read_across_every_page(
    lamina: Lamina, registry: Registry, busybox_rootfs: Path
) -> None:
    """docker-registry pages a tag list asked for with n= through `Link: rel="next"`:
    every page is read, each tag once (distribution 2.8 does not keep them sorted)."""
    from lamina.transport import RegistryClient, list_tags

    lamina.import_image(busybox_rootfs, "base:1")
    tags = [f"t{n}" for n in range(5)]
    for tag in tags:
        lamina.push("base:1", f"{registry.host}/paged/b:{tag}")
    with RegistryClient(registry.host, insecure=True) as client:
        before = client.requests
        paged = list_tags(client, "paged/b", page_size=2)
        assert sorted(paged) == tags and client.requests - before == 3
        before = client.requests
        assert sorted(list_tags(client, "paged/b")) == tags
        assert client.requests - before == 1
