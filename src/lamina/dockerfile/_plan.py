"""Build plans: ARG/ENV scoping, word expansion per instruction, the stage graph."""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from lamina.errors import InvalidInputError
from lamina.oci import Platform

from ._errors import DockerfileError
from ._lex import ExpansionError, expand
from ._model import (
    Arg,
    Copy,
    Diagnostic,
    Env,
    Expose,
    From,
    Instruction,
    Label,
    Location,
    Mount,
    Run,
    Stopsignal,
    User,
    Volume,
    Workdir,
)
from ._parse import Dockerfile, Stage, parse_instruction

PROXY_ARGS = frozenset(
    n for base in ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")
    for n in (base, base.lower())
)  # fmt: skip
PLATFORM_ARGS = (
    "TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT",
    "BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT",
)  # fmt: skip
Pairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PlannedInstruction:
    """One instruction as the builder runs it.

    ``instruction`` is the expanded form (same class as ``source``, the form as
    written; RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK/ONBUILD are never expanded, the
    shell does that). ``args`` are the stage's declared build args with values,
    ``env`` the ENV visible (base image env, then this stage's ENVs), both as
    seen by this instruction, in order: key the cache on them. ``proxy_env``
    holds the predefined proxy args given with ``--build-arg``: give them to RUN
    but keep them out of cache keys and history, as Docker does.
    ``workdir`` is the working directory in effect (for a WORKDIR, its new
    value); ``undefined`` names variables the expansion referenced but found unset.
    ``stage_args`` lists every ARG the stage has declared so far (this one included, those
    inherited from a base stage first), in BuildKit's order, None for one without a value:
    RUN's history shows them, and the last step's hand them to a stage built on this one.
    """

    instruction: Instruction
    source: Instruction
    args: Pairs
    env: Pairs
    proxy_env: Pairs = ()
    workdir: str = "/"
    undefined: frozenset[str] = frozenset()
    stage_args: tuple[tuple[str, str | None], ...] = ()

    @property
    def loc(self) -> Location | None:
        return self.source.loc

    def run_env(self) -> dict[str, str]:
        """The environment for a RUN: proxies, then build args, then ENV (ENV wins)."""
        out = dict(self.proxy_env)
        out.update(self.args)
        out.update(self.env)
        return out


@dataclass(frozen=True)
class StagePlan:
    """A stage to build.

    ``from_`` is the FROM expanded with the global args; ``base_stage`` is the
    index of the stage it builds on, or None when ``from_.image`` is an image
    reference (or ``scratch``: check ``is_scratch``). ``depends_on`` lists the
    stage indexes it needs (base, ``COPY --from``, ``RUN --mount=from=``) and
    ``images`` the external image references used by ``--from`` (not as base).
    ``global_args`` are the global-scope values that a bare ``ARG NAME`` picks up.
    """

    index: int
    name: str | None
    stage: Stage
    from_: From
    platform: Platform
    base_stage: int | None
    depends_on: tuple[int, ...]
    images: tuple[str, ...]
    global_args: Pairs

    @property
    def is_scratch(self) -> bool:
        return self.base_stage is None and self.from_.image.lower() == "scratch"


@dataclass(frozen=True)
class BuildPlan:
    """The stages a target needs, in dependency order (target last), and warnings.

    Expand a stage's instructions with :meth:`plan_stage` once its base image's
    config is known (its ``Env``, ``WorkingDir`` and ``OnBuild``).
    """

    dockerfile: Dockerfile
    stages: tuple[StagePlan, ...]
    build_args: Pairs
    platform: Platform
    build_platform: Platform
    warnings: tuple[Diagnostic, ...] = ()
    _stage_refs: Mapping[str, int] = field(default_factory=dict, repr=False)

    @property
    def target(self) -> StagePlan:
        return self.stages[-1]

    def stage(self, ref: str | int) -> StagePlan:
        """A planned stage by index or (case-insensitive) name."""
        for s in self.stages:
            if s.index == ref or (isinstance(ref, str) and s.name == ref.lower()):
                return s
        raise InvalidInputError(f"{self.dockerfile.filename}: stage {ref!r} is not in this plan")

    def plan_stage(
        self,
        stage: StagePlan,
        base_env: Sequence[str] | Mapping[str, str] = (),
        *,
        base_workdir: str = "/",
        base_onbuild: Sequence[str] = (),
        base_args: Sequence[tuple[str, str | None]] = (),
    ) -> tuple[PlannedInstruction, ...]:
        """Expand ``stage``'s instructions in order.

        ``base_env`` is the base image config's ``Env`` (``["K=V", ...]`` or a
        mapping), ``base_workdir`` its ``WorkingDir``, ``base_onbuild`` its
        ``OnBuild`` triggers, which run first (right after FROM). For a stage
        built on another stage, pass that stage's resulting config, and as
        ``base_args`` its last step's ``stage_args``: the Dockerfile reference's
        ARG scope, "an ARG declared within a build stage is automatically inherited
        by other stages based on that stage".
        """
        env = _env_mapping(base_env)
        triggers = onbuild_instructions(
            base_onbuild,
            filename=stage.from_.loc.filename if stage.from_.loc else "Dockerfile",
            escape=self.dockerfile.directives.escape,
            line=_line(stage.from_),
        )
        walker = _StageWalker(self, stage, env, base_workdir or "/", base_args)
        return tuple(walker.walk((*triggers, *stage.stage.instructions)))


def _line(inst: Instruction) -> int:
    return inst.loc.start_line if inst.loc else 1


def _env_mapping(env: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    if isinstance(env, Mapping):
        return dict(env)
    out: dict[str, str] = {}
    for item in env:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def onbuild_instructions(
    triggers: Sequence[str], *, filename: str = "Dockerfile", escape: str = "\\", line: int = 1
) -> tuple[Instruction, ...]:
    """Turn a base image's ``OnBuild`` list into instructions located at the FROM line."""
    out: list[Instruction] = []
    for trigger in triggers:
        inst = parse_instruction(trigger, filename=filename, escape=escape)
        if isinstance(inst, From) or type(inst).__name__ in ("Onbuild", "Maintainer"):
            raise DockerfileError(filename, line, trigger, "trigger not allowed in ONBUILD")
        where = Location(filename, line, line, f"ONBUILD {trigger}")
        out.append(replace(inst, loc=where))
    return tuple(out)


def _fail(inst: Instruction, what: str) -> DockerfileError:
    loc = inst.loc or Location("Dockerfile", 1, 1, "")
    return DockerfileError(loc.filename, loc.start_line, loc.text, what)


class _Expander:
    """Expands words against one scope and remembers what was unset."""

    def __init__(self, inst: Instruction, scope: Mapping[str, str], escape: str) -> None:
        self.inst = inst
        self.scope = scope
        self.escape = escape
        self.undefined: set[str] = set()

    def word(self, text: str) -> str:
        return self._run(text)[0]

    def words(self, text: str) -> tuple[str, ...]:
        return self._run(text)[1]

    def heredoc(self, text: str) -> str:
        return self._run(text, heredoc=True)[0]

    def opt(self, text: str | None) -> str | None:
        return None if text is None else self.word(text)

    def _run(self, text: str, heredoc: bool = False) -> tuple[str, tuple[str, ...]]:
        try:
            if heredoc:
                # BuildKit's ExpandRaw: quotes are text, `\` escapes (always backslash);
                # testCopyHeredocSpecialSymbols.
                result = expand(text, self.scope, "\\", quotes=False)
            else:
                result = expand(text, self.scope, self.escape)
        except ExpansionError as exc:
            raise _fail(self.inst, f"bad expansion in {text!r}: {exc}") from None
        self.undefined |= result.unset
        return result.value, result.words


def _global_scope(
    df: Dockerfile, build_args: Mapping[str, str], auto: Mapping[str, str]
) -> dict[str, str]:
    scope = dict(auto)
    for arg in df.global_args:
        ex = _Expander(arg, dict(scope), df.directives.escape)
        for name, default in arg.args:
            if name in build_args:
                scope[name] = build_args[name]
            elif default is not None:
                scope[name] = ex.word(default)
            else:
                scope.pop(name, None)
    return scope


def _platform_args(target: Platform, build: Platform) -> dict[str, str]:
    return {
        "TARGETPLATFORM": str(target), "TARGETOS": target.os,
        "TARGETARCH": target.architecture, "TARGETVARIANT": target.variant,
        "BUILDPLATFORM": str(build), "BUILDOS": build.os,
        "BUILDARCH": build.architecture, "BUILDVARIANT": build.variant,
    }  # fmt: skip


class _StageWalker:
    def __init__(
        self,
        plan: BuildPlan,
        stage: StagePlan,
        env: dict[str, str],
        workdir: str,
        base_args: Sequence[tuple[str, str | None]] = (),
    ) -> None:
        self.plan = plan
        self.stage = stage
        self.escape = plan.dockerfile.directives.escape
        self.build_args = dict(plan.build_args)
        self.globals = dict(stage.global_args)
        self.stage_args = dict(base_args)
        self.args = {k: v for k, v in base_args if v is not None}
        self.declared = set(self.stage_args)
        self.env = env
        self.workdir = workdir
        # A proxy given in either case reaches RUN in both (BuildKit's ProxyEnv sets
        # HTTP_PROXY and http_proxy alike: testBuiltinArgs).
        proxy: dict[str, str] = {}
        for k, v in plan.build_args:
            if k in PROXY_ARGS:
                proxy[k.upper()] = proxy[k.lower()] = v
        self.proxy = tuple(proxy.items())

    def walk(self, instructions: Iterable[Instruction]) -> Iterable[PlannedInstruction]:
        for inst in instructions:
            scope = {**self.args, **self.env}
            ex = _Expander(inst, scope, self.escape)
            args, env = tuple(self.args.items()), tuple(self.env.items())
            expanded = self.expand(inst, ex)
            undefined = frozenset(ex.undefined - self.declared)
            yield PlannedInstruction(
                expanded, inst, args, env, self.proxy, self.workdir, undefined,
                tuple(self.stage_args.items()),
            )  # fmt: skip

    def expand(self, inst: Instruction, ex: _Expander) -> Instruction:
        if isinstance(inst, Env):
            pairs = tuple((ex.word(k), ex.word(v)) for k, v in inst.pairs)
            if any(not k for k, _ in pairs):
                raise _fail(inst, "ENV name is empty after expansion")
            self.env.update(pairs)
            return replace(inst, pairs=pairs)
        if isinstance(inst, Arg):
            out: list[tuple[str, str | None]] = []
            for name, default in inst.args:
                self.declared.add(name)
                # The default is expanded only when no --build-arg overrides it
                # (testArgDefaultExpansion: `ARG BAR=${FOO:?}` with BAR given).
                given = name in self.build_args
                value = self.arg_value(name, None if default is None or given else ex.word(default))
                if value is not None:
                    self.args[name] = value
                # Re-declared: BuildKit keeps the first place and the latest value.
                self.stage_args[name] = value if value is not None else self.args.get(name)
                out.append((name, value))
            return replace(inst, args=tuple(out))
        if isinstance(inst, Label):
            return replace(inst, pairs=tuple((ex.word(k), ex.word(v)) for k, v in inst.pairs))
        if isinstance(inst, Expose):
            # BuildKit's parseExpose sorts the words as written; duplicates stay (its
            # history lists them, the config's map drops them).
            ports: list[str] = []
            for raw in sorted(inst.ports):
                for word in ex.words(raw):
                    ports.extend(expose_ports(word, inst))
            return replace(inst, ports=tuple(ports))
        if isinstance(inst, Volume):
            paths = tuple(ex.word(p) for p in inst.paths)
            if any(not p.strip() for p in paths):
                raise _fail(inst, "VOLUME path is empty after expansion")
            return replace(inst, paths=paths)
        if isinstance(inst, User):
            whole = inst.user + ("" if inst.group is None else ":" + inst.group)
            expanded = ex.word(whole)
            user, sep, group = expanded.partition(":")
            # BuildKit takes `USER $UNSET` as "" (root, as if USER were never given);
            # only a group without a user is refused.
            if not user and expanded:
                raise _fail(inst, "USER has a group but no user after expansion")
            return replace(inst, user=user, group=group if sep else None)
        if isinstance(inst, Workdir):
            # BuildKit's NormalizePath: an empty WORKDIR (`WORKDIR $UNSET`) stays where it is.
            path = ex.word(inst.path)
            self.workdir = posixpath.normpath(posixpath.join(self.workdir, path))
            self.workdir = "/" + self.workdir.lstrip("/")
            return replace(inst, path=self.workdir)
        if isinstance(inst, Copy):
            return self.expand_copy(inst, ex)
        if isinstance(inst, Stopsignal):
            return replace(inst, signal=ex.word(inst.signal))
        if isinstance(inst, Run) and inst.mounts:
            plain = _Expander(inst, {}, self.escape)
            for m in inst.mounts:
                if m.from_ is not None and plain.word(m.from_) != m.from_:
                    raise _fail(inst, "'from' doesn't support variable expansion, define alias "
                                "stage instead")  # fmt: skip
            mounts = tuple(_expand_mount(m, ex) for m in inst.mounts)
            for m in mounts:
                # Empty: a variable the stage graph cannot know yet (the base image's
                # ENV); the builder checks it again with the real environment.
                if m.type and m.type not in ("bind", "cache", "tmpfs", "secret", "ssh"):
                    raise _fail(inst, f'unsupported mount type "{m.type}"')
                if m.type in ("bind", "cache", "tmpfs") and not m.target:
                    raise _fail(inst, f"a {m.type} mount needs target=")
            return replace(inst, mounts=mounts)
        return inst

    def arg_value(self, name: str, default: str | None) -> str | None:
        if name in self.build_args:
            return self.build_args[name]
        if default is not None:
            return default
        return self.globals.get(name)

    def expand_copy(self, inst: Copy, ex: _Expander) -> Copy:
        names = {f"<<{d.name}" for d in inst.heredocs}
        marks = {m for m in inst.sources if re.fullmatch(r"\d*<<-?[\"']?[^\"'\s]+[\"']?", m)}
        sources = tuple(s if s in marks or s in names else ex.word(s) for s in inst.sources)
        if any(not s for s in sources):
            raise _fail(inst, "source is empty after expansion")
        # Empty after expansion means the working directory (BuildKit's testEmptyDestDir).
        dest = ex.word(inst.dest) or "./"
        plain = _Expander(inst, {}, self.escape)
        if inst.from_ is not None and plain.word(inst.from_) != inst.from_:
            # BuildKit (convert.go) refuses any expansion in COPY --from.
            raise _fail(inst, "variable expansion is not supported for --from, define a new "
                        "stage with FROM using ARG from global scope as a workaround")  # fmt: skip
        docs = tuple(
            replace(d, content=ex.heredoc(d.content)) if d.expand else d for d in inst.heredocs
        )
        return replace(
            inst, sources=sources, dest=dest, from_=inst.from_, chown=ex.opt(inst.chown),
            chmod=ex.opt(inst.chmod), excludes=tuple(ex.word(e) for e in inst.excludes),
            checksum=ex.opt(inst.checksum), heredocs=docs,
        )  # fmt: skip


def _expand_mount(mount: Mount, ex: _Expander) -> Mount:
    return replace(
        mount, type=ex.word(mount.type),  # type: ignore[arg-type]
        target=ex.opt(mount.target), source=ex.opt(mount.source),
        id=ex.opt(mount.id), env=ex.opt(mount.env),
    )  # fmt: skip


def expose_ports(word: str, inst: Instruction | None = None) -> list[str]:
    """``80``, ``80/udp``, ``8000-8002/tcp`` → ``["80/tcp"]``, ... (ranges unrolled).

    As BuildKit's parsePort: ``[ip:][hostport:]port[/proto]`` is taken, the host part
    checked and dropped (EXPOSE publishes nothing), ports 0-65535.
    """
    bad = inst if inst is not None else Expose((word,))

    def fail(why: str) -> DockerfileError:
        return _fail(bad, f"invalid port {word!r}: {why}")

    *host, container = word.split(":")
    ip, host_port = (":".join(host[:-1]), host[-1]) if host else ("", "")
    port, _, proto = container.partition("/")
    if not port:
        raise fail("no port specified")
    proto = proto.lower() or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise fail(f"invalid proto {proto!r}; want PORT[-PORT][/tcp|udp|sctp]")
    if ip:
        try:
            ipaddress.ip_address(ip[1:-1] if ip.startswith("[") and ip.endswith("]") else ip)
        except ValueError:
            raise fail(f"invalid IP address {ip}") from None
    start, end = _port_range(port, fail)
    if host_port:
        low, high = _port_range(host_port, fail)
        if high - low != end - start and end != start:
            raise fail("the host and container port ranges differ in size")
    return [f"{p}/{proto}" for p in range(start, end + 1)]


def _port_range(text: str, fail: Callable[[str], DockerfileError]) -> tuple[int, int]:
    start, sep, end = text.partition("-")
    low = _port_number(start, fail)
    if not sep or start == end:
        return low, low
    high = _port_number(end, fail)
    if high < low:
        raise fail(f"invalid port range {text}")
    return low, high


def _port_number(text: str, fail: Callable[[str], DockerfileError]) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", text) or not 0 <= int(text) <= 65535:
        raise fail(f"{text!r} is not a port number (0-65535); want PORT[-PORT][/tcp|udp|sctp]")
    return int(text)
