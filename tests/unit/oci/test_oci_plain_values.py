"""History and Reference are plain read-only classes (no dataclass: `lamina run` loads them):
positional order, equality, hashing and immutability as the dataclasses had them."""

from __future__ import annotations

import pytest

from lamina.oci import History, Reference, parse_reference


def test_history_fields_in_order() -> None:
    h = History("2020-01-01T00:00:00Z", "RUN x", "a comment", "me", True)
    assert (h.created, h.created_by, h.comment, h.author, h.empty_layer) == (
        "2020-01-01T00:00:00Z", "RUN x", "a comment", "me", True)  # fmt: skip
    assert h.to_json() == {"created": "2020-01-01T00:00:00Z", "created_by": "RUN x",
                           "comment": "a comment", "author": "me", "empty_layer": True}  # fmt: skip
    assert History.from_json(h.to_json()) == h
    assert History(created_by="x") == History("", "x")
    assert History(created_by="x") != History(comment="x")
    assert len({History("a"), History("a"), History("b")}) == 2
    with pytest.raises(AttributeError):
        h.comment = "changed"
    assert "created_by='RUN x'" in repr(h)


def test_reference_fields_equality_and_immutability() -> None:
    ref = parse_reference("busybox")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("docker.io", "library/busybox",
                                                           "latest", "")  # fmt: skip
    assert ref == Reference("docker.io", "library/busybox", "latest")
    assert ref != Reference("docker.io", "library/busybox", "1")
    assert len({ref, parse_reference("docker.io/library/busybox:latest")}) == 1
    assert str(ref) == "docker.io/library/busybox:latest" and ref.familiar() == "busybox:latest"
    with pytest.raises(AttributeError):
        ref.tag = "2"


GOOD_HEX = "0123456789abcdef" * 4


@pytest.mark.parametrize("bad", [
    f"sha256:{GOOD_HEX}\n",  # a regex's `$` lets a final newline through: a file name with one
    f"sha256:{GOOD_HEX[:-1]}", f"sha256:{GOOD_HEX}0", f"sha256:{GOOD_HEX.upper()}",
    f"sha512:{GOOD_HEX}", f"SHA256:{GOOD_HEX}", f" sha256:{GOOD_HEX}", f"sha256:{GOOD_HEX} ",
    f"sha256:{GOOD_HEX[:-1]}g", f"sha256:{GOOD_HEX[:-2]}+1", "sha256:", "", 7, None,
    f"sha256:{GOOD_HEX[:-1]}\u0661",  # an Arabic-Indic digit: a digit, but not hex
])  # fmt: skip
def test_a_digest_is_sha256_and_exactly_64_lowercase_hex_digits(bad: object) -> None:
    from lamina.errors import InvalidInputError
    from lamina.oci import check_digest, is_digest

    if isinstance(bad, str):
        assert not is_digest(bad)
    with pytest.raises(InvalidInputError, match="is not a sha256 digest"):
        check_digest(bad)
    assert check_digest(f"sha256:{GOOD_HEX}") == f"sha256:{GOOD_HEX}"
    assert is_digest(f"sha256:{GOOD_HEX}")
