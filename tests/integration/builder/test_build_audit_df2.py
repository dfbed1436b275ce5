"""Second Dockerfile parity audit (auditdf2): gaps found by building small Dockerfiles with
lamina and buildah side by side; each test names the Docker/BuildKit rule it checks."""

from __future__ import annotations

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
