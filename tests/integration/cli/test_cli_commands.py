"""The `lamina` command as a user meets it: Docker's columns, one-line errors, exit codes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from busybox_rootfs import make_busybox_rootfs

pytestmark = pytest.mark.integration


def lamina(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lamina", "--root", str(root), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def ok(root: Path, *args: str) -> str:
    done = lamina(root, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    return make_busybox_rootfs(tmp_path / "rootfs", with_etc=False)


def test_unknown_image_is_one_line_and_exit_1(root: Path) -> None:
    done = lamina(root, "inspect", "nosuch")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[0] == "Error: No such object: nosuch"
    assert "Traceback" not in done.stderr


def test_debug_shows_the_traceback(root: Path) -> None:
    done = lamina(root, "--debug", "inspect", "nosuch")
    assert done.returncode == 1
    assert "Traceback" in done.stderr


def test_usage_errors_exit_2(root: Path) -> None:
    assert lamina(root, "no-such-command").returncode == 2
    assert lamina(root, "load", "--no-such-flag").returncode == 2  # bare load reads stdin
    assert lamina(root, "save", "--format", "zip", "x").returncode == 2


@pytest.mark.slow
def test_images_history_tag_rmi_as_docker_shows_them(root: Path, rootfs: Path) -> None:
    image_id = ok(root, "import", "-m", "the base", str(rootfs), "me/base:1").strip()
    assert image_id.startswith("sha256:")
    ok(root, "tag", "me/base:1", "other")
    lines = ok(root, "images").splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    rows = sorted(line.split()[:3] for line in lines[1:])
    assert rows == [["me/base", "1", image_id[7:19]], ["other", "latest", image_id[7:19]]]
    # docker/cli's quiet format is "{{.ID}}" per row: an ID once per name, as Docker prints it.
    assert ok(root, "images", "-q").split() == [image_id[7:19]] * 2
    assert ok(root, "images", "-q", "--format", "table").split() == [image_id[7:19]] * 2
    assert ok(root, "images", "-q", "--format", "{{.Tag}}").split() == ["1", "latest"]

    history = ok(root, "history", "me/base:1").splitlines()
    assert history[0].split()[:3] == ["IMAGE", "CREATED", "CREATED"]
    assert history[1].startswith(image_id[7:19])
    assert history[1].rstrip().endswith("the base")
    history_rows = [
        json.loads(line)
        for line in ok(root, "history", "--no-trunc", "--format", "json", "me/base:1").splitlines()
    ]
    assert history_rows[0]["ID"] == image_id and history_rows[0]["Comment"] == "the base"
    # pflag's boolean syntax, as `docker history -H=false` is written: raw dates and bytes.
    for flag in ("-H=false", "--human=false", "--human=0"):
        raw = ok(root, "history", flag, "me/base:1").splitlines()
        assert raw[0].split()[:4] == ["IMAGE", "CREATED", "AT", "CREATED"], flag
        assert raw[1].split()[-3].isdigit() and "T" in raw[1].split()[1], raw[1]
    sizes = ("--format", "{{.Size}}", "me/base:1")
    assert ok(root, "history", "-H=true", *sizes) == ok(root, "history", *sizes)
    assert ok(root, "history", "-H=true", *sizes) != ok(root, "history", "-H=false", *sizes)
    quiet = ok(root, "history", "-q", "--format", "table", "me/base:1").split()
    assert quiet == [image_id[7:19]]  # docker/cli: quiet replaces the table format
    bad = lamina(root, "history", "-H=maybe", "me/base:1")
    assert bad.returncode == 2 and 'invalid argument "maybe"' in bad.stderr

    inspected = json.loads(ok(root, "inspect", "other"))
    assert inspected[0]["Id"] == image_id
    assert sorted(inspected[0]["RepoTags"]) == ["me/base:1", "other:latest"]

    # docker's client checks the new name before the daemon looks the image up.
    digest = "sha256:" + "a" * 64
    for source, target, first in (
        ("me/base:1", "App:1", 'Error parsing reference: "App:1" is not a valid repository/tag: '
         "invalid reference format: repository name (library/App) must be lowercase"),
        ("gone", "x:" + "t" * 129, 'Error parsing reference: "x:' + "t" * 129 + '" is not a '
         "valid repository/tag: invalid reference format"),
        ("gone", "x:-bad", 'Error parsing reference: "x:-bad" is not a valid repository/tag: '
         "invalid reference format"),
        ("me/base:1", f"x@{digest}", "refusing to create a tag with a digest reference"),
        ("me/base:1", f"x:1@{digest}", "refusing to create a tag with a digest reference"),
    ):  # fmt: skip
        refused = lamina(root, "tag", source, target)
        assert refused.returncode == 1
        assert refused.stderr.splitlines()[0].startswith(f"Error: {first}"), refused.stderr
    listed = ok(root, "images", "--format", "{{.Repository}}:{{.Tag}}").split()
    assert sorted(listed) == ["me/base:1", "other:latest"]  # no refused name was made
    ok(root, "tag", "me/base:1", "x:" + "t" * 128)  # 128 characters: the longest tag
    ok(root, "tag", image_id[7:13], "byshort")  # tagged by a short ID
    ok(root, "rmi", "x:" + "t" * 128, "byshort")
    # By ID with two names: Docker refuses without -f.
    done = lamina(root, "rmi", image_id[7:19])
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == (  # moby's imageDeleteConflict text
        f"Error: conflict: unable to delete {image_id[7:19]} (must be forced) - "
        "image is referenced in multiple repositories"
    )
    assert ok(root, "rmi", "other").splitlines() == ["Untagged: other:latest"]
    assert ok(root, "rmi", "me/base:1").splitlines() == [
        "Untagged: me/base:1",
        f"Deleted: {image_id}",
    ]
    assert ok(root, "images").splitlines()[1:] == []
    # moby: a missing name is reported with its tag ("latest" when none is given).
    for args, shown in ((("rmi", "me/base"), "me/base:latest"), (("tag", "gone:2", "x"), "gone:2"),
                        (("history", "gone"), "gone:latest")):  # fmt: skip
        missing = lamina(root, *args)
        assert missing.returncode == 1
        assert missing.stderr.splitlines()[0] == f"Error: No such image: {shown}"
    pruned = ok(root, "prune")
    assert "Total reclaimed space" in pruned
    assert os.listdir(root / "blobs" / "sha256") == []


@pytest.mark.slow
def test_df_verbose_counts_shared_layers(root: Path, rootfs: Path, tmp_path: Path) -> None:
    ok(root, "import", str(rootfs), "me/base:1")
    top = tmp_path / "top"
    shutil.copytree(rootfs, top, symlinks=True)
    (top / "hello").write_text("hi\n")
    ok(root, "import", "--base", "me/base:1", str(top), "me/app:1")
    out = ok(root, "df", "-v")
    images = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("me/")}
    assert set(images) == {"me/base", "me/app"}
    layers = out.split("Layers space usage:")[1].splitlines()
    rows = [line.split() for line in layers]
    counts = sorted(r[-1] for r in rows if len(r) == 4 and re.fullmatch("[0-9a-f]{12}", r[0]))
    assert counts == ["1", "2"]


@pytest.mark.slow
def test_fsck_finds_a_corrupt_blob_and_exits_1(root: Path, rootfs: Path) -> None:
    ok(root, "import", str(rootfs), "me/base:1")
    assert "ok" in ok(root, "fsck")
    blobs = sorted((root / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    victim = blobs[-1]
    os.chmod(victim, 0o644)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    done = lamina(root, "fsck")
    assert done.returncode == 1
    assert victim.name in done.stdout


def test_image_group_and_image_prune_as_docker(root: Path, rootfs: Path, tmp_path: Path) -> None:
    """`docker image ls|inspect|tag|history|rm|prune`; prune takes dangling images only
    unless -a (every image no container uses), and prints docker's report."""
    base = ok(root, "import", str(rootfs), "base:1").strip()
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "f").write_text("f")
    dangling = ok(root, "import", str(extra)).strip()
    assert ok(root, "image", "ls", "-q", "--no-trunc").split() == [dangling, base]
    assert ok(root, "image", "list", "--format", "{{.Tag}}", "base") == "1\n"
    assert ok(root, "image", "inspect", "--format", "{{.Id}}", "base:1") == base + "\n"
    missing = lamina(root, "image", "inspect", "nosuch")
    assert missing.returncode == 1
    assert missing.stderr.splitlines()[0] == "Error: No such image: nosuch:latest"
    ok(root, "image", "tag", "base:1", "base:2")
    assert ok(root, "image", "history", "-q", "base:2").split() == [base[7:19]]
    assert ok(root, "image", "rm", "base:2") == "Untagged: base:2\n"

    refused = lamina(root, "image", "prune")  # no answer on stdin: nothing removed
    assert refused.returncode == 1 and "WARNING! This will remove all dangling images." in (
        refused.stdout
    )
    assert len(ok(root, "images", "-q")) > 0 and dangling[7:19] in ok(root, "images", "-q")
    pruned = ok(root, "image", "prune", "-f").splitlines()
    assert pruned[:2] == ["Deleted Images:", f"deleted: {dangling}"]
    assert pruned[-1].startswith("Total reclaimed space: ") and pruned[-1] != (
        "Total reclaimed space: 0B"
    )
    assert ok(root, "images", "-q", "--no-trunc").split() == [base]  # the tagged one stays
    assert ok(root, "image", "prune", "-f") == "Total reclaimed space: 0B\n"
    everything = ok(root, "image", "prune", "-a", "-f").splitlines()
    assert everything[:3] == ["Deleted Images:", "untagged: base:1", f"deleted: {base}"]
    assert ok(root, "images", "-q") == ""


def test_rmi_of_an_image_a_container_uses_is_mobys_conflict(root: Path, rootfs: Path) -> None:
    """moby's image_delete.go: by name, "unable to remove repository reference … (must
    force)"; by ID, "image is being used by stopped container …" (must be forced) or by a
    running one (cannot be forced: -f does not help)."""
    image = ok(root, "import", str(rootfs), "base:1").strip()
    short = image[7:19]
    ok(root, "run", "--name", "stopped", "base:1", "true")
    stopped = ok(root, "ps", "-aq", "--no-trunc").split()[0][:12]
    assert ok(root, "df", "--format", "{{.Type}}={{.Active}}").splitlines()[0] == "Images=1"
    by_name = lamina(root, "rmi", "base:1")
    assert by_name.returncode == 1
    assert by_name.stderr.splitlines()[0] == (
        'Error: conflict: unable to remove repository reference "base:1" (must force) - '
        f"container {stopped} is using its referenced image {short}"
    )
    by_id = lamina(root, "rmi", short)
    assert by_id.returncode == 1
    assert by_id.stderr.splitlines()[0] == (
        f"Error: conflict: unable to delete {short} (must be forced) - "
        f"image is being used by stopped container {stopped}"
    )
    ok(root, "rm", "stopped")
    running = ok(root, "run", "-d", "base:1", "sleep", "60").strip()[:12]
    try:
        forced = lamina(root, "rmi", "-f", short)
        assert forced.returncode == 1
        assert forced.stderr.splitlines()[0] == (
            f"Error: conflict: unable to delete {short} (cannot be forced) - "
            f"image is being used by running container {running}"
        )
        assert ok(root, "images", "--format", "{{.Repository}}:{{.Tag}}") == "base:1\n"
    finally:
        lamina(root, "rm", "-f", running)
