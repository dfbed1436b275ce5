"""`lamina build`: arguments in, progress lines out, the image ID last."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from lamina.cli._main import _Context, cli

if TYPE_CHECKING:
    from lamina.builder import BuildEvent


class _Progress:
    """Plain progress as BuildKit prints it: `#N <step>`, `#N CACHED`, `#N DONE 0.1s`."""

    def __init__(self, mode: str, explain: bool) -> None:
        self.plain = mode == "plain"
        self.explain = explain or self.plain
        self._partial: dict[int, str] = {}

    def __call__(self, event: BuildEvent) -> None:
        n = event.step
        if event.kind == "step":
            click.echo(f"#{n} {event.text}")
        elif event.kind == "cached":
            click.echo(f"#{n} CACHED")
        elif event.kind == "miss":
            if self.explain:
                click.echo(f"#{n} cache miss: {event.text}")
        elif event.kind == "done":
            click.echo(f"#{n} DONE {event.seconds:.1f}s")
        elif event.kind == "warning":
            click.echo(f"WARNING: {event.text}", err=True)
        elif event.kind == "output" and self.plain:
            text = self._partial.pop(n, "") + event.text
            *lines, rest = text.split("\n")
            for line in lines:
                click.echo(f"#{n} {line}")
            if rest:
                self._partial[n] = rest


def _entitlements(allow: tuple[str, ...]) -> tuple[str, ...]:
    for name in allow:
        if name not in ("security.insecure", "network.host"):
            raise click.BadParameter(f"unknown entitlement {name!r}", param_hint="--allow")
    return allow


@cli.command()
@click.option("-t", "--tag", "tags", multiple=True, help="Name the image NAME[:TAG].")
@click.option("-f", "--file", "dockerfile", type=click.Path(path_type=Path), help="Dockerfile.")
@click.option("--build-arg", "build_args", multiple=True, help="Set a build arg K=V.")
@click.option("--target", help="Build this stage.")
@click.option("--no-cache", is_flag=True, help="Do not use the build cache.")
@click.option("--network", type=click.Choice(["host", "none"]), default="host")
@click.option("--progress", type=click.Choice(["auto", "plain", "tty"]), default="auto")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image ID.")
@click.option("--explain", is_flag=True, help="Say why each step missed the cache.")
@click.option("--secret", "secrets", multiple=True,
              help="id=NAME,src=PATH or id=NAME,env=VAR for RUN mounts.")  # fmt: skip
@click.option("--ssh", "ssh", multiple=True, help="default|ID[=SOCKET]: ssh-agent for RUN.")
@click.option("--allow", "allow", multiple=True, help="Entitlement: security.insecure.")
@click.option("--check", is_flag=True, help="Lint the Dockerfile; build nothing.")
@click.argument("context", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.pass_context
def build(
    ctx: click.Context,
    tags: tuple[str, ...],
    dockerfile: Path | None,
    build_args: tuple[str, ...],
    target: str | None,
    no_cache: bool,
    network: str,
    progress: str,
    quiet: bool,
    explain: bool,
    secrets: tuple[str, ...],
    ssh: tuple[str, ...],
    allow: tuple[str, ...],
    check: bool,
    context: Path,
) -> None:
    """Build an image from a Dockerfile and a context directory."""
    from lamina.api import (
        build_image,
        check_dockerfile,
        parse_build_args,
        parse_secret,
        parse_ssh,
    )

    args = parse_build_args(build_args)
    if check:
        findings = check_dockerfile(context, dockerfile, args)
        for finding in findings:
            click.echo(str(finding))
        if any(f.level == "error" for f in findings):
            sys.exit(1)
        return
    obj: _Context = ctx.find_root().obj
    result = build_image(
        obj.api(),
        context,
        dockerfile=dockerfile,
        tags=tags,
        build_args=args,
        target=target,
        no_cache=no_cache,
        network="none" if network == "none" else "host",
        secrets=dict(parse_secret(s) for s in secrets),
        ssh=dict(parse_ssh(s) for s in ssh),
        allow=_entitlements(allow),
        explain=explain,
        on_event=None if quiet else _Progress(progress, explain),
    )
    click.echo(result.image.id)
