"""Parsing into typed instructions, directives, and located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

import lamina.dockerfile as dfm
from lamina.dockerfile import (
    Copy,
    DockerfileError,
    Env,
    Expose,
    Healthcheck,
    Onbuild,
    Run,
    parse,
    read_dockerfile,
    run_script,
)
from lamina.errors import InvalidInputError, NotFoundError


def body(text: str) -> tuple[dfm.Instruction, ...]:
    return parse("FROM scratch\n" + text).stages[0].instructions


def test_public_surface_is_all() -> None:
    public = {n for n in dir(dfm) if not n.startswith("_") and n != "annotations"}
    assert public == set(dfm.__all__)


def test_from_forms() -> None:
    df = parse("ARG V=1\nFROM --platform=linux/arm64 alpine:$V AS Build\nFROM build\n")
    assert df.global_args[0].args == (("V", "1"),)
    first = df.stages[0]
    assert (first.from_.image, first.from_.platform, first.name) == (
        "alpine:$V", "linux/arm64", "build"
    )  # fmt: skip
    assert df.stages[1].from_.image == "build"


def test_run_forms_mounts_network() -> None:
    shell, exec_, mounted = body(
        'RUN echo hi\nRUN ["/bin/echo", "a b"]\n'
        "RUN --mount=type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0700,uid=1 "
        "--mount=type=secret,id=tok,required --mount=from=build,source=/o,target=/i,ro "
        "--network=none make\n"
    )
    assert isinstance(shell, Run) and shell.shell_form and shell.command == ("echo hi",)
    assert isinstance(exec_, Run) and not exec_.shell_form and exec_.command == ("/bin/echo", "a b")
    assert isinstance(mounted, Run) and mounted.network == "none"
    cache, secret, bind = mounted.mounts
    assert (cache.type, cache.target, cache.id, cache.sharing, cache.mode, cache.uid) == (
        "cache", "/root/.cache", "pip", "locked", 0o700, 1
    )  # fmt: skip
    assert (secret.type, secret.id, secret.required) == ("secret", "tok", True)
    assert (bind.type, bind.from_, bind.source, bind.readonly) == ("bind", "build", "/o", True)


def test_run_heredocs() -> None:
    alone, inline, quoted = body(
        "RUN <<EOF\necho a\nEOF\nRUN cat <<-END > /f\n\tx\n\tEND\nRUN <<'Q' sh\n$x\nQ\n"
    )
    assert isinstance(alone, Run) and run_script(alone) == "echo a\n"
    assert isinstance(inline, Run) and inline.heredocs[0].strip_tabs
    # BuildKit's dispatchRun: the command, then "\n" + body + delimiter per heredoc.
    assert run_script(inline) == "cat <<-END > /f\nx\nEND"
    assert isinstance(quoted, Run) and not quoted.heredocs[0].expand


def test_env_both_forms_and_label_maintainer() -> None:
    new, legacy = body('ENV A=1 B="2 3"\nENV C 4 5\n')
    assert isinstance(new, Env) and new.pairs == (("A", "1"), ("B", '"2 3"'))
    assert isinstance(legacy, Env) and legacy.pairs == (("C", "4 5"),)


def test_copy_add_flags() -> None:
    copy, add = body(
        "COPY --from=0 --chown=1:2 --chmod=755 --link --exclude=*.md --exclude=x a b* /d/\n"
        "ADD --checksum=sha256:ab --keep-git-dir=true https://x/y.tar /z\n"
    )
    assert isinstance(copy, Copy) and not copy.is_add
    assert (copy.sources, copy.dest, copy.from_, copy.chown, copy.chmod, copy.link) == (
        ("a", "b*"), "/d/", "0", "1:2", "755", True
    )  # fmt: skip
    assert copy.excludes == ("*.md", "x")
    assert isinstance(add, Copy) and add.is_add and add.checksum == "sha256:ab" and add.keep_git_dir


def test_copy_heredoc_sources() -> None:
    (copy,) = body("COPY <<a.txt <<b.txt /dest/\naaa\na.txt\nbbb\nb.txt\n")
    assert isinstance(copy, Copy)
    assert [(h.name, h.content) for h in copy.heredocs] == [("a.txt", "aaa\n"), ("b.txt", "bbb\n")]


def test_healthcheck_onbuild_expose() -> None:
    hc, none, onbuild, expose = body(
        "HEALTHCHECK --interval=1m30s --timeout=500ms --start-period=2s --retries=3 CMD curl x\n"
        "HEALTHCHECK NONE\nONBUILD RUN echo hi\nEXPOSE 80 53/udp\n"
    )
    assert isinstance(hc, Healthcheck)
    assert hc.test == ("CMD-SHELL", "curl x")
    assert (hc.interval_ns, hc.timeout_ns, hc.start_period_ns, hc.retries) == (
        90_000_000_000, 500_000_000, 2_000_000_000, 3
    )  # fmt: skip
    assert isinstance(none, Healthcheck) and none.test == ("NONE",)
    assert isinstance(onbuild, Onbuild) and onbuild.trigger == "RUN echo hi"
    assert isinstance(onbuild.instruction, Run)
    assert isinstance(expose, Expose) and expose.ports == ("80", "53/udp")


def test_directives() -> None:
    df = parse(
        "# syntax=docker/dockerfile:1\n# escape=`\n"
        "# check=skip=JSONArgsRecommended;error=true\nFROM a\nRUN echo `\n  b\n"
    )
    assert df.directives.escape == "`"
    assert df.directives.syntax == "docker/dockerfile:1"
    assert df.directives.check_skip == {"JSONArgsRecommended"} and df.directives.check_error
    run = df.stages[0].instructions[0]
    assert isinstance(run, Run) and run.command == ("echo   b",)


def test_directives_after_a_byte_order_mark() -> None:
    """BuildKit's parser drops a UTF-8 BOM before the first line, so `# escape=` there
    counts (the parser joins the lines with it; the expansion must use it too)."""
    df = parse("\ufeff# escape=`\nFROM a\nENV P=C:\\dir Q=a`$b\n")
    assert df.directives.escape == "`"
    bp = dfm.plan(df)
    env = bp.plan_stage(bp.target)[0].instruction
    assert isinstance(env, Env) and env.pairs == (("P", "C:\\dir"), ("Q", "a$b"))


def test_an_unknown_directive_ends_the_directives() -> None:
    """BuildKit's DirectiveParser: a comment naming no known directive (syntax, escape,
    check) ends the directive block, so a later `# escape=` is only a comment."""
    df = parse("# foo=bar\n# escape=`\nFROM a\nENV P=a\\$b Q=a`$b\n")
    assert df.directives.escape == "\\"
    bp = dfm.plan(df)
    env = bp.plan_stage(bp.target)[0].instruction
    assert isinstance(env, Env) and env.pairs == (("P", "a$b"), ("Q", "a`"))


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("FROM a\nFOO bar\n", 2, "unknown instruction: FOO"),
        ("FROM a\nRUN x\nENV A\n", 3, "ENV must have two arguments"),
        ("FROM a\nCOPY a\n", 2, "at least 2 arguments"),
        ("FROM a\nRUN --bogus=1 x\n", 2, "unknown flag: --bogus"),
        ("FROM a\nCOPY --from a b\n", 2, "missing a value on flag --from"),
        ('FROM a\nRUN ["a", 1]\n', 2, "arrays must be comprised of strings"),
        ("FROM a\nSHELL sh -c\n", 2, "JSON form"),
        ("FROM a\nRUN x\n\nRUN <<EOF\necho\n", 4, "unterminated heredoc"),
        ("FROM a\nEXPOSE\n", 2, "requires at least 1 argument"),
        ("RUN x\n", 1, "FROM must come first"),
        ("", 1, "the Dockerfile cannot be empty"),
        ("\n# only a comment\n", 1, "file with no instructions"),
        ("FROM a AS b c\n", 1, "FROM requires either one or three"),
        ("FROM a\nHEALTHCHECK --interval=abc CMD x\n", 2, "invalid duration"),
        ("FROM a\nONBUILD FROM b\n", 2, "isn't allowed"),
        ("FROM a\nONBUILD ONBUILD RUN x\n", 2, "Chaining ONBUILD via `ONBUILD ONBUILD`"),
        ("FROM a\nRUN --mount=type=cache echo\n", 2, "needs target="),
        ("# escape=x\nFROM a\n", 1, "invalid escape token"),
    ],
)
def test_errors_name_file_line_and_text(text: str, line: int, fragment: str) -> None:
    with pytest.raises(DockerfileError) as info:
        parse(text, filename="app.Dockerfile")
    assert isinstance(info.value, InvalidInputError)
    assert info.value.line == line
    assert str(info.value).startswith(f"app.Dockerfile:{line}: ")
    assert fragment in str(info.value)


def test_read_dockerfile_applies_the_cap_before_reading_it_whole(tmp_path: Path) -> None:
    # /dev/zero never ends: reading it whole first (as before) would never return.
    with pytest.raises(InvalidInputError, match="larger than"):
        read_dockerfile(Path("/dev/zero"))
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    assert read_dockerfile(tmp_path / "Dockerfile") == "FROM scratch\n"
    with pytest.raises(NotFoundError, match="does not exist"):
        read_dockerfile(tmp_path / "missing")
