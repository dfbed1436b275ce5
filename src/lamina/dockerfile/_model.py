"""Typed Dockerfile instructions: frozen values, one class per instruction.

Every instruction carries ``loc`` (file, lines, original text). As parsed, word
fields hold the raw text; in a plan (see ``_plan``) the same classes hold the
expanded values, so the builder reads one set of types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Location:
    """Where an instruction is: ``filename:start_line`` and its original text."""

    filename: str
    start_line: int
    end_line: int
    text: str

    def __str__(self) -> str:
        return f"{self.filename}:{self.start_line}"


@dataclass(frozen=True)
class Diagnostic:
    """A finding of :func:`check` (or a plan warning): ``file:line: [rule] message``.

    ``level`` is ``"warning"`` or ``"error"``.
    """

    rule: str
    message: str
    filename: str
    line: int
    level: Literal["warning", "error"] = "warning"

    def __str__(self) -> str:
        return f"{self.filename}:{self.line}: {self.level} [{self.rule}] {self.message}"


@dataclass(frozen=True)
class Heredoc:
    """A here-document: ``<<NAME`` (``<<-`` strips leading tabs, quoted NAME disables expansion)."""

    name: str
    content: str
    fd: int = 0
    expand: bool = True
    strip_tabs: bool = False


@dataclass(frozen=True)
class Mount:
    """``RUN --mount=type=bind|cache|tmpfs|secret,...`` with its options parsed.

    ``from_`` names a stage, stage index or image (bind and cache). ``mode``,
    ``uid`` and ``gid`` are None when not given (BuildKit defaults apply).
    """

    type: Literal["bind", "cache", "tmpfs", "secret", "ssh"]
    target: str | None = None
    source: str | None = None
    from_: str | None = None
    readonly: bool | None = None
    id: str | None = None
    sharing: Literal["shared", "private", "locked"] = "shared"
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    required: bool = False
    env: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class From:
    image: str
    stage_name: str | None = None
    platform: str | None = None
    as_keyword: str | None = None  # the spelling used ("AS"/"as"), for checks
    loc: Location | None = None


@dataclass(frozen=True)
class Run:
    """``command`` is ``(script,)`` in shell form, argv in exec form (``shell_form`` False)."""

    command: tuple[str, ...]
    shell_form: bool = True
    heredocs: tuple[Heredoc, ...] = ()
    mounts: tuple[Mount, ...] = ()
    network: Literal["default", "none", "host"] | None = None
    security: Literal["sandbox", "insecure"] | None = None
    loc: Location | None = None


@dataclass(frozen=True)
class Cmd:
    command: tuple[str, ...]
    shell_form: bool = False
    loc: Location | None = None


@dataclass(frozen=True)
class Entrypoint:
    command: tuple[str, ...]
    shell_form: bool = False
    loc: Location | None = None


@dataclass(frozen=True)
class Shell:
    argv: tuple[str, ...]
    loc: Location | None = None


@dataclass(frozen=True)
class Env:
    pairs: tuple[tuple[str, str], ...]
    loc: Location | None = None


@dataclass(frozen=True)
class Arg:
    """``ARG NAME[=default] ...``: ``default`` None means declared without a value."""

    args: tuple[tuple[str, str | None], ...]
    loc: Location | None = None


@dataclass(frozen=True)
class Label:
    pairs: tuple[tuple[str, str], ...]
    loc: Location | None = None


@dataclass(frozen=True)
class Maintainer:
    """Deprecated; sets the image's ``author`` (never expanded, as BuildKit's)."""

    name: str
    loc: Location | None = None


@dataclass(frozen=True)
class Expose:
    """Raw port words as parsed; expanded: canonical ``"80/tcp"`` entries, ranges unrolled."""

    ports: tuple[str, ...]
    loc: Location | None = None


@dataclass(frozen=True)
class Volume:
    paths: tuple[str, ...]
    loc: Location | None = None


@dataclass(frozen=True)
class User:
    """``USER name``, ``USER uid:gid``: ``user`` and ``group`` (None when not given)."""

    user: str
    group: str | None = None
    loc: Location | None = None


@dataclass(frozen=True)
class Workdir:
    """As parsed, the path as written; expanded, resolved against the previous WORKDIR."""

    path: str
    loc: Location | None = None


@dataclass(frozen=True)
class Copy:
    """COPY and ADD (``is_add``).

    ``sources`` may hold wildcards and heredoc names (``<<NAME``, matched in
    ``heredocs``); ``dest`` ends with ``/`` when the sources land inside it.
    ``chmod`` is kept as text (octal or symbolic, as BuildKit accepts both).
    """

    sources: tuple[str, ...]
    dest: str
    is_add: bool = False
    from_: str | None = None
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    excludes: tuple[str, ...] = ()
    checksum: str | None = None
    keep_git_dir: bool = False
    parents: bool = False
    heredocs: tuple[Heredoc, ...] = ()
    unpack: bool | None = None
    loc: Location | None = None


@dataclass(frozen=True)
class Stopsignal:
    signal: str
    loc: Location | None = None


@dataclass(frozen=True)
class Healthcheck:
    """``test`` as the image config wants it: ``("NONE",)``, ``("CMD", ...)``,
    ``("CMD-SHELL", script)``. Durations in nanoseconds, 0 = inherit."""

    test: tuple[str, ...]
    interval_ns: int = 0
    timeout_ns: int = 0
    start_period_ns: int = 0
    start_interval_ns: int = 0
    retries: int = 0
    loc: Location | None = None


@dataclass(frozen=True)
class Onbuild:
    """``trigger`` is the text after ONBUILD, as stored in the config's ``OnBuild``."""

    trigger: str
    instruction: Instruction
    loc: Location | None = None


Instruction = (
    From
    | Run
    | Cmd
    | Entrypoint
    | Shell
    | Env
    | Arg
    | Label
    | Maintainer
    | Expose
    | Volume
    | User
    | Workdir
    | Copy
    | Stopsignal
    | Healthcheck
    | Onbuild
)


def single_heredoc(run: Run) -> Heredoc | None:
    """The heredoc of ``RUN <<EOF`` when it is the whole command, else None."""
    command = run.command[0] if run.command else ""
    if (
        run.heredocs
        and command.strip().lstrip("0123456789").lstrip("<-").strip("'\"") == run.heredocs[0].name
    ):
        return run.heredocs[0]
    return None


def run_script(run: Run) -> str:
    """The script a shell-form RUN hands to its SHELL, heredocs included.

    ``RUN <<EOF`` alone runs the heredoc body; otherwise the command line is
    followed by each heredoc body and its delimiter, as the shell expects (BuildKit's
    dispatchRun: ``"\n" + body + NAME`` each, no newline after the last). (A
    lone heredoc that starts with ``#!`` is run as a file instead: the builder
    mounts it at ``/dev/pipes/NAME``, as BuildKit does.)
    """
    command = run.command[0] if run.command else ""
    doc = single_heredoc(run)
    if doc is not None:
        return doc.content
    return command + "".join("\n" + doc.content + doc.name for doc in run.heredocs)
