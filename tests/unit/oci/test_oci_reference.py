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


# The grammar as Docker's distribution/reference writes it (Go regexps: whole string, ASCII);
# oci/_reference checks it with str methods (no `re` on `lamina run`'s path): both must agree
# on every string.
GRAMMAR = {
    "_is_component": r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*",
    "_is_tag": r"[\w][\w.-]{0,127}",
    "_is_domain": r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
                  r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
                  r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?",
}  # fmt: skip


def _strings() -> list[str]:
    import random

    rng = random.Random(10)
    alphabet = "ab0Z9._-:[]/_.-é٣\n ."
    out = ["", "a", "a.b", "a..b", "a__b", "a___b", "a--b", "a-_b", "a._b", "_a", "a_",
           "[::1]", "[::1]:5000", "[]", "[::1", "a:", "a:5000", "a:50:00", "a.b.c:1",
           "-a", "a-", "a.-b", "A", "x" * 128, "x" * 129, "a\n", "localhost:5000",
           "\u0663", "a\u0663", ".a", "a.", "a:٣"]  # fmt: skip
    for _ in range(20000):
        out.append("".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 9))))
    return out


@pytest.mark.parametrize("name", sorted(GRAMMAR))
def test_the_grammar_checks_agree_with_docker_s_regular_expressions(name: str) -> None:
    import re

    from lamina.oci import _reference

    check = getattr(_reference, name)
    pattern = re.compile(GRAMMAR[name], re.ASCII)
    for text in _strings():
        assert check(text) == bool(pattern.fullmatch(text)), text


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
