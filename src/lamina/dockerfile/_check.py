"""``lamina build --check``: BuildKit-style lint rules over a Dockerfile."""

from __future__ import annotations

from collections.abc import Mapping

from lamina.errors import LaminaError

from ._errors import DockerfileError
from ._graph import StageGraph
from ._model import Cmd, Diagnostic, Entrypoint, Expose, Maintainer
from ._parse import Dockerfile, parse

# Names a base image nearly always sets; the static check does not know the base's Env.
_BASE_ENV_NAMES = frozenset({"PATH", "HOME", "HOSTNAME"})


def _error(exc: LaminaError, filename: str) -> Diagnostic:
    if isinstance(exc, DockerfileError):
        return Diagnostic("InvalidDockerfile", exc.what, exc.filename, exc.line, "error")
    return Diagnostic("InvalidDockerfile", exc.message, filename, 1, "error")


def check(
    source: str | Dockerfile,
    *,
    filename: str = "Dockerfile",
    build_args: Mapping[str, str] | None = None,
) -> list[Diagnostic]:
    """Lint ``source`` (text or a parsed Dockerfile); returns findings sorted by line.

    Rules: JSONArgsRecommended, UndefinedVar, FromAsCasing, DuplicateStageName
    (error), StageNameCasing, MaintainerDeprecated, ExposeInvalidFormat,
    ExposeProtoCasing, UnusedBuildArg, and
    InvalidDockerfile (error) for anything parse or plan refuses. The
    ``# check=skip=Rule,...`` (or ``skip=all``) directive drops rules;
    ``# check=error=true`` makes every finding an error.
    """
    if isinstance(source, str):
        try:
            df = parse(source, filename=filename)
        except DockerfileError as exc:
            return [_error(exc, filename)]
    else:
        df = source
    found: list[Diagnostic] = []

    def add(rule: str, message: str, line: int, level: str = "warning") -> None:
        found.append(
            Diagnostic(rule, message, df.filename, line, "error" if level == "error" else "warning")
        )

    seen: dict[str, int] = {}
    for stage in df.stages:
        f = stage.from_
        line = f.loc.start_line if f.loc else 1
        if f.stage_name and f.as_keyword and f.loc:
            keyword = f.loc.text.split()[0]
            if keyword.isupper() != f.as_keyword.isupper():
                add(
                    "FromAsCasing",
                    f"'{f.as_keyword}' and '{keyword}' keywords' casing do not match",
                    line,
                )
        if f.stage_name and f.stage_name != f.stage_name.lower():
            add("StageNameCasing", f"stage name {f.stage_name!r} should be lowercase", line)
        if stage.name is not None:
            if stage.name in seen:
                add("DuplicateStageName", f"duplicate stage name {stage.name!r}, first defined on "
                    f"line {seen[stage.name]}", line, "error")  # fmt: skip
            seen.setdefault(stage.name, line)
        for inst in stage.instructions:
            where = inst.loc.start_line if inst.loc else line
            if isinstance(inst, Cmd | Entrypoint) and inst.shell_form:
                name = "CMD" if isinstance(inst, Cmd) else "ENTRYPOINT"
                add("JSONArgsRecommended", f"JSON arguments recommended for {name} to prevent "
                    "unintended behavior related to OS signals", where)  # fmt: skip
            if isinstance(inst, Expose):
                for port in (p for p in inst.ports if "$" not in p):  # as written
                    if ":" in port:
                        add("ExposeInvalidFormat", "EXPOSE instruction should not define an IP "
                            f"address or host-port mapping, found '{port}'", where)  # fmt: skip
                    proto = port.partition("/")[2]
                    if proto != proto.lower():
                        add("ExposeProtoCasing", f"Defined protocol '{port}' in EXPOSE "
                            "instruction should be lowercase", where)  # fmt: skip
            if isinstance(inst, Maintainer):
                add(
                    "MaintainerDeprecated",
                    "MAINTAINER is deprecated: use LABEL maintainer=...",
                    where,
                )

    if not any(d.rule == "DuplicateStageName" for d in found):
        found.extend(_plan_findings(df, build_args or {}))
    skip = df.directives.check_skip
    if "all" in skip:
        found = [d for d in found if d.level == "error"]
    found = [d for d in found if d.rule not in skip or d.level == "error"]
    if df.directives.check_error:
        found = [Diagnostic(d.rule, d.message, d.filename, d.line, "error") for d in found]
    unique = {(d.line, d.rule, d.message): d for d in found}
    return sorted(unique.values(), key=lambda d: (d.line, d.rule))


def _plan_findings(df: Dockerfile, build_args: Mapping[str, str]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    done: set[int] = set()
    stage_args: dict[int, tuple[tuple[str, str | None], ...]] = {}  # a child inherits them
    try:
        graph = StageGraph(df, build_args=build_args)
    except LaminaError as exc:
        return [_error(exc, df.filename)]
    for index in range(len(df.stages) - 1, -1, -1):
        if index in done:
            continue
        try:
            p = graph.plan(index)
            out.extend(p.warnings if index == len(df.stages) - 1 else ())
            for stage in p.stages:
                if stage.index in done:
                    continue
                done.add(stage.index)
                base = stage.base_stage
                base_args = stage_args.get(base, ()) if base is not None else ()
                steps = p.plan_stage(stage, base_args=base_args)
                stage_args[stage.index] = steps[-1].stage_args if steps else base_args
                for planned in steps:
                    for name in sorted(planned.undefined - _BASE_ENV_NAMES):
                        line = planned.loc.start_line if planned.loc else 1
                        what = f"usage of undefined variable '${name}'"
                        out.append(Diagnostic("UndefinedVar", what, df.filename, line))
        except LaminaError as exc:
            out.append(_error(exc, df.filename))
            done.add(index)
    return out
