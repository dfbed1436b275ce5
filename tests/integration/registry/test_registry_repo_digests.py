"""Repo digests on Debian's docker-registry: an image pulled by digest alone keeps its name
(`REPO <none>`, `RepoDigests`), is not dangling, and goes with `rmi REPO@DIGEST`; a pull
by tag and a push record theirs; `REPO@DIGEST` (and `REPO:TAG@DIGEST`) finds the image."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from registry_fixtures import Registry
from registry_fixtures import lamina_cli as _cli

from lamina.api import Lamina
from lamina.errors import ConflictError
from lamina.oci import Descriptor, Index, Platform, media_types, sha256_digest, short_id

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _ok(root: Path, *args: str) -> str:
    done = _cli(root, *args)
    assert done.returncode == 0, (args, done.stderr)
    return str(done.stdout)


def _pushed(lamina: Lamina, busybox_rootfs: Path, target: str) -> tuple[str, str]:
    """An image pushed to `target`: (its manifest digest in the registry, its ID)."""
    image_id = lamina.import_image(busybox_rootfs, "base:1")
    return lamina.push("base:1", target).digest, image_id


def test_an_image_pulled_by_digest_alone_is_named_listed_kept_and_removed_by_that_name(
    lamina: Lamina, registry: Registry, busybox_rootfs: Path, tmp_path: Path
) -> None:
    repo = f"{registry.host}/rd/app"
    digest, image_id = _pushed(lamina, busybox_rootfs, f"{repo}:1")
    lamina.store.close()
    fresh = tmp_path / "fresh"
    _ok(fresh, "pull", "-q", f"{repo}@{digest}")

    listed = _ok(fresh, "images").splitlines()
    assert len(listed) == 2 and listed[1].split()[:3] == [repo, "<none>", short_id(image_id)]
    with_digests = _ok(fresh, "images", "--digests").splitlines()
    assert with_digests[0].split()[:3] == ["REPOSITORY", "TAG", "DIGEST"]
    assert with_digests[1].split()[:4] == [repo, "<none>", digest, short_id(image_id)]
    # docker/cli: a digest-only row's {{.Digest}} is empty unless --digests is given.
    assert _ok(fresh, "images", "--format", "{{.Repository}}|{{.Tag}}|{{.Digest}}") == (
        f"{repo}|<none>|\n"
    )
    assert _ok(fresh, "images", "-q", "-f", "dangling=true") == ""
    assert _ok(fresh, "images", "-q", "-f", "dangling=false") == short_id(image_id) + "\n"
    assert _ok(fresh, "images", "-q", "-f", "reference=*/rd/*") == short_id(image_id) + "\n"
    assert _ok(fresh, "images", "-q", "-f", "reference=*/other/*") == ""
    shown = _ok(fresh, "inspect", "-f", "{{json .RepoDigests}} {{json .RepoTags}}",
                f"{repo}@{digest}")  # fmt: skip
    assert shown == f'["{repo}@{digest}"] []\n'

    # Not dangling: `image prune` (and `prune`) keep it; run and history find it by name.
    assert "deleted:" not in _ok(fresh, "image", "prune", "-f")
    assert _ok(fresh, "images", "-q") == short_id(image_id) + "\n"
    _ok(fresh, "prune")
    assert _ok(fresh, "images", "-q") == short_id(image_id) + "\n"
    ran = _cli(fresh, "run", "--rm", f"{repo}@{digest}", "echo", "by digest")
    assert (ran.returncode, ran.stdout) == (0, "by digest\n"), ran.stderr
    assert _ok(fresh, "history", "-q", f"{repo}@{digest}").split()[0] == short_id(image_id)

    # rmi by that name untags it and, as it was the last name, deletes the image.
    assert _ok(fresh, "rmi", f"{repo}@{digest}").splitlines() == [
        f"Untagged: {repo}@{digest}",
        f"Deleted: {image_id}",
    ]
    assert _ok(fresh, "images", "-a", "-q") == ""
    gone = _cli(fresh, "inspect", f"{repo}@{digest}")
    assert gone.returncode == 1


def test_a_push_and_a_pull_by_tag_record_the_repo_digest_and_rmi_of_the_tag_takes_both(
    lamina: Lamina, other: Lamina, registry: Registry, busybox_rootfs: Path
) -> None:
    repo = f"{registry.host}/rd/tagged"
    digest, image_id = _pushed(lamina, busybox_rootfs, f"{repo}:1")
    assert lamina.inspect("base:1")["RepoDigests"] == [f"{repo}@{digest}"]  # pushed

    other.pull(f"{repo}:1")
    doc = other.inspect(f"{repo}:1")
    assert (doc["RepoTags"], doc["RepoDigests"]) == ([f"{repo}:1"], [f"{repo}@{digest}"])
    (summary,) = other.images()
    assert summary.repo_digests == ((repo, digest),)
    # moby: untagging the last tag of a repository takes that repository's digests too,
    # and with no name left the image goes.
    assert other.rmi([f"{repo}:1"]) == [
        f"Untagged: {repo}:1",
        f"Untagged: {repo}@{digest}",
        f"Deleted: {image_id}",
    ]
    assert other.store.list_images() == []


def test_names_by_digest_resolve_for_tag_push_and_rmi_follows_mobys_reference_rules(
    lamina: Lamina, other: Lamina, registry: Registry, busybox_rootfs: Path
) -> None:
    repo = f"{registry.host}/rd/names"
    digest, image_id = _pushed(lamina, busybox_rootfs, f"{repo}:1")
    other.pull(f"{repo}@{digest}")
    # A tag beside the digest is not looked at: the digest decides (as Docker's store).
    assert other.resolve(f"{repo}:nope@{digest}").id == image_id
    other.tag(f"{repo}@{digest}", "local:1")
    copy = other.push(f"{repo}@{digest}", f"{registry.host}/rd/copy:1")
    assert copy.digest == digest  # the same manifest, now also known in rd/copy
    assert other.inspect("local:1")["RepoDigests"] == [
        f"{registry.host}/rd/copy@{digest}",
        f"{repo}@{digest}",
    ]
    # By ID: a tag and digests of other repositories are not one reference.
    with pytest.raises(ConflictError, match="referenced in multiple repositories"):
        other.rmi([image_id])
    # By one digest: only that name goes.
    assert other.rmi([f"{repo}@{digest}"]) == [f"Untagged: {repo}@{digest}"]
    assert other.resolve("local:1").repo_digests == (f"{registry.host}/rd/copy@{digest}",)
    # `image prune -a` names every name it removes, in moby's order (familiar, lexical).
    lines, _ = other.prune_images(all_images=True)
    assert lines == [
        f"untagged: {registry.host}/rd/copy@{digest}",
        "untagged: local:1",
        f"deleted: {image_id}",
    ]
    assert other.store.list_images() == []


def test_a_pull_by_tag_of_an_index_records_the_index_digest(
    lamina: Lamina, other: Lamina, registry: Registry, busybox_rootfs: Path
) -> None:
    amd, _ = _pushed(lamina, busybox_rootfs, f"{registry.host}/multi/app:amd64")
    manifest = httpx.get(
        f"http://{registry.host}/v2/multi/app/manifests/{amd}",
        headers={"Accept": media_types.OCI_MANIFEST},
    ).content
    assert sha256_digest(manifest) == amd
    index = Index(
        (Descriptor(media_types.OCI_MANIFEST, amd, len(manifest),
                    platform=Platform("linux", "amd64")),)
    ).to_bytes()  # fmt: skip
    put = httpx.put(
        f"http://{registry.host}/v2/multi/app/manifests/multi",
        content=index,
        headers={"Content-Type": media_types.OCI_INDEX},
    )
    assert put.status_code == 201
    got = other.pull(f"{registry.host}/multi/app:multi", platform="linux/amd64")
    assert got.digest == amd
    # Docker names the image by the digest its tag resolved to: the index's.
    name = f"{registry.host}/multi/app@{sha256_digest(index)}"
    assert other.inspect(got.image_id)["RepoDigests"] == [name]
    assert other.resolve(name).digest == amd
    assert other.inspect(name)["Id"] == got.image_id


def test_rmi_of_an_id_whose_names_are_one_tag_and_its_repositorys_digests_needs_no_force(
    lamina: Lamina, busybox_rootfs: Path
) -> None:
    image_id = lamina.import_image(busybox_rootfs, "reg.example/app:1")
    image = lamina.resolve(image_id)
    named = [f"reg.example/app@{sha256_digest(n)}" for n in (b"a", b"b")]
    for name in named:
        lamina.store.repo_digests.add(name, image.digest)
    lamina.tag(image_id, "reg.example/app:2")
    with pytest.raises(ConflictError, match="referenced in multiple repositories"):
        lamina.rmi([image_id])  # two tags
    assert lamina.rmi(["reg.example/app:2"]) == ["Untagged: reg.example/app:2"]
    assert lamina.rmi([short_id(image_id)]) == [
        "Untagged: reg.example/app:1",
        *(f"Untagged: {name}" for name in sorted(named)),
        f"Deleted: {image_id}",
    ]
    assert lamina.store.list_images() == []
