"""`lamina import --change`: the Dockerfile instructions `docker import -c` accepts,
read by the real frontend and applied as a build applies them."""

from __future__ import annotations

from collections.abc import Sequence

from lamina.builder import apply_metadata
from lamina.dockerfile import (
    Cmd,
    Entrypoint,
    Env,
    Expose,
    Label,
    Onbuild,
    User,
    Volume,
    Workdir,
    parse,
    plan,
)
from lamina.errors import InvalidInputError
from lamina.oci import ImageConfig

ALLOWED = (Cmd, Entrypoint, Env, Expose, Label, Onbuild, User, Volume, Workdir)


def apply_changes(config: ImageConfig, changes: Sequence[str]) -> ImageConfig:
    """Apply each `--change` instruction to the config, in order, with Docker's expansion."""
    for text in changes:
        # A one-step stage: the instruction is expanded against the image's own Env.
        build_plan = plan(parse(f"FROM scratch\n{text}\n", filename="--change"))
        stage = build_plan.stages[-1]
        runtime = config.container_config
        steps = build_plan.plan_stage(
            stage, runtime.get("Env") or (), base_workdir=runtime.get("WorkingDir") or "/"
        )
        if len(steps) != 1 or not isinstance(steps[0].instruction, ALLOWED):
            names = ", ".join(t.__name__.upper() for t in ALLOWED)
            raise InvalidInputError(
                f"--change {text!r}: only one of {names} is allowed",
                hint="docker import -c takes the same instructions",
            )
        config = apply_metadata(config, steps[0].instruction, cmd_set=False)
    return config
