"""The stage graph: which stages a target needs, in which order."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from lamina.errors import InvalidInputError
from lamina.oci import Platform, host_platform

from ._errors import DockerfileError
from ._model import Arg, Copy, Diagnostic, From, Onbuild, Run
from ._parse import Dockerfile, Stage
from ._plan import (
    PROXY_ARGS,
    BuildPlan,
    PlannedInstruction,
    StagePlan,
    _Expander,
    _global_scope,
    _line,
    _platform_args,
)


def _text(inst: From) -> str:
    return f"{inst.loc.filename}:{inst.loc.start_line}" if inst.loc else "?"


def plan(
    df: Dockerfile,
    *,
    build_args: Mapping[str, str] | None = None,
    target: str | int | None = None,
    platform: Platform | str | None = None,
) -> BuildPlan:
    """Plan the build of ``target`` (a stage name or index; default: the last stage).

    ``build_args`` are ``--build-arg`` values: they override ARG defaults; the
    predefined proxy args need no ARG. ``platform`` is the target platform
    (default: this machine's). Only the stages the target needs are planned, in
    dependency order. Raises :class:`DockerfileError` for a cycle, a stage
    index out of range, a duplicate stage name, an empty FROM after expansion.
    """
    return StageGraph(df, build_args=build_args, platform=platform).plan(target)


_Froms = tuple[dict[str, str], dict[int, From], dict[int, "int | None"]]


class StageGraph:
    """A Dockerfile's stages with their names and FROM lines expanded, for planning one
    target or several (`lamina build --check` plans every stage: each plan expanding
    every FROM again made that quadratic in the number of stages)."""

    def __init__(
        self,
        df: Dockerfile,
        *,
        build_args: Mapping[str, str] | None = None,
        platform: Platform | str | None = None,
    ) -> None:
        self.df = df
        self.args = dict(build_args or {})
        self.build_platform = host_platform()
        if isinstance(platform, str):
            try:
                platform = Platform.parse(platform)
            except ValueError as exc:
                raise InvalidInputError(str(exc)) from None
        self.target_platform = platform or self.build_platform
        self.names = _stage_names(df)
        # The FROM lines and the global scope depend on the target only through
        # TARGETSTAGE: where neither names it, they are expanded once for every target.
        texts = [t or "" for a in df.global_args for pair in a.args for t in pair]
        texts += [t or "" for st in df.stages for t in (st.from_.image, st.from_.platform)]
        self._per_target = any("TARGETSTAGE" in t for t in texts)
        self._shared: _Froms | DockerfileError | None = None

    def plan(self, target: str | int | None = None) -> BuildPlan:
        """The plan of ``target`` (see `plan`)."""
        # BuildKit's TARGETSTAGE: the target stage's name, "default" for an unnamed last stage.
        index = _target_index(self.df, target, self.names)
        stage_name = self.df.stages[index].name or "default"
        if self._per_target:
            scope, froms, bases = self._expand_froms(stage_name)
        else:
            if self._shared is None:
                try:
                    self._shared = self._expand_froms("")
                except DockerfileError as exc:  # the same for every target: said once
                    self._shared = exc
            if isinstance(self._shared, DockerfileError):
                raise self._shared
            template, froms, bases = self._shared
            scope = dict(template)  # (the name's place in it kept, as in a fresh scope)
            scope["TARGETSTAGE"] = stage_name
        return _plan_target(self, target, scope, froms, bases)

    def _expand_froms(self, stage_name: str) -> _Froms:
        """The global scope with TARGETSTAGE `stage_name`, each stage's FROM expanded in
        it, and the stage each is built on (None: an image)."""
        df, names = self.df, self.names
        auto = _platform_args(self.target_platform, self.build_platform)
        auto["TARGETSTAGE"] = stage_name
        scope = _global_scope(df, self.args, auto)
        froms: dict[int, From] = {}
        bases: dict[int, int | None] = {}
        for stage in df.stages:
            ex = _Expander(stage.from_, scope, df.directives.escape)
            image = ex.word(stage.from_.image)
            if not image:
                raise DockerfileError(
                    df.filename,
                    _line(stage.from_),
                    stage.from_.loc.text if stage.from_.loc else "",
                    "FROM image is empty after expansion (is the ARG set?)",
                )
            base = names.get(image.lower())
            froms[stage.index] = From(image, stage.from_.stage_name, ex.opt(stage.from_.platform),
                                      stage.from_.as_keyword, stage.from_.loc)  # fmt: skip
            bases[stage.index] = base if base is not None and base < stage.index else None
        return scope, froms, bases


def _plan_target(
    graph: StageGraph,
    target: str | int | None,
    scope: dict[str, str],
    froms: dict[int, From],
    bases: dict[int, int | None],
) -> BuildPlan:
    df, names, args = graph.df, graph.names, graph.args
    target_platform, build_platform = graph.target_platform, graph.build_platform

    def stage_ref(text: str) -> int | None:
        if text.isdigit():
            return int(text)
        return names.get(text.lower())

    target_index = _target_index(df, target, names)
    skeleton = BuildPlan(df, (), tuple(args.items()), target_platform, build_platform)
    planned: dict[int, StagePlan] = {}
    order: list[int] = []
    state: dict[int, str] = {}

    def visit(index: int, via: str | None) -> None:
        if state.get(index) == "done":
            return
        if state.get(index) == "active":
            raise _at(
                df.stages[index].from_,
                f"circular dependency: stage {index} is needed again by {via}",
            )
        state[index] = "active"
        stage = df.stages[index]
        sp = _stage_plan(stage, froms[index], bases[index], scope, target_platform)
        deps: list[int] = [] if sp.base_stage is None else [sp.base_stage]
        images: list[str] = []
        # A base stage's ONBUILD triggers run here: the stages they name are needed too
        # (BuildKit's testOnBuildInheritedStageWithFrom).
        inherited = [
            PlannedInstruction(i.instruction, Onbuild(i.trigger, i.instruction, i.loc), (), ())
            for i in (df.stages[sp.base_stage].instructions if sp.base_stage is not None else ())
            if isinstance(i, Onbuild)
        ]
        for planned_inst in [*inherited, *skeleton.plan_stage(sp)]:
            inst = planned_inst.instruction
            refs = [inst.from_] if isinstance(inst, Copy) and inst.from_ else []
            if isinstance(inst, Run):
                refs += [m.from_ for m in inst.mounts if m.from_]
            for ref in refs:
                dep = stage_ref(ref)
                where = f"{planned_inst.loc}" if planned_inst.loc else df.filename
                if dep is None:
                    images.append(ref)
                    continue
                if dep >= len(df.stages):
                    raise _at(planned_inst.source, f"--from={ref}: no stage with index {dep}")
                if dep == index:
                    raise _at(planned_inst.source, f"--from={ref}: a stage can't use itself")
                if dep > index and isinstance(inst, Copy):
                    # BuildKit dispatches stages in order (testOutOfOrderStage).
                    raise _at(planned_inst.source, f"cannot copy from stage {ref!r}, it needs "
                              f"to be defined before current stage "
                              f"{df.stages[index].name or index!r}")  # fmt: skip
                if state.get(dep) == "active":
                    raise _at(planned_inst.source, f"--from={ref}: circular dependency on stage "
                              f"{ref} ({_text(df.stages[dep].from_)})")  # fmt: skip
                deps.append(dep)
                visit(dep, where)
        if sp.base_stage is not None:
            visit(sp.base_stage, _text(stage.from_))
        planned[index] = StagePlan(**{**sp.__dict__, "depends_on": tuple(dict.fromkeys(deps)),
                                      "images": tuple(dict.fromkeys(images))})  # fmt: skip
        state[index] = "done"
        order.append(index)

    visit(target_index, None)
    used = {n for a in df.global_args for n, _ in a.args}
    for index in order:
        for inst in df.stages[index].instructions:
            if isinstance(inst, Arg):
                used.update(n for n, _ in inst.args)
    warnings = tuple(
        Diagnostic("UnusedBuildArg", f"build arg {name!r} was not consumed by any ARG",
                   df.filename, 1)
        for name in args
        if name not in used and name not in PROXY_ARGS and name != "SOURCE_DATE_EPOCH"
    )  # fmt: skip
    return BuildPlan(
        df, tuple(planned[i] for i in order), tuple(args.items()), target_platform,
        build_platform, warnings,
    )  # fmt: skip


def _at(inst: object, what: str) -> DockerfileError:
    loc = getattr(inst, "loc", None)
    if loc is None:
        return DockerfileError("Dockerfile", 1, "", what)
    return DockerfileError(loc.filename, loc.start_line, loc.text, what)


def _stage_names(df: Dockerfile) -> dict[str, int]:
    names: dict[str, int] = {}
    for stage in df.stages:
        if stage.name is None:
            continue
        if stage.name in names:
            first = df.stages[names[stage.name]].from_
            raise _at(
                stage.from_, f"duplicate stage name {stage.name!r}, first used at {_text(first)}"
            )
        names[stage.name] = stage.index
    return names


def _target_index(df: Dockerfile, target: str | int | None, names: Mapping[str, int]) -> int:
    if target is None or target == "":
        return len(df.stages) - 1
    if isinstance(target, int):
        if 0 <= target < len(df.stages):
            return target
        raise InvalidInputError(f"{df.filename}: no stage with index {target}")
    if target.lower() in names:
        return names[target.lower()]
    close = difflib.get_close_matches(target.lower(), list(names), n=1)
    known = ", ".join(sorted(names)) or "none named"
    hint = f"did you mean {close[0]}?" if close else f"stages: {known}"
    # BuildKit's words (testTargetMistype), a suggestion as its suggest package makes it.
    raise InvalidInputError(f'{df.filename}: target stage "{target}" could not be found ({hint})')


def _stage_plan(
    stage: Stage, from_: From, base: int | None, scope: Mapping[str, str], default: Platform
) -> StagePlan:
    platform = default
    if from_.platform:
        try:
            platform = Platform.parse(from_.platform)
        except ValueError as exc:
            raise _at(stage.from_, str(exc)) from None
    return StagePlan(
        stage.index, stage.name, stage, from_, platform, base, (), (), tuple(scope.items())
    )


def needed_stages(plan_: BuildPlan) -> tuple[StagePlan, ...]:
    """The stages to build, dependencies first, the target last (same as ``plan.stages``)."""
    return plan_.stages
