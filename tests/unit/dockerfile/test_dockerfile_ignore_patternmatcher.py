""".dockerignore patterns against moby/patternmatcher's own tables (what BuildKit uses).

TestMatches (its MatchesOrParentMatches subtest: a path is ignored when the pattern
matches it or a parent), its multi-pattern cases (a re-included directory inside an
excluded tree), and TestMatch (Go's filepath.Match table it borrows). Paths with a
trailing "/" are left out: lamina only ever asks about cleaned paths.
"""

from __future__ import annotations

import pytest

from lamina.dockerfile import IgnoreRules
from lamina.errors import InvalidInputError

# (pattern, path, ignored)
MATCHES = [
    ("**", "file", True), ("**/", "file", True), ("**", "dir/file", True),
    ("**/", "dir/file", True), ("**/**", "dir/file", True), ("dir/**", "dir/file", True),
    ("dir/**", "dir/dir2/file", True), ("**/dir", "dir", True), ("**/dir", "dir/file", True),
    ("**/dir2/*", "dir/dir2/file", True), ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**file", "file", True), ("**file", "dir/file", True), ("**/file", "dir/file", True),
    ("**file", "dir/dir/file", True), ("**/file", "dir/dir/file", True),
    ("**/file*", "dir/dir/file", True), ("**/file*", "dir/dir/file.txt", True),
    ("**/file*txt", "dir/dir/file.txt", True), ("**/file*.txt", "dir/dir/file.txt", True),
    ("**/file*.txt*", "dir/dir/file.txt", True), ("**/**/*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False), ("**/*.txt", "file.txt", True),
    ("**/**/*.txt", "file.txt", True), ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/file.txt", True), ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False), ("a/*.txt", "a/file.txt", True),
    ("a/*.txt**", "a/file.txt", True), ("a[b-d]e", "ae", False), ("a[b-d]e", "ace", True),
    ("a[b-d]e", "aae", False), ("a[^b-d]e", "aze", True), (".*", ".foo", True),
    (".*", "foo", False), ("abc.def", "abcdef", False), ("abc.def", "abc.def", True),
    ("abc.def", "abcZdef", False), ("abc?def", "abcZdef", True), ("abc?def", "abcdef", False),
    ("**/foo/bar", "foo/bar", True), ("**/foo/bar", "dir/foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True), ("abc/**", "abc", False),
    ("abc/**", "abc/def", True), ("abc/**", "abc/def/ghi", True), ("**/.foo", ".foo", True),
    ("**/.foo", "bar.foo", False), ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False), ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
     "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a\\\\", "a\\", True), ("a\\*b", "a*b", True),
]  # fmt: skip

MULTI = [
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (["**", "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"],
     "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
    (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
    # TestPatternMatchesFolder*Exclusions and TestExclusionPattern*
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["docs/", "!docs/README.md"], "docs/README.md", False),
    (["docs/*", "!docs/README.md"], "docs/README.md", False),
    (["*.go", "!fileutils.go"], "fileutils.go", False),
    (["!fileutils.go", "*.go"], "fileutils.go", True),
]  # fmt: skip

# TestMatch (Go's filepath.Match table): (pattern, path, matches); None = bad pattern.
FILEPATH = [
    ("abc", "abc", True), ("*", "abc", True), ("*c", "abc", True), ("a*", "a", True),
    ("a*", "abc", True), ("a*", "ab/c", True), ("a*/b", "abc/b", True), ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True), ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False), ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True), ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[c]", "abc", True), ("ab[b-d]", "abc", True), ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False), ("ab[^b-d]", "abc", False), ("ab[^e-g]", "abc", True),
    ("a\\*b", "a*b", True), ("a\\*b", "ab", False), ("a?b", "a☺b", True),
    ("a[^a]b", "a☺b", True), ("a???b", "a☺b", False), ("a[^a][^a][^a]b", "a☺b", False),
    ("[a-ζ]*", "α", True),  # noqa: RUF001
     ("*[a-ζ]", "A", False), ("a?b", "a/b", False), ("a*b", "a/b", False),
    ("[\\]a]", "]", True), ("[\\-]", "-", True), ("[x\\-]", "x", True), ("[x\\-]", "-", True),
    ("[x\\-]", "z", False), ("[\\-x]", "x", True), ("[\\-x]", "-", True), ("[\\-x]", "a", False),
    ("[]a]", "]", None), ("[-]", "-", None), ("[x-]", "x", None), ("[-x]", "x", None),
    ("\\", "a", None), ("[a-b-c]", "a", None), ("[", "a", None), ("[^", "a", None),
    ("[^bc", "a", None), ("a[", "a", None), ("*x", "xxx", True),
]  # fmt: skip


@pytest.mark.parametrize(("pattern", "path", "ignored"), MATCHES)
def test_patternmatcher_matches(pattern: str, path: str, ignored: bool) -> None:
    assert IgnoreRules([pattern]).ignored(path) is ignored


@pytest.mark.parametrize(("patterns", "path", "ignored"), MULTI)
def test_patternmatcher_multi(patterns: list[str], path: str, ignored: bool) -> None:
    assert IgnoreRules(patterns).ignored(path) is ignored


@pytest.mark.parametrize(("pattern", "path", "matches"), FILEPATH)
def test_filepath_match_table(pattern: str, path: str, matches: bool | None) -> None:
    if matches is None:
        with pytest.raises(InvalidInputError, match="bad pattern"):
            IgnoreRules([pattern]).ignored(path)
        return
    assert IgnoreRules([pattern]).ignored(path) is matches


def test_single_exclamation_is_refused() -> None:
    """TestSingleExclamationError, and BuildKit's testDockerignoreInvalid."""
    with pytest.raises(InvalidInputError):
        IgnoreRules(["!"])


@pytest.mark.parametrize(
    ("pattern", "path"),
    [(p, path) for p, path, _ in MATCHES] + [(p, path) for p, path, m in FILEPATH if m is not None],
)
def test_linear_matcher_agrees_with_the_regex(pattern: str, path: str) -> None:
    """Past two repeats a pattern is matched without backtracking; on every table entry
    (each segment, and the whole path and its prefixes) both ways give the same answer."""
    import re

    from lamina.dockerfile._ignore import _compile

    for piece in {pattern, *pattern.split("/")}:
        glob = _compile(piece)
        regex = re.compile(glob.source, re.DOTALL)
        for text in {path, *(path[:n] for n in range(len(path)))}:
            assert glob.match_linear(text) is (regex.fullmatch(text) is not None), (piece, text)


@pytest.mark.parametrize(
    "pattern", ["*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", "**/*a*a*a*a*a*a*a*a*a*a*a*a*a*b"]
)
def test_pathological_pattern_is_matched_in_linear_time(pattern: str) -> None:
    """Python's backtracking regex took hours on this (a `lamina build` hung in its
    .dockerignore); RE2 in moby's patternmatcher answers at once, and so does lamina,
    which matches a pattern of more than two repeats without backtracking."""
    rules = IgnoreRules([pattern])
    assert all(p.regex.linear for p in rules.patterns)
    assert rules.ignored("a" * 200) is False
    assert rules.ignored("d/" + "a" * 4000 + "b") is pattern.startswith("**/")
    assert rules.ignored("a" * 4000 + "b") is True
