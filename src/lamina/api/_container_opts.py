"""`lamina run`'s options as Docker reads them: environment, env files, volumes, command.

Pure functions (the host environment is passed in), so every rule is unit-tested.
"""

from __future__ import annotations

import os
import posixpath

from lamina.errors import InvalidInputError
from lamina.runtime import DEFAULT_PATH

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import NamedTuple

    from lamina._paths import StrPath
else:
    from lamina._frozen import NamedTuple

_WHITESPACE = " \t\n\r\v\f"
_MAX_ENV_FILE = 1 << 20


def parse_env_file(text: str, host_env: Mapping[str, str], where: str) -> list[str]:
    """Docker's env-file: one `KEY=value` a line, taken literally (no quotes, no expansion);
    blank lines and lines starting with `#` skipped; `KEY` alone takes the host's value or
    is dropped; a key holding whitespace, or no key at all, is an error."""
    out: list[str] = []
    text = text.removeprefix("\ufeff")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    for number, line_text in enumerate(lines, 1):
        raw = line_text.removesuffix("\r")  # Go's ScanLines: lines end at \n only
        line = raw.lstrip(_WHITESPACE)
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if not key:
            raise InvalidInputError(f"{where}:{number}: no variable name on line {raw!r}")
        if any(c in _WHITESPACE for c in key):
            raise InvalidInputError(f"{where}:{number}: variable {key!r} contains whitespaces")
        if eq:
            out.append(f"{key}={value}")
        elif key in host_env:
            out.append(f"{key}={host_env[key]}")
    return out


def read_env_file(path: StrPath, host_env: Mapping[str, str]) -> list[str]:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_ENV_FILE + 1)
    except OSError as e:
        raise InvalidInputError(f"env file {path}: {e.strerror}") from None
    if len(data) > _MAX_ENV_FILE:
        raise InvalidInputError(f"env file {path} is larger than {_MAX_ENV_FILE} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise InvalidInputError(f"env file {path}: invalid utf8 bytes at line {line}") from None
    return parse_env_file(text, host_env, os.fspath(path))


def parse_env_options(values: Sequence[str], host_env: Mapping[str, str]) -> list[str]:
    """`-e` values: `K=V` as given, `K` with the host's value; a `K` the host does not have
    stays bare, which unsets K (`merge_env`), as docker-cli passes it on and moby drops it."""
    out = []
    for value in values:
        key, eq, _ = value.partition("=")
        if not key:
            raise InvalidInputError(f"invalid environment variable: {value}")
        if eq:
            out.append(value)
        elif key in host_env:
            out.append(f"{key}={host_env[key]}")
        else:
            out.append(key)
    return out


def merge_env(*layers: Sequence[str]) -> list[str]:
    """Later entries replace earlier ones of the same name, in place; new names append; a
    bare `K` (no `=`) removes K."""
    out: dict[str, str] = {}
    for layer in layers:
        for entry in layer:
            key, eq, _ = entry.partition("=")
            if eq:
                out[key] = entry
            else:
                out.pop(key, None)
    return list(out.values())


_NAME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_REST = _NAME_FIRST | frozenset("_.-")
_MAX_NAME = 255


def check_container_name(name: str) -> str:
    """moby's rule for `--name`: `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (two characters at least),
    after one optional leading `/`; the name without it."""
    bare = name.removeprefix("/")
    # moby's pattern, checked without `re` (the run path does not load it)
    if len(bare) < 2 or bare[0] not in _NAME_FIRST or not _NAME_REST.issuperset(bare):
        raise InvalidInputError(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    if len(bare) > _MAX_NAME:
        raise InvalidInputError(f"container name {bare[:20]}... is longer than {_MAX_NAME} "
                                "characters")  # fmt: skip
    return bare


def process_env(*, hostname: str, tty: bool, config_env: Sequence[str], home: str) -> list[str]:
    """The process' environment, in Docker's order: PATH's default, HOSTNAME, TERM with a
    terminal, then the container's Env (image, env files, -e); HOME when none set it."""
    base = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"]
    if tty:
        base.append("TERM=xterm")
    env = merge_env(base, config_env)
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={home}")
    return env


class Volume(NamedTuple):
    """`-v HOST:CTR[:ro|rw]` checked: an absolute host path, a clean absolute container path."""

    source: str
    target: str
    readonly: bool


# moby's mount modes (linuxValidMountMode), one of each kind at most. SELinux labels and
# consistency change nothing on Linux without SELinux (nor in Docker); lamina's binds are
# rprivate, so only that propagation is taken.
_MODE_KINDS = (
    {"rw", "ro"},
    {"z", "Z"},
    {"consistent", "cached", "delegated"},
    {"private", "rprivate"},
)
_PROPAGATION = {"shared", "rshared", "slave", "rslave"}


def _volume_readonly(mode: str) -> bool:
    seen: set[int] = set()
    for option in mode.split(","):
        if option in _PROPAGATION:
            raise InvalidInputError(
                f"mount propagation {option!r} is not supported",
                hint="lamina binds volumes rprivate; give rprivate or no propagation",
            )
        kind = next((i for i, opts in enumerate(_MODE_KINDS) if option in opts), None)
        if kind is None or kind in seen:
            raise InvalidInputError(f"invalid mode: {mode}", hint="-v HOST:CTR[:ro|rw][,z]")
        seen.add(kind)
    return "ro" in mode.split(",")


def parse_volume(text: str) -> Volume:
    parts = text.split(":")
    if not parts[0]:
        source = target = ""
    elif len(parts) == 3:
        source, target, mode = parts
        readonly = bool(mode) and _volume_readonly(mode)
    elif len(parts) == 2:
        (source, target), readonly = parts, False
    else:
        source = target = ""
    if not target:
        raise InvalidInputError(f"invalid volume specification: '{text}'",
                                hint="-v /host/dir:/container/dir[:ro]")  # fmt: skip
    if not source.startswith("/"):
        raise InvalidInputError(
            f"volume {text!r}: the host path {source!r} is not absolute",
            hint="named volumes are not supported; give an absolute host directory",
        )
    if not target.startswith("/"):
        raise InvalidInputError(f"volume {text!r}: the container path {target!r} is not absolute")
    if ".." in target.split("/"):
        raise InvalidInputError(f"volume {text!r}: the container path may not contain '..'")
    clean = posixpath.normpath(target)
    if clean == "/":
        raise InvalidInputError(f"volume {text!r}: cannot mount over the container's root")
    return Volume(posixpath.normpath(source), clean, readonly)


def process_args(
    image_entrypoint: Sequence[str] | None,
    image_cmd: Sequence[str] | None,
    entrypoint: str | None,
    command: Sequence[str],
) -> tuple[list[str], list[str]]:
    """(entrypoint, cmd) as Docker combines them: a given `--entrypoint` replaces the image's
    and drops its Cmd (`""` clears both); a given command replaces the image's Cmd."""
    if entrypoint is not None:
        ep = [entrypoint] if entrypoint else []
        cmd = list(command)
    else:
        ep = list(image_entrypoint or [])
        cmd = list(command) if command else list(image_cmd or [])
    if not ep and not cmd:
        raise InvalidInputError("no command specified", hint="give a command after the image name")
    return ep, cmd
