"""`images --filter` parsing and matching: Docker's rules, Go's path.Match for references."""

from __future__ import annotations

import pytest

from lamina.api._filters import (
    match_labels,
    match_pattern,
    match_reference,
    parse_image_filters,
)
from lamina.errors import InvalidInputError


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("busybox", "busybox", True),
        ("busy*", "busybox", True),
        ("*", "library/busybox", False),  # `*` never crosses `/`
        ("*/*", "library/busybox", True),
        ("b?sybox", "busybox", True),
        ("b?sybox", "b/sybox", False),
        ("[a-c]usybox", "busybox", True),
        ("[^a-c]usybox", "busybox", False),
        ("[^a-c]usybox", "dusybox", True),
        ("\\*", "*", True),
        ("\\*", "a", False),
        ("a.b", "aXb", False),  # regex characters are literal
        ("x+", "xx", False),
    ],
)
def test_match_pattern_is_go_path_match(pattern: str, name: str, matches: bool) -> None:
    assert match_pattern(pattern, name) is matches


@pytest.mark.parametrize("pattern", ["[", "[a", "[]", "a\\", "[z-a]", "[-a]"])
def test_a_malformed_pattern_is_refused(pattern: str) -> None:
    with pytest.raises(InvalidInputError, match="syntax error in pattern"):
        match_pattern(pattern, "x")


def test_match_reference_tries_repo_tag_then_repo() -> None:
    assert match_reference("app", "app", "1")
    assert match_reference("app:1", "app", "1")
    assert not match_reference("app:2", "app", "1")
    assert match_reference("*:1", "app", "1")
    assert match_reference("example.com/*/app", "example.com/team/app", "1")


def test_match_labels_needs_every_key_and_value() -> None:
    labels = {"a": "1", "b": ""}
    assert match_labels([("a", None), ("b", None)], labels)
    assert match_labels([("a", "1"), ("b", "")], labels)
    assert not match_labels([("a", "2")], labels)
    assert not match_labels([("c", None)], labels)


def test_parse_image_filters() -> None:
    parsed = parse_image_filters(
        ["dangling=TRUE", "label=a", "label=b=c=d", "reference=x", "before=i", "since=j"]
    )
    assert parsed.dangling is True
    assert parsed.labels == (("a", None), ("b", "c=d"))
    assert parsed.references == ("x",)
    assert (parsed.before, parsed.since) == (("i",), ("j",))
    assert parse_image_filters([]).dangling is None


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["nope=1"], "invalid filter 'nope'"),
        (["dangling"], "bad format of filter"),
        (["dangling=yes please"], "invalid filter 'dangling=yes please'"),
        (["dangling=true", "dangling=false"], "conflicting filters"),
        (["reference=[x"], "syntax error"),
    ],
)
def test_bad_filters_are_refused(items: list[str], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_image_filters(items)
