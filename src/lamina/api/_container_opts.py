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
    for number, raw in enumerate(text.splitlines(), 1):
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
    return parse_env_file(data.decode("utf-8", "replace"), host_env, os.fspath(path))


def parse_env_options(values: Sequence[str], host_env: Mapping[str, str]) -> list[str]:
    """`-e` values: `K=V` as given, `K` from the host (dropped when the host has none)."""
    out = []
    for value in values:
        key, eq, _ = value.partition("=")
        if not key:
            raise InvalidInputError(f"invalid environment variable: {value!r}: no name")
        if eq:
            out.append(value)
        elif key in host_env:
            out.append(f"{key}={host_env[key]}")
    return out


def merge_env(*layers: Sequence[str]) -> list[str]:
    """Later entries replace earlier ones of the same name, in place; new names append."""
    keys: dict[str, int] = {}
    out: list[str] = []
    for layer in layers:
        for entry in layer:
            key = entry.partition("=")[0]
            if key in keys:
                out[keys[key]] = entry
            else:
                keys[key] = len(out)
                out.append(entry)
    return out


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


def parse_volume(text: str) -> Volume:
    parts = text.split(":")
    if len(parts) == 3:
        source, target, mode = parts
        if mode not in ("ro", "rw"):
            raise InvalidInputError(f"invalid mode {mode!r} in volume {text!r}", hint="ro or rw")
    elif len(parts) == 2:
        (source, target), mode = parts, "rw"
    else:
        raise InvalidInputError(f"invalid volume specification: {text!r}",
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
    return Volume(posixpath.normpath(source), clean, mode == "ro")


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
