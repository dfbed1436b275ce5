"""`lamina import --change`: the Dockerfile instructions `docker import -c` accepts,
read by the real frontend and applied as a build applies them."""

from __future__ import annotations

from collections.abc import Sequence

from lamina.builder import apply_metadata
from lamina.dockerfile import (
    Cmd,
    DockerfileError,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Label,
    Onbuild,
    Stopsignal,
    User,
    Volume,
    Workdir,
    parse,
    plan,
)
from lamina.errors import InvalidInputError
from lamina.oci import ImageConfig

ALLOWED = (Cmd, Entrypoint, Env, Expose, Healthcheck, Label, Onbuild, Stopsignal, User, Volume,
           Workdir)  # fmt: skip
# moby's validCommitCommands: what `docker commit -c` and `docker import -c` take.
CHANGE_COMMANDS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "ONBUILD",
                   "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")  # fmt: skip


def check_change_commands(changes: Sequence[str]) -> None:
    """Docker's refusal of any other instruction: "X is not a valid change command"."""
    for text in changes:
        word = text.strip().split(None, 1)[0] if text.strip() else ""
        if word.upper() not in CHANGE_COMMANDS:
            raise InvalidInputError(
                f"{word or repr(text)} is not a valid change command",
                hint="valid: " + ", ".join(CHANGE_COMMANDS),
            )


def apply_changes(config: ImageConfig, changes: Sequence[str]) -> ImageConfig:
    """Apply each `--change` instruction to the config, in order, with Docker's expansion."""
    check_change_commands(changes)
    for text in changes:
        # A one-step stage: the instruction is expanded against the image's own Env.
        runtime = config.container_config
        try:
            build_plan = plan(parse(f"FROM scratch\n{text}\n", filename="--change"))
            steps = build_plan.plan_stage(
                build_plan.stages[-1],
                runtime.get("Env") or (),
                base_workdir=runtime.get("WorkingDir") or "/",
            )
        except DockerfileError as e:  # its line number counts the FROM added above
            raise InvalidInputError(f"--change {text!r}: {e.what}", hint=e.hint) from None
        if len(steps) != 1 or not isinstance(steps[0].instruction, ALLOWED):
            names = ", ".join(t.__name__.upper() for t in ALLOWED)
            raise InvalidInputError(
                f"--change {text!r}: only one of {names} is allowed",
                hint="docker import -c takes the same instructions",
            )
        config = apply_metadata(config, steps[0].instruction, cmd_set=False)
    return config
