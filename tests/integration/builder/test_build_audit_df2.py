"""Second Dockerfile parity audit (auditdf2): gaps found by building small Dockerfiles with
lamina and buildah side by side; each test names the Docker/BuildKit rule it checks."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lamina.errors import LaminaError

pytestmark = pytest.mark.integration


def test_reincluded_file_under_an_ignored_dir_is_copied(build, context: Path, image_tree) -> None:  # type: ignore[no-untyped-def]
    """.dockerignore `keep/` then `!keep/sub/k`: the file is sent with its parent directories
    (BuildKit's fsutil includes the parents of a re-included path; buildah agrees). lamina
    crashed with FileNotFoundError writing keep/sub/k."""
    (context / "keep/sub").mkdir(parents=True)
    (context / "keep/sub/k").write_text("k\n")
    (context / "keep/sub/other").write_text("o\n")
    (context / ".dockerignore").write_text("keep/\n!keep/sub/k\n")
    build("FROM busybox\nCOPY . /ctx/\n", tags=["reinc"])
    with image_tree("reinc") as root:
        assert (root / "ctx/keep/sub/k").read_text() == "k\n"
        assert not (root / "ctx/keep/sub/other").exists()
        assert sorted(p.name for p in (root / "ctx/keep").iterdir()) == ["sub"]


def test_from_an_image_that_cannot_be_had_names_the_from_line(build, lam) -> None:  # type: ignore[no-untyped-def]
    """BuildKit points at the FROM line when its image cannot be resolved, as it does for
    every other step; lamina's message had no Dockerfile:N."""
    with pytest.raises(LaminaError, match=r"^Dockerfile:3: no such image: 127\.0\.0\.1:1/none"):
        build("FROM busybox\nRUN true\nFROM 127.0.0.1:1/none:latest\n", tags=["nofrom"])
    tags = [t for i in lam.store.list_images() for t in i.tags]
    assert tags == ["docker.io/library/busybox:latest"]


def test_user_and_workdir_empty_after_expansion(build, lam) -> None:  # type: ignore[no-untyped-def]
    """BuildKit expands `USER $UNSET` to "" (root, its dispatchUser takes any string) and
    `WORKDIR $UNSET` to the current directory (util/system NormalizePath: an empty path is
    the parent). lamina refused both; a group without a user is still refused."""
    built = build(
        "FROM busybox\nUSER app\nUSER ${NOPE}\nRUN id -u\nWORKDIR /w\nWORKDIR ${NOPE}\n"
        "RUN pwd\n",
        tags=["emptyexp"],
    )
    assert built.output().split() == ["0", "/w"]
    config = lam.inspect("emptyexp")["Config"]
    assert (config["User"], config["WorkingDir"]) == ("", "/w")
    with pytest.raises(LaminaError, match=r"^Dockerfile:2: USER has a group but no user"):
        build("FROM busybox\nUSER ${NOPE}:staff\n")


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        # A directory of the context onto a symlink of the image (merged-usr /lib).
        ("RUN mkdir -p /usr/lib && ln -s usr/lib /lib\nCOPY tree/ /\n",
         r"cannot copy to non-directory: /lib is a symlink in the image"),
        # A file of the context onto a directory of the image.
        ("COPY flat/ /\n", r"cannot replace directory /etc with a file"),
        ("COPY <<etc /\nx\netc\n", r"cannot replace directory /etc with a file"),
        # A directory onto a file, named as the destination.
        ("COPY tree /etc/passwd\n", r"not a directory: /etc/passwd is a file in the image"),
        # A file into a "directory" that is a file.
        ("COPY flat/etc /etc/passwd/\n", r"not a directory: /etc/passwd is a file"),
        ("WORKDIR /etc/passwd/sub\n", r"not a directory: /etc/passwd is a file"),
    ],
)
def test_copy_never_swaps_a_directory_and_a_non_directory(  # type: ignore[no-untyped-def]
    build, lam, context: Path, steps: str, message: str
) -> None:
    """BuildKit's copier (fsutil copy: copyDirectoryOnly, ensureEmptyFileTarget, MkdirAll)
    refuses to put a directory where the image has a file or symlink, or a file where it
    has a directory. lamina replaced them silently: `COPY tree/ /` turned the image's /lib
    symlink into a directory, a file named etc replaced /etc, and a directory at
    /etc/passwd made the next RUN crash reading it."""
    (context / "tree/lib").mkdir(parents=True)
    (context / "tree/lib/x.so").write_text("so\n")
    (context / "flat").mkdir()
    (context / "flat/etc").write_text("not a dir\n")
    with pytest.raises(LaminaError, match=rf"^Dockerfile:\d+: {message}"):
        build(f"FROM busybox\n{steps}", tags=["swapped"])
    tags = [t for i in lam.store.list_images() for t in i.tags]
    assert tags == ["docker.io/library/busybox:latest"]


def test_copy_still_merges_and_replaces_like_for_like(build, context: Path, image_tree) -> None:  # type: ignore[no-untyped-def]
    """The other half of the same rules: a directory merges into a directory, a file
    replaces a file, an ADDed archive's directory replaces the image's file (Docker's
    untar removes what is in the way), and a destination symlink is followed."""
    (context / "tree/etc").mkdir(parents=True)
    (context / "tree/etc/new").write_text("n\n")
    (context / "tree/etc/passwd").write_text("root:x:0:0::/:/bin/sh\n")
    sub = context / "arch/spot"
    sub.mkdir(parents=True)
    (sub / "f").write_text("f\n")
    subprocess.run(["tar", "cf", str(context / "a.tar"), "-C", str(context / "arch"), "spot"],
                   check=True)  # fmt: skip
    build(
        "FROM busybox\nRUN echo old > /spot && mkdir /real && ln -s /real /lnk\n"
        "COPY tree/ /\nADD a.tar /\nCOPY tree/etc/new /lnk\n",
        tags=["likes"],
    )
    with image_tree("likes") as root:
        assert (root / "etc/new").read_text() == "n\n"
        assert (root / "etc/passwd").read_text() == "root:x:0:0::/:/bin/sh\n"
        assert (root / "etc/group").exists()
        assert (root / "spot/f").read_text() == "f\n"
        assert (root / "real/new").read_text() == "n\n" and (root / "lnk").is_symlink()


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mounts") as f:
        return [line for line in f if str(path) in line]


def test_context_bind_mount_obeys_dockerignore(build, context: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """BuildKit sends the context with .dockerignore applied, so `RUN --mount=type=bind`
    of it never shows an ignored file. lamina bind-mounted the context directory itself:
    secret.txt and keep/o were readable by the RUN."""
    (context / "keep").mkdir()
    (context / "keep/k").write_text("k\n")
    (context / "keep/o").write_text("o\n")
    (context / "gone").mkdir()
    (context / "gone/g").write_text("g\n")
    (context / "secret.txt").write_text("s\n")
    (context / ".dockerignore").write_text("secret.txt\nkeep\n!keep/k\ngone\n")
    os.chmod(context / "keep", 0o750)
    built = build(
        "FROM busybox\n"
        "RUN --mount=type=bind,target=/src find /src | sort\n"
        "RUN --mount=type=bind,source=keep,target=/k find /k | sort\n"
        "RUN --mount=type=bind,target=/w,rw echo new > /w/secret.txt && ls -A /w && "
        "stat -c %a /w/keep\n",
    )
    assert built.output().split() == [
        "/src", "/src/.dockerignore", "/src/Dockerfile", "/src/keep", "/src/keep/k",
        "/k", "/k/k",
        ".dockerignore", "Dockerfile", "keep", "secret.txt", "750",
    ]  # fmt: skip
    assert (context / "secret.txt").read_text() == "s\n"  # rw writes stay in the step
    with pytest.raises(LaminaError, match=r"^Dockerfile:2: RUN --mount source 'secret.txt' "
                       r"is excluded by"):  # fmt: skip
        build("FROM busybox\nRUN --mount=type=bind,source=secret.txt,target=/s cat /s\n")
    assert _mounts_under(tmp_path) == []


def test_add_errors_name_add(build) -> None:  # type: ignore[no-untyped-def]
    """A missing ADD source was reported as a "COPY source"."""
    with pytest.raises(LaminaError, match=r"^Dockerfile:2: ADD source 'nothere' not found"):
        build("FROM busybox\nADD nothere /x\n")
