"""Dockerfile → typed build plan: parse, word expansion, stages, ``.dockerignore``.

Pure Python, no I/O except reading the context (``load_dockerignore``,
``select_sources``). Every error is a :class:`DockerfileError` (an
``InvalidInputError``) whose message reads ``file:line: what: instruction``,
or an ``InvalidInputError`` naming the path for context problems.

How the builder uses it::

    df = parse(text, filename="Dockerfile")              # directives + stages
    bp = plan(df, build_args={"V": "1"}, target="app")   # needed stages, in order
    for w in bp.warnings: ...                            # e.g. unused build args
    ignore = load_dockerignore(context_dir, dockerfile_path)
    for stage in bp.stages:                              # dependencies first
        # stage.from_.image is expanded; stage.base_stage is an index or None
        # (then an image ref, or scratch: stage.is_scratch); stage.platform.
        base = <config of the base image or of the built base stage>
        for step in bp.plan_stage(stage, base.Env, base_workdir=base.WorkingDir,
                                  base_onbuild=base.OnBuild):
            inst = step.instruction          # expanded; step.source as written
            # cache key: inst, step.args, step.env (not step.proxy_env)
            # RUN: environment step.run_env(); shell form → SHELL + command
            # COPY/ADD from the context (no --from; heredoc sources "<<NAME"
            # come from inst.heredocs, ADD URLs are fetched, not selected):
            files = select_sources(context_dir, inst.sources, ignore, inst.excludes)

Instruction classes (frozen dataclasses, each with ``loc``): From, Run (with
Mount and Heredoc), Cmd, Entrypoint, Shell, Env, Arg, Label, Maintainer (the
image's author), Expose (planned: ``"80/tcp"`` entries, ranges unrolled),
Volume, User, Workdir (planned: absolute path), Copy (COPY and ADD, ``is_add``),
Stopsignal, Healthcheck, Onbuild (``trigger`` is the text for the config's
``OnBuild``). Not expanded, as Docker does: RUN, CMD, ENTRYPOINT, SHELL,
HEALTHCHECK, ONBUILD. Heredoc bodies of COPY/ADD expand unless the delimiter
is quoted; RUN heredocs are left to the shell (see :func:`run_script`).

Scoping: ARGs before the first FROM are visible to FROM lines only, unless a
stage re-declares them (bare ``ARG NAME``); ``--build-arg`` wins over defaults;
ENV wins over an ARG of the same name; TARGET*/BUILD* platform args exist in
global scope; HTTP_PROXY & co. (any case) need no ARG and reach RUN through
``proxy_env``. ``COPY --from`` and ``RUN --mount=from=`` are never expanded
(BuildKit refuses a variable there: use a stage ``FROM ${ARG}``).

``check(text)`` returns lint findings (:class:`Diagnostic`) for ``--check``.

Word expansion has BuildKit's full set, pattern forms included (see ``_lex``);
``--chmod`` is octal or symbolic (:func:`parse_chmod`); ``COPY --parents`` sources
are selected by :func:`select_parents`.
"""

from __future__ import annotations

from lamina.oci import Platform

from ._check import check
from ._chmod import Chmod, parse_chmod
from ._context import ContextFile, select_parents, select_sources
from ._errors import DockerfileError
from ._graph import needed_stages, plan
from ._ignore import IgnoreRules, load_dockerignore
from ._lex import Expansion, ExpansionError, expand
from ._model import (
    Arg,
    Cmd,
    Copy,
    Diagnostic,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Heredoc,
    Instruction,
    Label,
    Location,
    Maintainer,
    Mount,
    Onbuild,
    Run,
    Shell,
    Stopsignal,
    User,
    Volume,
    Workdir,
    run_script,
    single_heredoc,
)
from ._parse import (
    Directives,
    Dockerfile,
    Stage,
    parse,
    parse_directives,
    parse_instruction,
    read_dockerfile,
)
from ._plan import (
    PLATFORM_ARGS,
    PROXY_ARGS,
    BuildPlan,
    PlannedInstruction,
    StagePlan,
    expose_ports,
    onbuild_instructions,
)

__all__ = [
    "read_dockerfile",
    "PLATFORM_ARGS",
    "PROXY_ARGS",
    "Arg",
    "BuildPlan",
    "Chmod",
    "Cmd",
    "ContextFile",
    "Copy",
    "Diagnostic",
    "Directives",
    "Dockerfile",
    "DockerfileError",
    "Entrypoint",
    "Env",
    "Expansion",
    "ExpansionError",
    "Expose",
    "From",
    "Healthcheck",
    "Heredoc",
    "IgnoreRules",
    "Instruction",
    "Label",
    "Location",
    "Maintainer",
    "Mount",
    "Onbuild",
    "Platform",
    "PlannedInstruction",
    "Run",
    "Shell",
    "Stage",
    "StagePlan",
    "Stopsignal",
    "User",
    "Volume",
    "Workdir",
    "check",
    "expand",
    "expose_ports",
    "load_dockerignore",
    "needed_stages",
    "onbuild_instructions",
    "parse",
    "parse_directives",
    "parse_chmod",
    "parse_instruction",
    "plan",
    "run_script",
    "select_parents",
    "select_sources",
    "single_heredoc",
]
