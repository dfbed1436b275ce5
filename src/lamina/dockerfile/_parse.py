"""Dockerfile text → typed instructions, via the ``dockerfile`` package (BuildKit's parser)."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, cast

import dockerfile as _bk

from lamina.errors import InvalidInputError, NotFoundError
from lamina.oci import MAX_DOCKERFILE_BYTES

from ._chmod import parse_chmod
from ._errors import DockerfileError
from ._fold import fold_continuations
from ._model import (
    Arg,
    Cmd,
    Copy,
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
)

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC_MARK = re.compile(r"(\d*)<<(-?)([\"']?)([^\"'\s]+)\3")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9\-_.]*$")
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000,
    "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000,
}  # fmt: skip


@dataclass(frozen=True)
class Directives:
    """Parser directives from the leading comment lines.

    ``escape`` is ``"\\"`` or ``"`"``; ``check_skip`` holds rule names (or
    ``"all"``) from ``# check=skip=...``; ``check_error`` from ``error=true``.
    """

    syntax: str | None = None
    escape: str = "\\"
    check_skip: frozenset[str] = frozenset()
    check_error: bool = False


@dataclass(frozen=True)
class Stage:
    """One ``FROM`` and the instructions up to the next one.

    ``name`` is the lower-cased ``AS`` name (stage names are case-insensitive).
    """

    index: int
    from_: From
    instructions: tuple[Instruction, ...]

    @property
    def name(self) -> str | None:
        return self.from_.stage_name.lower() if self.from_.stage_name else None


@dataclass(frozen=True)
class Dockerfile:
    """A parsed Dockerfile: directives, the ARGs before the first FROM, the stages."""

    filename: str
    directives: Directives
    global_args: tuple[Arg, ...]
    stages: tuple[Stage, ...]


def parse_directives(text: str) -> Directives:
    """Read ``# syntax=``, ``# escape=``, ``# check=`` until the first other line."""
    found: dict[str, str] = {}
    # As BuildKit's parser: a BOM before the first line is dropped, and a comment that
    # names no known directive ends the block (a later `# escape=` is a comment).
    for line in text.removeprefix("\ufeff").splitlines():
        m = _DIRECTIVE.match(line)
        if not m:
            break
        key = m.group(1).lower()
        if key in found or key not in ("syntax", "escape", "check"):
            break
        found[key] = m.group(2)
    skip: set[str] = set()
    error = False
    for part in found.get("check", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key.strip() == "skip":
            skip.update(v.strip() for v in value.split(",") if v.strip())
        elif key.strip() == "error":
            error = value.strip().lower() == "true"
    escape = found.get("escape", "\\")
    return Directives(found.get("syntax"), escape, frozenset(skip), error)


def _parse_commands(text: str, filename: str, escape: str) -> tuple[Any, ...]:
    # Long runs of continuation lines cost BuildKit's parser quadratic time: it is given
    # them on fewer lines (the same logical lines), and its line numbers are mapped back.
    folded = fold_continuations(text, escape)
    given = folded.text if folded is not None else text
    try:
        commands = cast(tuple[Any, ...], _bk.parse_string(given))
    except _bk.GoParseError as exc:
        message = str(exc)
    else:
        if folded is None:
            return commands
        return tuple(folded.restore_lines(c) for c in commands)
    lines = text.splitlines(keepends=True)
    if folded is None:
        line = _locate(len(lines), lambda n: "".join(lines[:n]), message)
    else:
        line = _locate(len(lines), folded.prefix, message)
    shown = lines[line - 1] if 0 < line <= len(lines) else ""
    raise DockerfileError(filename, line, shown, message)


def _locate(count: int, prefix: Callable[[int], str], message: str) -> int:
    """The first line whose prefix of the file (`prefix(n)`: the first n of its `count`
    lines) already fails with ``message``."""

    def fails(n: int) -> bool:
        try:
            _bk.parse_string(prefix(n))
        except _bk.GoParseError as exc:
            return str(exc) == message
        return False

    if not count or message == "file with no instructions" or not fails(count):
        return 1
    lo, hi = 1, count
    while lo < hi:
        mid = (lo + hi) // 2
        if fails(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def read_dockerfile(path: Path) -> str:
    """A Dockerfile's text, refused before it is read whole when it is over the cap."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_DOCKERFILE_BYTES + 1)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFoundError(f"Dockerfile {path} does not exist") from None
    except IsADirectoryError:
        raise InvalidInputError(f"Dockerfile {path} is a directory") from None
    if len(data) > MAX_DOCKERFILE_BYTES:
        raise InvalidInputError(
            f"Dockerfile {path} is larger than {MAX_DOCKERFILE_BYTES} bytes",
            hint="a Dockerfile this large is not one; check the -f path",
        )
    return data.decode("utf-8", "replace")


def parse(text: str, *, filename: str = "Dockerfile") -> Dockerfile:
    """Parse Dockerfile ``text``; every problem is a :class:`DockerfileError` with file:line."""
    if len(text) > MAX_DOCKERFILE_BYTES:
        raise DockerfileError(
            filename, 1, "", f"Dockerfile larger than {MAX_DOCKERFILE_BYTES} bytes"
        )
    if not text:  # BuildKit's toDispatchState, before its parser says "no instructions"
        raise DockerfileError(filename, 1, "", "the Dockerfile cannot be empty")
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise DockerfileError(filename, line, "", "Dockerfile contains a NUL byte")
    directives = parse_directives(text)
    if directives.escape not in ("\\", "`"):
        raise DockerfileError(
            filename, 1, "", f"invalid escape token {directives.escape!r} does not match ` or \\"
        )
    commands = _parse_commands(text, filename, directives.escape)
    converter = _Converter(filename, directives.escape, text.splitlines(keepends=True))
    global_args: list[Arg] = []
    stages: list[tuple[From, list[Instruction]]] = []
    for command in commands:
        inst = converter.convert(command)
        if isinstance(inst, From):
            stages.append((inst, []))
        elif stages:
            stages[-1][1].append(inst)
        elif isinstance(inst, Arg):
            global_args.append(inst)
        else:
            converter.fail(command, "no build stage in current context: FROM must come first")
    if not stages:
        raise DockerfileError(
            filename, 1, "", "dockerfile contains no stages to build (no FROM instruction)"
        )
    built = tuple(Stage(i, f, tuple(body)) for i, (f, body) in enumerate(stages))
    return Dockerfile(filename, directives, tuple(global_args), built)


def parse_instruction(
    text: str, *, filename: str = "Dockerfile", escape: str = "\\"
) -> Instruction:
    """Parse one instruction line (as an ONBUILD trigger holds it)."""
    prefix = "# escape=`\n" if escape == "`" else ""
    commands = _parse_commands(prefix + text, filename, escape)
    if len(commands) != 1:
        raise DockerfileError(filename, 1, text, "expected exactly one instruction")
    lines = (prefix + text).splitlines(keepends=True)
    return _Converter(filename, escape, lines).convert(commands[0])


def parse_duration(text: str) -> int:
    """A Go duration (``1m30s``, ``500ms``) in nanoseconds; ValueError when malformed."""
    if text == "0":
        return 0
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION.match(text, pos)
        if not m:
            raise ValueError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not text:
        raise ValueError("invalid duration ''")
    return int(total)


_FlagKind = Literal["str", "bool", "list"]
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?$", re.IGNORECASE)


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _bytes(text: str) -> int:
    """A size as BuildKit's go-units RAMInBytes reads it: `128m` is 128 MiB."""
    m = _SIZE.match(text.strip())
    if not m:
        raise ValueError(text)
    power = " kmgtp".index(m.group(2).lower() or " ")
    return int(float(m.group(1)) * 1024**power)


class _Converter:
    def __init__(self, filename: str, escape: str, lines: list[str] | None = None) -> None:
        self.filename = filename
        self.escape = escape
        self.lines = lines or []
        self.handlers: dict[str, Callable[[Any, Location], Instruction]] = {
            "FROM": self._from, "RUN": self._run, "CMD": self._cmd,
            "ENTRYPOINT": self._entrypoint, "SHELL": self._shell, "ENV": self._env,
            "ARG": self._arg, "LABEL": self._label, "MAINTAINER": self._maintainer,
            "EXPOSE": self._expose, "VOLUME": self._volume, "USER": self._user,
            "WORKDIR": self._workdir, "COPY": self._copy, "ADD": self._copy,
            "STOPSIGNAL": self._stopsignal, "HEALTHCHECK": self._healthcheck,
            "ONBUILD": self._onbuild,
        }  # fmt: skip

    def fail(self, command: Any, what: str) -> DockerfileError:
        raise DockerfileError(self.filename, command.start_line, command.original or "", what)

    def convert(self, command: Any) -> Instruction:
        if not command.cmd:
            self.fail(command, "an escaped line with no instruction")
        loc = Location(self.filename, command.start_line, command.end_line, command.original)
        handler = self.handlers.get(command.cmd.upper())
        if handler is None:
            close = difflib.get_close_matches(command.cmd.upper(), self.handlers, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            self.fail(command, f"unknown instruction: {command.cmd}{hint}")
        assert handler is not None
        return handler(command, loc)

    def flags(self, command: Any, allowed: dict[str, _FlagKind]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for flag in command.flags:
            name, eq, value = flag[2:].partition("=")
            kind = allowed.get(name)
            if kind is None:
                self.fail(command, f"unknown flag: --{name}" + _did_you_mean(name, allowed))
            if kind == "bool":
                if eq and value.lower() not in ("true", "false"):
                    self.fail(command, f"expecting boolean value for flag --{name}, not {value!r}")
                out[name] = not eq or value.lower() == "true"
                continue
            if not eq:
                self.fail(command, f"missing a value on flag --{name}")
            if kind == "list":
                out.setdefault(name, []).append(value)
            elif name in out:
                self.fail(command, f"duplicate flag specified: --{name}")
            else:
                out[name] = value
        return out

    def need(self, command: Any, count: int = 1) -> tuple[str, ...]:
        values = tuple(command.value)
        if len(values) < count or (values and not command.json and not "".join(values).strip()):
            noun = "argument" if count == 1 else "arguments"
            self.fail(command, f"{command.cmd.upper()} requires at least {count} {noun}")
        return values

    def heredocs(self, command: Any) -> tuple[Heredoc, ...]:
        if not command.heredocs:
            return ()
        first_line = command.original.split("\n", 1)[0]
        marks = {m.group(4): m for m in _HEREDOC_MARK.finditer(first_line)}
        docs = []
        for doc in command.heredocs:
            mark = marks.get(doc.name)
            strip = bool(mark and mark.group(2))
            content = doc.content
            if strip:
                content = "".join(ln.lstrip("\t") for ln in content.splitlines(keepends=True))
            expand = not (mark and mark.group(3))
            docs.append(Heredoc(doc.name, content, doc.file_descriptor, expand, strip))
        return tuple(docs)

    def _from(self, c: Any, loc: Location) -> From:
        flags = self.flags(c, {"platform": "str"})
        values = self.need(c)
        if len(values) == 1:
            return From(values[0], None, flags.get("platform"), None, loc)
        if len(values) != 3 or values[1].lower() != "as":
            self.fail(c, "FROM requires either one or three arguments: FROM <image> [AS <name>]")
        if not _STAGE_NAME.match(values[2].lower()):
            self.fail(c, f"invalid stage name {values[2]!r}: use letters, digits, '-', '_', '.'")
        return From(values[0], values[2], flags.get("platform"), values[1], loc)

    def exec_form(self, c: Any) -> tuple[str, ...] | None:
        """The JSON array of an exec-form command, or None when the text after the
        instruction is not exactly one (BuildKit then takes it as shell form: the
        parser's lenient reading of `["a"]junk` as JSON is not BuildKit's)."""
        if not c.json:
            return None
        first = c.original.find("[")
        text = re.sub(re.escape(self.escape) + r"[ \t]*\r?\n", "", c.original[first:]).strip()
        try:
            parsed = json.loads(text)
        except ValueError:
            return None
        if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
            return None
        return tuple(c.value)

    def shell_text(self, c: Any) -> tuple[str, ...]:
        first = c.original.find("[")
        return (c.original[first:].strip(),)

    def _run(self, c: Any, loc: Location) -> Run:
        flags = self.flags(c, {"mount": "list", "network": "str", "security": "str"})
        argv = self.exec_form(c)
        if c.json and argv is None:
            c = c._replace(json=False, value=self.shell_text(c))
        values = self.need(c) if not c.json else tuple(c.value)
        mounts = tuple(self.mount(c, spec) for spec in flags.get("mount", []))
        network = flags.get("network")
        if network is not None and network not in ("default", "none", "host"):
            self.fail(c, f"unsupported network mode {network!r} (default, none, host)")
        security = flags.get("security")
        if security is not None and security not in ("sandbox", "insecure"):
            self.fail(c, f"unsupported security mode {security!r} (sandbox, insecure)")
        return Run(values, not c.json, self.heredocs(c), mounts, network, security, loc)

    def mount(self, c: Any, spec: str) -> Mount:
        fields: dict[str, Any] = {}
        mount_type = "bind"
        for part in spec.split(","):
            key, eq, value = part.strip().partition("=")
            key = key.lower()
            if key == "type":
                if value not in ("bind", "cache", "tmpfs", "secret", "ssh") and "$" not in value:
                    kinds = ("bind", "cache", "tmpfs", "secret", "ssh")
                    self.fail(c, f'unsupported mount type "{value}"' + _did_you_mean(value, kinds))
                mount_type = value
            elif key in ("target", "dst", "destination"):
                fields["target"] = value
            elif key in ("source", "src"):
                fields["source"] = value
            elif key in ("from", "id", "env"):
                fields["from_" if key == "from" else key] = value
            elif key in ("ro", "readonly", "rw", "readwrite", "required"):
                flag = not eq or value.lower() == "true"
                if eq and value.lower() not in ("true", "false"):
                    self.fail(c, f"invalid boolean {value!r} for mount option {key}")
                if key == "required":
                    fields["required"] = flag
                else:
                    fields["readonly"] = flag if key in ("ro", "readonly") else not flag
            elif key == "sharing":
                if value not in ("shared", "private", "locked"):
                    self.fail(c, f"unsupported sharing value {value!r}")
                fields["sharing"] = value
            elif key in ("mode", "uid", "gid", "size"):
                try:
                    fields[key] = (int(value, 8) if key == "mode" else
                                   _bytes(value) if key == "size" else int(value))  # fmt: skip
                except ValueError:
                    self.fail(c, f"invalid {key} {value!r} in --mount")
            else:
                known = ("type", "target", "source", "from", "id", "env", "readonly", "rw",
                         "required", "sharing", "mode", "uid", "gid", "size")  # fmt: skip
                self.fail(c, f"unexpected key {key!r} in --mount={spec}"
                          + _did_you_mean(key, known))  # fmt: skip
        # A type from a variable (`type=$MNT_TYPE`, BuildKit's testMountArg) is checked
        # once the plan has expanded it.
        if mount_type in ("bind", "cache", "tmpfs") and not fields.get("target"):
            self.fail(c, f"--mount={spec}: a {mount_type} mount needs target=")
        return Mount(type=mount_type, **fields)  # type: ignore[arg-type]

    def _command(self, c: Any) -> tuple[tuple[str, ...], bool]:
        self.flags(c, {})
        argv = self.exec_form(c)
        if argv is not None:
            return argv, False
        if c.json:
            return self.shell_text(c), True
        return self.need(c), True

    def _cmd(self, c: Any, loc: Location) -> Cmd:
        command, shell = self._command(c)
        return Cmd(command, shell, loc)

    def _entrypoint(self, c: Any, loc: Location) -> Entrypoint:
        command, shell = self._command(c)
        return Entrypoint(command, shell, loc)

    def _shell(self, c: Any, loc: Location) -> Shell:
        self.flags(c, {})
        if not c.json:
            self.fail(c, "SHELL requires the arguments to be in JSON form")
        if not c.value:
            self.fail(c, "SHELL requires at least one argument")
        return Shell(tuple(c.value), loc)

    def pairs(self, c: Any) -> tuple[tuple[str, str], ...]:
        self.flags(c, {})
        values = self.need(c, 2)
        if len(values) % 2:
            self.fail(c, f"{c.cmd.upper()} names need values")
        out = tuple(zip(values[::2], values[1::2], strict=True))
        if any(not k for k, _ in out):
            self.fail(c, f"{c.cmd.upper()} names can not be blank")
        return out

    def _env(self, c: Any, loc: Location) -> Env:
        return Env(self.pairs(c), loc)

    def _label(self, c: Any, loc: Location) -> Label:
        return Label(self.pairs(c), loc)

    def _arg(self, c: Any, loc: Location) -> Arg:
        self.flags(c, {})
        out: list[tuple[str, str | None]] = []
        for word in self.need(c):
            name, eq, default = word.partition("=")
            if not name:
                self.fail(c, "ARG names can not be blank")
            out.append((name, default if eq else None))
        return Arg(tuple(out), loc)

    def _maintainer(self, c: Any, loc: Location) -> Maintainer:
        self.flags(c, {})
        return Maintainer(" ".join(self.need(c)), loc)

    def _expose(self, c: Any, loc: Location) -> Expose:
        self.flags(c, {})
        return Expose(self.need(c), loc)

    def _volume(self, c: Any, loc: Location) -> Volume:
        self.flags(c, {})
        values = self.need(c)
        if any(not v.strip() for v in values):
            self.fail(c, "VOLUME specified can not be an empty string")
        return Volume(values, loc)

    def _user(self, c: Any, loc: Location) -> User:
        self.flags(c, {})
        user, sep, group = self.need(c)[0].partition(":")
        return User(user, group if sep else None, loc)

    def _workdir(self, c: Any, loc: Location) -> Workdir:
        self.flags(c, {})
        return Workdir(self.need(c)[0], loc)

    def _copy(self, c: Any, loc: Location) -> Copy:
        is_add = c.cmd.upper() == "ADD"
        allowed: dict[str, _FlagKind] = {
            "chown": "str", "chmod": "str", "link": "bool", "exclude": "list",
        }  # fmt: skip
        if is_add:
            allowed.update({"checksum": "str", "keep-git-dir": "bool", "unpack": "bool"})
        else:
            allowed.update({"from": "str", "parents": "bool"})
        flags = self.flags(c, allowed)
        chmod = flags.get("chmod")
        if chmod is not None and "$" not in chmod:
            try:
                parse_chmod(chmod)
            except ValueError as exc:
                self.fail(c, str(exc))
        values = self.need(c, 2)
        if len(values) < 2:
            self.fail(
                c, f"{c.cmd.upper()} requires at least two arguments: sources and a destination"
            )
        return Copy(
            sources=values[:-1], dest=values[-1], is_add=is_add, from_=flags.get("from"),
            chown=flags.get("chown"), chmod=flags.get("chmod"), link=flags.get("link", False),
            excludes=tuple(flags.get("exclude", [])), checksum=flags.get("checksum"),
            keep_git_dir=flags.get("keep-git-dir", False), parents=flags.get("parents", False),
            heredocs=self.heredocs(c), unpack=flags.get("unpack"), loc=loc,
        )  # fmt: skip

    def _stopsignal(self, c: Any, loc: Location) -> Stopsignal:
        self.flags(c, {})
        return Stopsignal(self.need(c)[0], loc)

    def _healthcheck(self, c: Any, loc: Location) -> Healthcheck:
        flags = self.flags(
            c,
            {
                k: "str"
                for k in ("interval", "timeout", "start-period", "start-interval", "retries")
            },
        )
        values = self.need(c)
        kind = values[0].upper()
        if kind == "NONE":
            if len(values) > 1 or flags:
                self.fail(c, "HEALTHCHECK NONE takes no other arguments")
            return Healthcheck(("NONE",), loc=loc)
        if kind != "CMD":
            self.fail(c, f"unknown type {values[0]!r} in HEALTHCHECK (try CMD)")
        if len(values) < 2 or (not c.json and not values[1].strip()):
            self.fail(c, "HEALTHCHECK CMD requires a command")
        test = ("CMD", *values[1:]) if c.json else ("CMD-SHELL", values[1])
        durations: dict[str, int] = {}
        for name in ("interval", "timeout", "start-period", "start-interval"):
            raw = flags.get(name)
            if raw is None:
                continue
            try:
                ns = parse_duration(raw)
            except ValueError:
                self.fail(c, f"invalid duration {raw!r} for --{name}")
            if ns != 0 and ns < 1_000_000:
                self.fail(c, f"--{name} can not be less than 1ms")
            durations[name.replace("-", "_") + "_ns"] = ns
        retries = 0
        if "retries" in flags:
            try:
                retries = int(flags["retries"])
            except ValueError:
                self.fail(c, f"invalid --retries {flags['retries']!r}")
            if retries < 0:
                self.fail(c, "--retries can not be negative")
        return Healthcheck(test, retries=retries, loc=loc, **durations)

    def _onbuild(self, c: Any, loc: Location) -> Onbuild:
        sub = (c.sub_cmd or "").upper()
        if not sub:
            self.fail(c, "ONBUILD requires an instruction")
        if sub == "ONBUILD":  # BuildKit's parseOnBuild words this one its own way
            self.fail(c, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if sub in ("FROM", "MAINTAINER"):
            self.fail(c, f"{sub} isn't allowed as an ONBUILD trigger")
        parts = c.original.split("\n", 1)[0].split(None, 1)
        trigger = parts[1].strip() if len(parts) > 1 else ""
        if _HEREDOC_MARK.search(trigger) and c.end_line > c.start_line:
            # A heredoc trigger keeps its body (BuildKit's testOnBuildHeredoc): the config's
            # OnBuild entry is the whole text, parsed again when a child builds.
            body = "".join(self.lines[c.start_line : c.end_line])
            trigger = trigger + "\n" + body.rstrip("\n")
        try:
            inner = parse_instruction(trigger, filename=self.filename, escape=self.escape)
        except DockerfileError as exc:
            self.fail(c, f"bad ONBUILD trigger: {exc.what}")
        return Onbuild(trigger, replace(inner, loc=loc), loc)
