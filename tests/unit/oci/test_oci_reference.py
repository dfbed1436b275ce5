"""Docker's reference normalisation, from its own documented examples."""

from __future__ import annotations

import pytest

from lamina.errors import InvalidInputError
from lamina.oci import parse_reference

DIGEST = "sha256:" + "ab" * 32


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
    ],
)
def test_refuses_what_docker_refuses(text: str) -> None:
    with pytest.raises(InvalidInputError, match=r"invalid reference format|sha256 digest"):
        parse_reference(text)


def test_uppercase_repository_says_lowercase() -> None:
    with pytest.raises(InvalidInputError, match="must be lowercase"):
        parse_reference("me/MyApp")


# The grammar as Docker's distribution/reference writes it; oci/_reference checks it with
# str methods (no `re` on `lamina run`'s path): both must agree on every string.
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
    pattern = re.compile(GRAMMAR[name])
    for text in _strings():
        assert check(text) == bool(pattern.fullmatch(text)), text


@pytest.mark.parametrize("bad", ["busybox\n", "busybox:1\n", "localhost:5000\n/x", "me/app\n:1"])
def test_a_final_newline_is_no_part_of_a_valid_reference(bad: str) -> None:
    # (The regular expressions ended in `$`, which matches before a final newline.)
    with pytest.raises(InvalidInputError, match="invalid reference format"):
        parse_reference(bad)
