"""Scoping, expansion per instruction, stage graph and ONBUILD, from Docker's reference."""

from __future__ import annotations

import pytest

from lamina.dockerfile import (
    Copy,
    DockerfileError,
    Env,
    Expose,
    Label,
    Maintainer,
    PlannedInstruction,
    Run,
    User,
    Workdir,
    onbuild_instructions,
    parse,
    plan,
)
from lamina.errors import InvalidInputError
from lamina.oci import host_platform


def steps(text: str, base_env: tuple[str, ...] = (), **kw: object) -> list[PlannedInstruction]:
    bp = plan(parse(text), **kw)  # type: ignore[arg-type]
    return list(bp.plan_stage(bp.target, base_env))


def test_env_reference_example_uses_values_before_the_instruction() -> None:
    # Docker's reference: def sees the old abc, ghi the new one.
    s = steps("FROM a\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n")
    last = s[-1].instruction
    assert isinstance(last, Env) and last.pairs == (("ghi", "bye"),)
    assert dict(s[-1].env) == {"abc": "bye", "def": "hello"}


def test_arg_before_from_needs_redeclaring() -> None:
    text = (
        "ARG VERSION=latest\nFROM busybox:$VERSION\nRUN x\nARG VERSION\nRUN y\nLABEL v=$VERSION\n"
    )
    bp = plan(parse(text))
    assert bp.target.from_.image == "busybox:latest"
    s = bp.plan_stage(bp.target)
    assert s[0].args == () and dict(s[2].args) == {"VERSION": "latest"}
    assert isinstance(s[3].instruction, Label) and s[3].instruction.pairs == (("v", "latest"),)


def test_build_arg_overrides_default_and_env_overrides_arg() -> None:
    s = steps("FROM a\nARG CONT_IMG_VER=v1\nENV CONT_IMG_VER=v2\nLABEL x=$CONT_IMG_VER\n",
              build_args={"CONT_IMG_VER": "v9"})  # fmt: skip
    assert dict(s[1].args) == {"CONT_IMG_VER": "v9"}
    label = s[2].instruction
    assert isinstance(label, Label) and label.pairs == (("x", "v2"),)
    assert s[2].run_env()["CONT_IMG_VER"] == "v2"


def test_base_env_seeds_stage_env() -> None:
    s = steps("FROM a\nENV PATH=/opt/bin:$PATH\n", base_env=("PATH=/usr/bin",))
    assert dict(s[0].env) == {"PATH": "/usr/bin"}
    env = s[0].instruction
    assert isinstance(env, Env) and env.pairs == (("PATH", "/opt/bin:/usr/bin"),)


def test_run_cmd_are_not_expanded_but_see_env() -> None:
    s = steps("FROM a\nENV X=1\nRUN echo $X\nCMD echo $X\n")
    run = s[1].instruction
    assert isinstance(run, Run) and run.command == ("echo $X",)
    assert s[1].run_env() == {"X": "1"}


def test_platform_args_and_proxies() -> None:
    text = "FROM --platform=$BUILDPLATFORM a AS b\nARG TARGETARCH\nRUN x\n"
    bp = plan(parse(text), platform="linux/arm64/v8", build_args={"HTTP_PROXY": "http://p"})
    assert bp.target.from_.platform == str(host_platform())
    s = bp.plan_stage(bp.target)
    assert dict(s[1].args) == {"TARGETARCH": "arm64"}
    # Both spellings, as BuildKit's ProxyEnv sets them (testBuiltinArgs).
    assert dict(s[1].proxy_env) == {"HTTP_PROXY": "http://p", "http_proxy": "http://p"}
    assert "HTTP_PROXY" in s[1].run_env() and bp.warnings == ()


def test_unused_build_arg_warns() -> None:
    bp = plan(parse("FROM a\nARG USED\n"), build_args={"USED": "1", "NOPE": "2"})
    assert [w.rule for w in bp.warnings] == ["UnusedBuildArg"] and "NOPE" in bp.warnings[0].message


@pytest.mark.parametrize(
    ("ports", "expected"),
    [("80", ("80/tcp",)), ("80/udp", ("80/udp",)), ("80/TCP 443", ("443/tcp", "80/tcp")),
     ("8000-8002", ("8000/tcp", "8001/tcp", "8002/tcp")), ("$P", ("9/tcp", "10/udp")),
     # BuildKit's parseExpose sorts the words as written; its parsePort takes
     # [ip:][hostport:]port[/proto] (a lint warning there, not an error), port 0 included,
     # and keeps duplicates (the config's map drops them).
     ("2375 5000 1234/udp", ("1234/udp", "2375/tcp", "5000/tcp")),
     ("8080:80 127.0.0.1:9000-9001:90 [::1]:7000:70/UDP 0 80",
      ("0/tcp", "90/tcp", "80/tcp", "80/tcp", "70/udp")),
     ("6000-6001:81-82", ("81/tcp", "82/tcp"))],
)  # fmt: skip
def test_expose(ports: str, expected: tuple[str, ...]) -> None:
    s = steps(f"FROM a\nENV P='9 10/udp'\nEXPOSE {ports}\n")
    inst = s[1].instruction
    assert isinstance(inst, Expose) and inst.ports == expected


@pytest.mark.parametrize(
    "bad", ["x", "70000", "10-5", "80/icmp", "/tcp", "1.2.3:80:80", "x:80", "1-3:80-81", "80-"]
)
def test_expose_bad(bad: str) -> None:
    with pytest.raises(DockerfileError, match=r"Dockerfile:2: invalid port"):
        steps(f"FROM a\nEXPOSE {bad}\n")


@pytest.mark.parametrize(
    ("spec", "user", "group"),
    [("patrick", "patrick", None), ("1000:1000", "1000", "1000"), ("$U:$G", "app", "staff"),
     ("${U}", "app", None)],
)  # fmt: skip
def test_user(spec: str, user: str, group: str | None) -> None:
    s = steps(f"FROM a\nENV U=app G=staff\nUSER {spec}\n")
    inst = s[1].instruction
    assert isinstance(inst, User) and (inst.user, inst.group) == (user, group)


def test_workdir_reference_example() -> None:
    s = steps("FROM a\nWORKDIR /a\nWORKDIR b\nWORKDIR c\nENV D=/path\nWORKDIR $D/$DIRNAME\n")
    paths = [i.instruction.path for i in s if isinstance(i.instruction, Workdir)]
    assert paths == ["/a", "/a/b", "/a/b/c", "/path"]
    assert s[2].workdir == "/a/b/c"


def test_copy_expansion_and_heredoc_content() -> None:
    s = steps("FROM a\nARG F=x.txt\nCOPY --chown=$F $F /d/$F\nCOPY <<EOF /e\nv=$F\nEOF\n"
              "COPY <<'Q' /q\nv=$F\nQ\n")  # fmt: skip
    copy, doc, quoted = (i.instruction for i in s[1:])
    assert isinstance(copy, Copy) and (copy.sources, copy.dest, copy.chown) == (
        ("x.txt",), "/d/x.txt", "x.txt"
    )  # fmt: skip
    assert isinstance(doc, Copy) and doc.heredocs[0].content == "v=x.txt\n"
    assert isinstance(quoted, Copy) and quoted.heredocs[0].content == "v=$F\n"


def test_empty_from_after_expansion() -> None:
    with pytest.raises(DockerfileError, match=r"Dockerfile:2: FROM image is empty"):
        plan(parse("ARG IMG\nFROM $IMG\n"))


def test_bad_expansion_names_line() -> None:
    with pytest.raises(DockerfileError, match=r"Dockerfile:3: bad expansion .*missing '\}'"):
        steps("FROM a\nRUN x\nENV A=${B\n")


def test_stage_graph_target_and_order() -> None:
    text = (
        "FROM alpine AS base\nRUN a\n"
        "FROM busybox AS tools\n"
        "FROM base AS build\nCOPY --from=tools /t /t\n"
        "FROM scratch AS unused\n"
        "FROM build AS final\nCOPY --from=nginx:1 /x /x\nRUN --mount=from=0,target=/m x\n"
    )
    bp = plan(parse(text), target="final")
    names = [s.name or "" for s in bp.stages]
    assert sorted(names) == ["base", "build", "final", "tools"] and names[-1] == "final"
    position = {s.index: n for n, s in enumerate(bp.stages)}
    assert all(position[d] < position[s.index] for s in bp.stages for d in s.depends_on)
    final = bp.target
    assert final.base_stage == 2 and set(final.depends_on) == {0, 2}
    assert final.images == ("nginx:1",)
    only = plan(parse(text), target="unused")
    assert [s.name for s in only.stages] == ["unused"] and only.target.is_scratch


def test_copy_from_a_later_stage_is_refused() -> None:
    """BuildKit's testOutOfOrderStage: stages are dispatched in order, so a cycle through
    COPY --from cannot even be written."""
    text = "FROM a AS one\nCOPY --from=two /x /x\nFROM one AS two\n"
    with pytest.raises(DockerfileError, match="needs to be defined before current stage") as info:
        plan(parse(text))
    assert info.value.line == 2


def test_unknown_stage_index_and_target() -> None:
    with pytest.raises(DockerfileError, match=r"Dockerfile:2: --from=5: no stage"):
        plan(parse("FROM a\nCOPY --from=5 /x /x\n"))
    with pytest.raises(InvalidInputError, match='target stage "nope" could not be found'):
        plan(parse("FROM a AS b\n"), target="nope")


def test_duplicate_stage_names_both_lines() -> None:
    with pytest.raises(DockerfileError, match=r"Dockerfile:2: duplicate .* Dockerfile:1"):
        plan(parse("FROM a AS x\nFROM b AS X\n"))


def test_onbuild_triggers_run_after_from() -> None:
    df = parse("FROM base\nRUN mine\n")
    bp = plan(df)
    s = bp.plan_stage(bp.target, ("A=1",), base_onbuild=["ENV B=$A", "RUN echo trig"])
    assert [type(i.instruction).__name__ for i in s] == ["Env", "Run", "Run"]
    env = s[0].instruction
    assert isinstance(env, Env) and env.pairs == (("B", "1"),)
    assert s[0].loc is not None and s[0].loc.start_line == 1
    insts = onbuild_instructions(["COPY . /app"])
    assert isinstance(insts[0], Copy)
    with pytest.raises(DockerfileError, match="not allowed"):
        onbuild_instructions(["FROM x"])


def test_maintainer_stays_maintainer_unexpanded() -> None:
    """Dockerfile reference: MAINTAINER sets the image's Author (not a label); BuildKit's
    MaintainerCommand has no expansion."""
    s = steps("FROM a\nENV N=x\nMAINTAINER Jane $N <j@x>\n")
    inst = s[1].instruction
    assert isinstance(inst, Maintainer) and inst.name == "Jane $N <j@x>"


def test_a_stage_built_on_a_stage_inherits_its_args() -> None:
    """Dockerfile reference, ARG scope: "An ARG variable declared within a build stage is
    automatically inherited by other stages based on that stage. Unrelated build stages do
    not have access to the variable." """
    df = parse(
        "FROM a AS base\nARG X=1\nARG N\nFROM base AS child\nENV Y=${X:-no}\n"
        "FROM a AS other\nENV Z=${X:-no}\n"
    )
    bp = plan(df, target="child")
    base, child = bp.stages
    base_steps = bp.plan_stage(base)
    assert base_steps[-1].stage_args == (("X", "1"), ("N", None))
    child_steps = bp.plan_stage(child, base_args=base_steps[-1].stage_args)
    assert child_steps[0].instruction == Env((("Y", "1"),), child_steps[0].source.loc)
    assert dict(child_steps[0].args) == {"X": "1"} and child_steps[0].undefined == frozenset()
    other = plan(df, target="other")
    other_steps = other.plan_stage(other.target)
    assert other_steps[0].instruction == Env((("Z", "no"),), other_steps[0].source.loc)


def test_stage_args_keep_first_place_and_latest_value() -> None:
    """BuildKit runCommandString: a re-declared ARG keeps its first place, with its new value."""
    s = steps("FROM a\nARG foo=bar\nARG bar=123\nARG foo=bar2\nRUN ls\n")
    assert s[-1].stage_args == (("foo", "bar2"), ("bar", "123"))
