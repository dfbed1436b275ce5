"""Word expansion, table-driven from Docker's reference and BuildKit's lexer cases."""

from __future__ import annotations

import pytest

from lamina.dockerfile import ExpansionError, expand

ENV = {"PWD": "/home", "SHELL": "bash", "EMPTY": "", "TWO": "a b", "ARRAY": "[]"}

CASES = [
    ("hello", "hello"),
    ("he'll'o", "hello"),
    ('he"ll"o', "hello"),
    ("'$PWD'", "$PWD"),
    ('"$PWD"', "/home"),
    ("$PWD", "/home"),
    ("${PWD}", "/home"),
    ("${PWD}x", "/homex"),
    ("$PWDx", ""),
    ("\\$PWD", "$PWD"),
    ('"\\$PWD"', "$PWD"),
    ('"a\\b"', "a\\b"),
    ('"a\\"b"', 'a"b'),
    ("a\\ b", "a b"),
    ("abc\\", "abc"),
    ("$", "$"),
    ("a$", "a$"),
    ("$1", ""),
    ("${EMPTY:-def}", "def"),
    ("${EMPTY-def}", ""),
    ("${UNSET:-def}", "def"),
    ("${UNSET-def}", "def"),
    ("${PWD:-def}", "/home"),
    ("${EMPTY:+alt}", ""),
    ("${EMPTY+alt}", "alt"),
    ("${UNSET+alt}", ""),
    ("${PWD:+alt}", "alt"),
    ("${UNSET:-${SHELL}}", "bash"),
    ("${UNSET:-'a b'}", "a b"),
    ("x${SHELL}y$SHELL", "xbashybash"),
    ("'\\'", "\\"),
    ("${ARRAY}", "[]"),
]


@pytest.mark.parametrize(("word", "expected"), CASES)
def test_expand_table(word: str, expected: str) -> None:
    assert expand(word, ENV).value == expected


def test_backtick_escape_directive() -> None:
    assert expand("`$PWD", ENV, "`").value == "$PWD"
    assert expand("C:\\path", ENV, "`").value == "C:\\path"


@pytest.mark.parametrize(
    "word",
    ["${", "${PWD", "${PWD:-x", "${}", "${:x}", "${PWD:?}", "${PWD?x}", "${PWD#x}", "${PWD/a/b}",
     "'open", '"open', "${PWD!}"],
)  # fmt: skip
def test_bad_syntax_raises(word: str) -> None:
    with pytest.raises(ExpansionError):
        expand(word, ENV)


def test_words_split_on_variable_values_not_quotes() -> None:
    assert expand("$TWO c", ENV).words == ("a", "b", "c")
    assert expand('"$TWO" c', ENV).words == ("a b", "c")


def test_used_and_unset_are_reported() -> None:
    result = expand("$PWD $NOPE ${DEF:-x}", ENV)
    assert result.used == {"PWD"}
    assert result.unset == {"NOPE"}


def test_heredoc_mode_keeps_quotes_and_backslashes() -> None:
    assert expand("'$SHELL' \"x\" \\n", ENV, quotes=False, raw_escapes=True).value == (
        "'bash' \"x\" \\n"
    )
