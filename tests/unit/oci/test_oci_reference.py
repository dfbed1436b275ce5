"""Docker's reference normalisation, from its own documented examples."""

from __future__ import annotations

import pytest

from lamina.errors import InvalidInputError
from lamina.oci import parse_reference

DIGEST = "sha256:" + "ab" * 32
_REFUSED = r"invalid reference format|invalid repository name|sha256 digest"


@pytest.mark.parametrize(
    ("text", "full", "familiar"),
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("me/app:v1", "docker.io/me/app:v1", "me/app:v1"),
        ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
        ("localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b:t"),
        ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest", "127.0.0.1:5000/x:latest"),
        ("quay.io/org/img", "quay.io/org/img:latest", "quay.io/org/img:latest"),
        (
            f"localhost:5000/a/b@{DIGEST}",
            f"localhost:5000/a/b@{DIGEST}",
            f"localhost:5000/a/b@{DIGEST}",
        ),
        (f"busybox:1@{DIGEST}", f"docker.io/library/busybox:1@{DIGEST}", f"busybox:1@{DIGEST}"),
        ("a__b/c-d.e_f", "docker.io/a__b/c-d.e_f:latest", "a__b/c-d.e_f:latest"),
    ],
)
def test_normalises_as_docker_does(text: str, full: str, familiar: str) -> None:
    ref = parse_reference(text)
    assert str(ref) == full
    assert ref.familiar() == familiar


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Busybox",
        "busybox:",
        "busybox:-x",
        "a//b",
        "-a",
        "a:b:c",
        "busybox@sha256:short",
        "busybox@md5:" + "a" * 32,
        "a" * 64,
        "x/" + "a" * 300,
        "has space",
        # Go's regexps anchor at the very end and match ASCII only: no trailing newline
        # slips past `$`, and `\w` is not a Unicode letter.
        "busybox\n",
        "busybox:v1\n",
        f"busybox@{DIGEST}\n",
        "busybox:\u00e9t\u00e9",
        "busybox:\u0661",
        # An empty digest after `@` is not "no digest".
        "busybox@",
        "busybox:v1@",
    ],
)
def test_refuses_what_docker_refuses(text: str) -> None:
    with pytest.raises(InvalidInputError, match=_REFUSED):
        parse_reference(text)


def test_uppercase_repository_says_lowercase() -> None:
    with pytest.raises(InvalidInputError, match="must be lowercase"):
        parse_reference("me/MyApp")


_HEX_NAME = r"invalid repository name \(a{64}\), cannot specify 64-byte hexadecimal strings"


def test_a_64_hex_name_gets_dockers_message() -> None:
    with pytest.raises(
        InvalidInputError,
        match=_HEX_NAME,
    ):
        parse_reference("a" * 64)


@pytest.mark.parametrize("value", [f"{DIGEST}\n", f"{DIGEST}\r", f" {DIGEST}"])
def test_a_digest_is_exactly_its_shape(value: str) -> None:
    from lamina.oci import check_digest, is_digest

    assert not is_digest(value)
    with pytest.raises(InvalidInputError, match="is not a sha256 digest"):
        check_digest(value)
