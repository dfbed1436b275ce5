"""`.dockerignore` patterns and context selection."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lamina.dockerfile import IgnoreRules, load_dockerignore, select_sources
from lamina.errors import InvalidInputError

PATTERN_CASES = [
    # (patterns, path, ignored) — from Docker's .dockerignore reference and patternmatcher
    (["*/temp*"], "somedir/temporary.txt", True),
    (["*/temp*"], "somedir/temp", True),
    (["*/temp*"], "temp.txt", False),
    (["*/*/temp*"], "somedir/subdir/temporary.txt", True),
    (["temp?"], "tempa", True),
    (["temp?"], "tempab", False),
    (["**/*.go"], "a/b/c.go", True),
    (["**/*.go"], "c.go", True),
    (["*.md", "!README.md"], "README.md", False),
    (["*.md", "!README.md"], "CHANGES.md", True),
    (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
    (["*.md", "!README*.md", "README-secret.md"], "README-x.md", False),
    (["/build/"], "build/out.o", True),
    (["./dist"], "dist", True),
    (["a/../b"], "b/c", True),
    (["docs"], "docs/deep/file", True),
    (["docs/**"], "docs/x", True),
    (["[a-c].txt"], "b.txt", True),
    (["[^a-c].txt"], "b.txt", False),
    (["\\*"], "*", True),
    (["\\*"], "a", False),
    (["# comment", ""], "# comment", False),
    # patternmatcher's ReadAll skips a line starting with '#' before trimming: an
    # indented '#' is a pattern (lamina read it as a comment).
    (["  # not a comment"], "# not a comment", True),
    (["  # not a comment"], "other", False),
    (["  spaced.txt  "], "spaced.txt", True),
]


@pytest.mark.parametrize(("patterns", "path", "ignored"), PATTERN_CASES)
def test_patterns(patterns: list[str], path: str, ignored: bool) -> None:
    assert IgnoreRules(patterns).ignored(path) is ignored


def test_bad_pattern_names_line() -> None:
    with pytest.raises(InvalidInputError, match=r"\.dockerignore:2: bad pattern"):
        IgnoreRules(["ok", "[oops"])


def test_named_dockerignore_takes_precedence(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("a\n")
    assert load_dockerignore(tmp_path, tmp_path / "Dockerfile").ignored("a")
    (tmp_path / "app.Dockerfile.dockerignore").write_text("b\n")
    rules = load_dockerignore(tmp_path, "app.Dockerfile")
    assert rules.ignored("b") and not rules.ignored("a")
    assert not load_dockerignore(tmp_path / "missing").patterns


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    (tmp_path / "src/sub").mkdir(parents=True)
    (tmp_path / "src/a.txt").write_text("a")
    (tmp_path / "src/sub/b.md").write_text("bb")
    (tmp_path / "src/sub/keep.log").write_text("k")
    os.symlink("../a.txt", tmp_path / "src/sub/link")
    os.symlink("/etc/passwd", tmp_path / "out")
    os.symlink("src", tmp_path / "alias")
    (tmp_path / "x.log").write_text("x")
    (tmp_path / "README.md").write_text("r")
    (tmp_path / "Dockerfile").write_text("FROM a\n")
    return tmp_path


def test_directory_contents_with_metadata(ctx: Path) -> None:
    files = select_sources(ctx, ["src"])
    assert [(f.path, f.dest, f.kind) for f in files] == [
        ("src/a.txt", "a.txt", "file"),
        ("src/sub", "sub", "dir"),
        ("src/sub/b.md", "sub/b.md", "file"),
        ("src/sub/keep.log", "sub/keep.log", "file"),
        ("src/sub/link", "sub/link", "symlink"),
    ]
    a = files[0]
    st = os.lstat(ctx / "src/a.txt")
    assert (a.size, a.mode, a.mtime_ns, a.inode, a.uid) == (1, st.st_mode, st.st_mtime_ns,
                                                             st.st_ino, st.st_uid)  # fmt: skip
    assert files[-1].link_target == "../a.txt"


def test_ignore_and_exceptions_and_excludes(ctx: Path) -> None:
    rules = IgnoreRules(["*.log", "src/sub", "!src/sub/keep.log", "Dockerfile"])
    got = {f.path for f in select_sources(ctx, ["."], rules, excludes=["*.md"])}
    assert "x.log" not in got and "README.md" not in got and "Dockerfile" not in got
    assert "src/sub/keep.log" in got and "src/sub/b.md" not in got and "src/a.txt" in got


def test_wildcards(ctx: Path) -> None:
    assert [f.dest for f in select_sources(ctx, ["*.md", "src/*.txt"])] == ["README.md", "a.txt"]
    # BuildKit's testEmptyWildcard: `COPY foo nomatch* /` copies foo, no error.
    matched: list[tuple[str, bool]] = []
    assert select_sources(ctx, ["nothing*"], matched=matched) == []
    assert matched == []
    select_sources(ctx, ["*.md", "sr?"], matched=matched)
    assert matched == [("README.md", False), ("src", True)]


def test_source_through_symlink_inside_context(ctx: Path) -> None:
    files = select_sources(ctx, ["alias/a.txt", "src/sub/link"])
    assert [(f.path, f.dest, f.kind) for f in files] == [
        ("src/a.txt", "a.txt", "file"), ("src/a.txt", "link", "file"),
    ]  # fmt: skip


def test_absolute_symlink_resolves_inside_the_context(ctx: Path) -> None:
    # The context is `/` for its own symlinks (as BuildKit resolves them): `out` ->
    # /etc/passwd is the context's etc/passwd, never the host's.
    (ctx / "etc").mkdir()
    (ctx / "etc" / "passwd").write_text("ctx's own\n")
    os.symlink("/src", ctx / "abs")
    os.symlink("../../../../x.log", ctx / "src" / "up")  # `..` stops at the root
    files = select_sources(ctx, ["out", "abs/a.txt", "src/up"])
    assert [(f.path, f.dest, f.kind) for f in files] == [
        ("etc/passwd", "out", "file"), ("src/a.txt", "a.txt", "file"), ("x.log", "up", "file"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("source", "fragment"),
    [("../etc", "outside the build context"), ("out", "'out' not found"),
     ("missing.txt", "'missing.txt' not found"), ("src/../../x", "outside the build context")],
)  # fmt: skip
def test_refusals(ctx: Path, source: str, fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=fragment):
        select_sources(ctx, [source])


def test_explicit_ignored_source_is_refused(ctx: Path) -> None:
    with pytest.raises(InvalidInputError, match="excluded by"):
        select_sources(ctx, ["x.log"], IgnoreRules(["*.log"]))


def test_reincluded_file_brings_its_ignored_parents(tmp_path: Path) -> None:
    # `keep/` left out, `!keep/deep/k` back in: BuildKit sends keep and keep/deep too
    # (with their own metadata), so the copy has somewhere to put k; the ignored
    # sibling and an ignored directory with nothing re-included stay out.
    (tmp_path / "keep/deep").mkdir(parents=True)
    (tmp_path / "keep/deep/k").write_text("k")
    (tmp_path / "keep/deep/no").write_text("n")
    (tmp_path / "keep/empty").mkdir()
    os.chmod(tmp_path / "keep/deep", 0o710)
    rules = IgnoreRules(["keep/", "!keep/deep/k"])
    files = select_sources(tmp_path, ["."], rules)
    assert [(f.path, f.dest, f.kind) for f in files] == [
        ("keep", "keep", "dir"),
        ("keep/deep", "keep/deep", "dir"),
        ("keep/deep/k", "keep/deep/k", "file"),
    ]
    assert files[1].mode & 0o7777 == 0o710
    assert [f.dest for f in select_sources(tmp_path, ["keep"], rules)] == ["deep", "deep/k"]
    # The same through --exclude, matched under the destination.
    files = select_sources(tmp_path, ["keep"], excludes=["deep", "!deep/k", "empty"])
    assert [f.dest for f in files] == ["deep", "deep/k"]
