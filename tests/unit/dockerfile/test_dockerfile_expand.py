"""Word expansion, table-driven from Docker's reference and BuildKit's lexer cases."""

from __future__ import annotations

import random
import re

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
    ["${", "${PWD", "${PWD:-x", "${}", "${:x}", "${EMPTY:?}", "${UNSET?x}", "${PWD:#x}",
     "${PWD/a}", "'open", '"open', "${PWD!}", "${PWD=x}"],
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


# moby/buildkit frontend/dockerfile/shell/lex_test.go, TestProcessWithMatches: (word, env,
# expected value or None for an error, names matched, names unmatched).
BUILDKIT_MATCHES: list[tuple[str, dict[str, str], str | None, set[str], set[str]]] = [
    ("x", {"DUMMY": "dummy"}, "x", set(), set()),
    ("x ${UNUSED}", {"DUMMY": "dummy"}, "x ", set(), {"UNUSED"}),
    ("x ${FOO}", {"FOO": "y"}, "x y", {"FOO"}, set()),
    ("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx  ccc", {"FOO", "BAR"},
     {"BAZ"}),
    ("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx bbb ccc",
     {"FOO", "BAR"}, {"BAZ"}),
    ("${FOO:-}", {"FOO": "xxx", "BAR": ""}, "xxx", {"FOO"}, set()),
    ("${FOO:-}", {}, "", set(), {"FOO"}),
    ("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa bbb ", {"FOO", "BAR"},
     {"BAZ"}),
    ("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa  ", {"FOO", "BAR"},
     {"BAZ"}),
    ("${FOO?aaa}", {"FOO": "xxx", "BAR": ""}, "xxx", {"FOO"}, set()),
    ("${BAR?bbb}", {"FOO": "xxx", "BAR": ""}, "", {"BAR"}, set()),
    ("${BAZ?ccc}", {"FOO": "xxx", "BAR": ""}, None, set(), set()),
    ("${FOO:?aaa}", {"FOO": "xxx", "BAR": ""}, "xxx", {"FOO"}, set()),
    ("${BAR:?bbb}", {"FOO": "xxx", "BAR": ""}, None, set(), set()),
    ("${BAZ:?ccc}", {"FOO": "xxx", "BAR": ""}, None, set(), set()),
    ("${BAZ:?}", {"FOO": "xxx", "BAR": ""}, None, set(), set()),
    ("${FOO=aaa}", {"FOO": "xxx", "BAR": ""}, None, set(), set()),
    ("${FOO=:aaa}", {"FOO": "xxx", "BAR": ""}, None, set(), set()),
    ("${FOO=}", {}, None, set(), set()),
    ("${FOO#()[]{\\}^$.\\*\\?|\\\\}", {"FOO": "()[]{}^$.*?|\\x"}, "x", {"FOO"}, set()),
    ("${FOO%%\\**}", {"FOO": "xx**"}, "xx", {"FOO"}, set()),
    ("${FOO#*x*y}", {"FOO": "xxyy"}, "y", {"FOO"}, set()),
    ("${FOO#*}", {"FOO": "xxyy"}, "xxyy", {"FOO"}, set()),
    ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": "x"}, "xyy", {"FOO", "BAR"}, set()),
    ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": ""}, "xxyy", {"FOO", "BAR"}, set()),
    ("${FOO#}", {"FOO": "xxyy"}, "xxyy", {"FOO"}, set()),
    ("${FOO##*x}", {"FOO": "xxyy"}, "yy", {"FOO"}, set()),
    ("${FOO##}", {"FOO": "xxyy"}, "xxyy", {"FOO"}, set()),
    ("${FOO#?\\?}", {"FOO": "???y"}, "?y", {"FOO"}, set()),
    ("${ABC:-.}${FOO%x}${ABC:-.}", {"FOO": "xxyy"}, ".xxyy.", {"FOO"}, {"ABC"}),
    ("${FOO%%\\**\\*}", {"FOO": "a***yy*"}, "a", {"FOO"}, set()),
    ("${FOO%}", {"FOO": "xxyy"}, "xxyy", {"FOO"}, set()),
    ("${FOO%%$BAR}", {"FOO": "xxyy", "BAR": ""}, "xxyy", {"FOO", "BAR"}, set()),
    ("${FOO:#}", {}, None, set(), set()),
    ("${FOO:##}", {}, None, set(), set()),
    ("${FOO:%}", {}, None, set(), set()),
    ("${FOO:%%}", {}, None, set(), set()),
    ("${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", {"FOO": "/foo*/*/*.txt", "NEEDLE": "\\*/"},
     "/foo.*/*.txt - /foo..*.txt", {"FOO", "NEEDLE"}, set()),
    ("${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}", {"FOO": "/tmp/tmp/bar.txt", "NEEDLE": "/tmp"},
     "/tmp/bar.txt - /bar.txt", {"FOO", "NEEDLE"}, set()),
    ("${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
     {"FOO": "/a/foo/b/c.txt", "NEEDLE": "/?/", "REPLACEMENT": "/"}, "/foo/b/c.txt - /foo/c.txt",
     {"FOO", "NEEDLE", "REPLACEMENT"}, set()),
    ("${FOO/$NEEDLE/$REPLACEMENT}",
     {"FOO": "http://google.de", "NEEDLE": "http://", "REPLACEMENT": "https://"},
     "https://google.de", {"FOO", "NEEDLE", "REPLACEMENT"}, set()),
    ("${FOO//\\//\\/}", {"FOO": "/tmp/foo.txt"}, "\\/tmp\\/foo.txt", {"FOO"}, set()),
    ("${FOO/$BAR/ww}", {"FOO": "xxyy", "BAR": ""}, "wwxxyy", {"FOO", "BAR"}, set()),
    ("${FOO//ww}", {"FOO": "xxyy"}, None, set(), set()),
    ("${FOO//}", {"FOO": "xxyy"}, None, set(), set()),
    ("${FOO///}", {"FOO": "xxyy"}, "xxyy", {"FOO"}, set()),
    ("${FOO///}", {}, "", set(), {"FOO"}),
]  # fmt: skip


@pytest.mark.parametrize(("word", "env", "expected", "matched", "unmatched"), BUILDKIT_MATCHES)
def test_buildkit_process_with_matches(
    word: str, env: dict[str, str], expected: str | None, matched: set[str], unmatched: set[str]
) -> None:
    if expected is None:
        with pytest.raises(ExpansionError):
            expand(word, env)
        return
    result = expand(word, env)
    assert result.value == expected
    assert result.used == matched
    # lamina counts a name as unset only where no default covers it (UndefinedVar's rule),
    # so it reports a subset of BuildKit's "unmatched".
    assert result.unset <= unmatched


def test_required_message_names_the_variable() -> None:
    """`${V:?message}` fails with BuildKit's text: "V: message" or its default."""
    with pytest.raises(ExpansionError, match=r"^V: set V first$"):
        expand("${V:?set V first}", {})
    with pytest.raises(ExpansionError, match=r"^V: is not allowed to be empty$"):
        expand("${V:?}", {"V": ""})
    with pytest.raises(ExpansionError, match=r"^V: is not allowed to be unset$"):
        expand("${V?}", {})


def test_deep_nesting_is_an_expansion_error_not_a_recursion_error() -> None:
    assert expand("${A:-" * 60 + "x" + "}" * 60, {}).value == "x"
    with pytest.raises(ExpansionError, match="nested more than"):
        expand("${A:-" * 5000 + "x" + "}" * 5000, {})


def test_an_expansion_is_bounded() -> None:
    env = {"A": "a" * 1000}
    assert len(expand("$A" * 1000, env).value) == 1_000_000
    with pytest.raises(ExpansionError, match="longer than"):
        expand("$A" * 2000, env)
    with pytest.raises(ExpansionError, match="longer than"):
        expand('"' + "${A}" * 2000 + '"', env)


def _regex_reference(pattern: str, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """How these patterns were matched before: a backtracking regex (exact, but
    exponential on some patterns), kept here as the reference on small inputs."""
    star = ".*" if greedy else ".*?"
    body = "".join(star if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile(("^" if anchored else "") + body)


def test_pattern_modifiers_agree_with_a_backtracking_regex() -> None:
    rng = random.Random(11)
    for _ in range(3000):
        pattern = "".join(rng.choice("ab*?") for _ in range(rng.randint(0, 5)))
        value = "".join(rng.choice("abc") for _ in range(rng.randint(0, 8)))
        env = {"V": value}
        for op, greedy in (("#", False), ("##", True)):
            m = _regex_reference(pattern, greedy, anchored=True).search(value)
            want = value[m.end() :] if m else value
            assert expand(f"${{V{op}{pattern}}}", env).value == want, (op, pattern, value)
        for op, greedy in (("%", False), ("%%", True)):
            m = _regex_reference(pattern[::-1], greedy, anchored=True).search(value[::-1])
            want = (value[::-1][m.end() :] if m else value[::-1])[::-1]
            assert expand(f"${{V{op}{pattern}}}", env).value == want, (op, pattern, value)
        if not pattern:
            continue  # `${V//X}` is another word: a missing '/'
        regex = _regex_reference(pattern, True, anchored=False)
        for op, count in (("/", 1), ("//", 0)):
            want = regex.sub(lambda _m: "X", value, count=count)
            assert expand(f"${{V{op}{pattern}/X}}", env).value == want, (op, pattern, value)


@pytest.mark.parametrize(
    "word",
    ["${A%%*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b}", "${A#*a*a*a*a*a*a*a*a*a*a*a*a*b}",
     "${A/*a*a*a*a*a*a*a*a*a*a*a*a*b/x}", "${A//*a*a*a*a*a*a*a*a*a*a*a*a*b/x}"],
)  # fmt: skip
def test_pathological_patterns_do_not_backtrack(word: str) -> None:
    """These took Python's backtracking regex hours over 80 a's (a build hung): they are
    answered by advancing pattern positions, a few hundred steps per character."""
    value = "a" * 4000
    assert expand(word, {"A": value}).value == value
