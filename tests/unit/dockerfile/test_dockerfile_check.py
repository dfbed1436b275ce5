"""`check()` rules and the robustness property: text → plan or a located DockerfileError."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamina.dockerfile import DockerfileError, check, parse, plan
from lamina.dockerfile._graph import StageGraph


def rules(text: str, **kw: object) -> list[tuple[int, str, str]]:
    return [(d.line, d.rule, d.level) for d in check(text, **kw)]  # type: ignore[arg-type]


def test_rules_fire_with_lines() -> None:
    text = ("FROM alpine as Build\nMAINTAINER x\nENV A=$NOPE\nCMD echo hi\n"
            "ENTRYPOINT [\"x\"]\nFROM build AS build\n")  # fmt: skip
    assert rules(text) == [
        (1, "FromAsCasing", "warning"),
        (1, "StageNameCasing", "warning"),
        (2, "MaintainerDeprecated", "warning"),
        (4, "JSONArgsRecommended", "warning"),
        (6, "DuplicateStageName", "error"),
    ]
    assert rules("FROM a\nENV A=$NOPE B=${OK:-x} C=$PATH\n") == [(2, "UndefinedVar", "warning")]
    assert rules("ARG G=1\nFROM a\nARG DECLARED\nENV A=$DECLARED B=$G\n") == [
        (4, "UndefinedVar", "warning")
    ]


def test_errors_and_directives() -> None:
    assert rules("FROM a\nBOGUS x\n") == [(2, "InvalidDockerfile", "error")]
    assert rules("FROM a\nCOPY --from=7 a b\n") == [(2, "InvalidDockerfile", "error")]
    assert rules("# check=skip=JSONArgsRecommended\nFROM a\nCMD x\n") == []
    assert rules("# check=error=true\nFROM a\nCMD x\n") == [(3, "JSONArgsRecommended", "error")]
    assert rules("FROM a\n", build_args={"X": "1"}) == [(1, "UnusedBuildArg", "warning")]


LINES = st.sampled_from([
    "FROM alpine", "FROM $X AS b", "RUN echo $A", "RUN <<EOF", "EOF", "ENV A=${B:-c}",
    "ENV A", "ARG X=1", "COPY --from=b a /", "COPY --from=9 a b", "EXPOSE 80-81/udp",
    "USER ${U}:g", "WORKDIR ${", "ONBUILD RUN x", "HEALTHCHECK CMD x", "CMD [\"a\"]",
    "LABEL \"a b\"=c", "\\", "# escape=`", "FROM scratch AS a", "COPY --from=a x y",
    "RUN --mount=type=bind,target=/x,from=a y", "SHELL [\"sh\"]", "VOLUME ['/a']",
])  # fmt: skip


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.lists(LINES, max_size=12).map("\n".join), st.text(max_size=200)))
def test_any_text_ends_in_plan_or_located_error(text: str) -> None:
    try:
        bp = plan(parse(text))
        for stage in bp.stages:
            bp.plan_stage(stage)
    except DockerfileError as exc:
        # Every frontend error names the file and a line that exists in the text.
        assert exc.message.startswith(f"{exc.filename}:{exc.line}: ")
        assert 1 <= exc.line <= max(1, len(text.splitlines()) + 1)
    check(text)


NEW_FORMS = """FROM busybox AS base
ARG V=abc.tar.gz
ENV A=${V%.tar.gz} B=${V#abc} C=${V/abc/x} D="${V:?need V}"
COPY --link --parents --chmod=u=rwx,g=rx,o= a/./b /dst/
ADD --keep-git-dir=true --unpack=false https://example.com/x.git#main:sub /g
RUN --mount=type=secret,id=tok,env=TOKEN --mount=type=ssh --network=none --security=insecure true
ONBUILD RUN <<EOF
echo hi
EOF
HEALTHCHECK --start-interval=2s CMD true
"""


def test_check_knows_the_new_flags_and_forms() -> None:
    """Issue 11: --check accepts every form lamina now builds."""
    assert check(NEW_FORMS) == []


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("COPY --chmod=64a x /y", "invalid chmod parameter: '64a'"),
        ("COPY --from=$X a /b", "variable expansion is not supported for --from"),
        ('ENV E="${NOPE:?unset here}"', "NOPE: unset here"),
        ("RUN --network=bogus true", "unsupported network mode 'bogus'"),
        ("ADD --unpack=maybe a /b", "expecting boolean value for flag --unpack"),
    ],
)
def test_check_reports_bad_new_forms(line: str, fragment: str) -> None:
    found = check(NEW_FORMS + line + "\n")
    assert [d.level for d in found] == ["error"]
    assert fragment in found[0].message and found[0].line == 11


def test_an_arg_inherited_from_the_base_stage_is_defined() -> None:
    """Dockerfile reference, ARG scope: a stage based on another inherits its ARGs, so using
    one there is no UndefinedVar; an unrelated stage still gets the warning."""
    text = "FROM a AS base\nARG X=1\nFROM base\nENV Y=$X\nFROM a AS other\nENV Z=$X\n"
    found = [(d.line, d.rule) for d in check(text)]
    assert (4, "UndefinedVar") not in found and (6, "UndefinedVar") in found


def test_expose_lint_rules_as_buildkit() -> None:
    """BuildKit's ExposeInvalidFormat (an IP or host port in EXPOSE: accepted, warned) and
    ExposeProtoCasing (testExposeInvalidFormat, testExposeProtoCasing)."""
    found = [(d.line, d.rule, d.message) for d in check("FROM a\nEXPOSE 80 8080:80/TCP\n")]
    assert found == [
        (2, "ExposeInvalidFormat",
         "EXPOSE instruction should not define an IP address or host-port mapping, found "
         "'8080:80/TCP'"),
        (2, "ExposeProtoCasing",
         "Defined protocol '8080:80/TCP' in EXPOSE instruction should be lowercase"),
    ]  # fmt: skip
    assert check("FROM a\nENV P=9\nEXPOSE 80/udp $P\n") == []
    assert [d.rule for d in check("FROM a\nEXPOSE [::ABCD]:80:80\n")] == ["ExposeInvalidFormat"]


def test_check_of_many_stages_expands_the_from_lines_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`check` plans every stage; each plan expanding every FROM again was quadratic in the
    number of stages (1,000 stages: 6 s; 20,000: minutes)."""
    from lamina.dockerfile import _graph

    calls: list[str] = []
    real = _graph.StageGraph._expand_froms

    def counted(self: _graph.StageGraph, stage_name: str) -> object:
        calls.append(stage_name)
        return real(self, stage_name)

    monkeypatch.setattr(_graph.StageGraph, "_expand_froms", counted)
    text = "".join(f"FROM scratch AS s{i}\nLABEL n={i}\n" for i in range(300))
    assert [d for d in check(text) if d.level == "error"] == []
    assert len(calls) == 1


def test_targetstage_in_a_from_or_a_global_arg_is_expanded_per_target() -> None:
    """Where a FROM line or a global ARG names TARGETSTAGE, the FROM lines are expanded for
    each target with that target's name (BuildKit's testTargetStageNameArg)."""
    text = (
        "ARG BASE=img-${TARGETSTAGE}\n"
        "FROM ${BASE} AS first\n"
        "FROM ${BASE} AS second\n"
    )
    df = parse(text)
    graph = StageGraph(df)
    assert [s.from_.image for s in graph.plan("first").stages] == ["img-first"]
    assert [s.from_.image for s in graph.plan("second").stages] == ["img-second"]
    assert [s.from_.image for s in plan(df, target="first").stages] == ["img-first"]
