"""`lamina import --change`: the Dockerfile instructions `docker import -c` accepts."""

from __future__ import annotations

from collections.abc import Sequence

from lamina.dockerfile import parse_instruction
from lamina.dockerfile._model import (
    Cmd,
    Entrypoint,
    Env,
    Expose,
    Label,
    Onbuild,
    User,
    Volume,
    Workdir,
)
from lamina.errors import InvalidInputError
from lamina.oci import ImageConfig

ALLOWED = "CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME, WORKDIR"


def _command(command: tuple[str, ...], shell_form: bool) -> list[str]:
    return ["/bin/sh", "-c", " ".join(command)] if shell_form else list(command)


def apply_changes(config: ImageConfig, changes: Sequence[str]) -> ImageConfig:
    """Apply each `--change` instruction to the config's runtime defaults, in order."""
    for text in changes:
        instruction = parse_instruction(text, filename="--change")
        runtime = config.container_config
        if isinstance(instruction, Cmd):
            runtime["Cmd"] = _command(instruction.command, instruction.shell_form)
        elif isinstance(instruction, Entrypoint):
            runtime["Entrypoint"] = _command(instruction.command, instruction.shell_form)
        elif isinstance(instruction, Env):
            env = [
                e
                for e in runtime.get("Env") or []
                if e.partition("=")[0] not in dict(instruction.pairs)
            ]
            runtime["Env"] = env + [f"{k}={v}" for k, v in instruction.pairs]
        elif isinstance(instruction, Expose):
            ports = dict(runtime.get("ExposedPorts") or {})
            for port in instruction.ports:
                ports[port if "/" in port else f"{port}/tcp"] = {}
            runtime["ExposedPorts"] = ports
        elif isinstance(instruction, Label):
            runtime["Labels"] = {**(runtime.get("Labels") or {}), **dict(instruction.pairs)}
        elif isinstance(instruction, Onbuild):
            runtime["OnBuild"] = [*(runtime.get("OnBuild") or []), instruction.trigger]
        elif isinstance(instruction, User):
            group = f":{instruction.group}" if instruction.group else ""
            runtime["User"] = instruction.user + group
        elif isinstance(instruction, Volume):
            runtime["Volumes"] = {
                **(runtime.get("Volumes") or {}),
                **{p: {} for p in instruction.paths},
            }
        elif isinstance(instruction, Workdir):
            runtime["WorkingDir"] = instruction.path
        else:
            raise InvalidInputError(
                f"--change {text!r}: {type(instruction).__name__.upper()} is not allowed here",
                hint=f"import accepts {ALLOWED}",
            )
        config = ImageConfig(dict(config.to_json(), config=runtime))
    return config
