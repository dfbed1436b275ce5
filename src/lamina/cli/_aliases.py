"""Docker's management-command spellings of the top-level commands: `lamina container ls`,
`lamina container rm`, `lamina image build`, `lamina image ls`, … are the same click
commands under their group's names (docker-cli's `container` and `image` groups), plus
`container inspect`, which looks only at containers as `image inspect` looks only at
images."""

from __future__ import annotations

import click

from lamina.cli._build_cmd import build
from lamina.cli._commands import import_, load, save, tag
from lamina.cli._container_cmds import (
    commit,
    container_group,
    create,
    diff,
    exec_,
    kill,
    logs,
    ps,
    rename,
    restart,
    rm,
    run,
    start,
    stop,
    top,
    wait,
)
from lamina.cli._image_cmds import history, image_group, images, inspect, rmi
from lamina.cli._registry_cmd import pull, push

for name, command in (
    ("ls", ps), ("list", ps), ("ps", ps), ("run", run), ("create", create),
    ("start", start), ("stop", stop), ("restart", restart), ("kill", kill), ("rm", rm),
    ("remove", rm), ("logs", logs), ("exec", exec_), ("wait", wait), ("diff", diff),
    ("commit", commit), ("rename", rename), ("top", top),
):  # fmt: skip
    container_group.add_command(command, name)
for name, command in (
    ("ls", images), ("list", images), ("history", history), ("rm", rmi), ("remove", rmi),
    ("tag", tag), ("build", build), ("import", import_), ("load", load), ("save", save),
    ("pull", pull), ("push", push),
):  # fmt: skip
    image_group.add_command(command, name)


@container_group.command("inspect")
@click.option("-f", "--format", "fmt", help="A Go template over each container's JSON.")
@click.option("-s", "--size", is_flag=True, help="The sizes too (SizeRw, SizeRootFs).")
@click.argument("refs", nargs=-1, required=True)
@click.pass_context
def container_inspect(ctx: click.Context, fmt: str | None, size: bool,
                      refs: tuple[str, ...]) -> None:  # fmt: skip
    """Show containers' details as JSON (containers only: `docker container inspect`)."""
    ctx.invoke(inspect, fmt=fmt, kind="container", size=size, images=refs)
