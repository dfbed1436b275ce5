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
    """Plain progress as BuildKit prints it: `#N <step>`, `#N 0.215 <output line>`,
    `#N CACHED`, `#N DONE 0.1s`.

    `auto` is plain when stdout is not a terminal (a CI log), as BuildKit falls back:
    each line a RUN prints appears as it comes, with its step number and the seconds
    since the command started. Without a terminal lamina has no live view, so `auto`
    and `tty` on a terminal show steps without their output.
    """

    def __init__(self, mode: str, explain: bool, is_tty: bool) -> None:
        plain = mode == "plain"
        self.show_output = plain or not is_tty
        self.explain = explain or plain
        self._partial: dict[int, tuple[str, float]] = {}

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
            self._flush(n)
            click.echo(f"#{n} DONE {event.seconds:.1f}s")
        elif event.kind == "warning":
            click.echo(f"WARNING: {event.text}", err=True)
        elif event.kind == "output" and self.show_output:
            text = self._partial.pop(n, ("", 0.0))[0] + event.text
            *lines, rest = text.split("\n")
            for line in lines:
                click.echo(f"#{n} {event.seconds:.3f} {line.rstrip(chr(13))}")
            if rest:
                self._partial[n] = (rest, event.seconds)

    def _flush(self, n: int) -> None:
        """A last line the command printed without a newline."""
        if n in self._partial:
            rest, seconds = self._partial.pop(n)
            click.echo(f"#{n} {seconds:.3f} {rest}")


def _entitlements(allow: tuple[str, ...]) -> tuple[str, ...]:
    for name in allow:
        if name not in ("security.insecure", "network.host"):
            raise click.BadParameter(f"unknown entitlement {name!r}", param_hint="--allow")
    return allow


@cli.command()
@click.option("-t", "--tag", "tags", multiple=True, help="Name the image NAME[:TAG].")
@click.option("-f", "--file", "dockerfile", help="The Dockerfile (- reads it from stdin).")
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
@click.option("--cache-to", "cache_to", multiple=True,
              help="Export the build cache: type=registry,ref=R[,mode=min|max].")  # fmt: skip
@click.option("--cache-from", "cache_from", multiple=True,
              help="Import a build cache: type=registry,ref=R (repeatable).")  # fmt: skip
@click.option("--label", "labels", multiple=True, metavar="K=V", help="Label the image.")
@click.option("--platform", help="Target platform os/arch[/variant] (RUN: this machine's only).")
@click.option(
    "-o",
    "--output",
    "outputs",
    multiple=True,
    metavar="type=T,dest=P",
    help="Also export: type=docker-archive|oci-archive|tar,dest=FILE or type=local,dest=DIR.",
)
@click.option(
    "--iidfile", type=click.Path(path_type=Path, dir_okay=False), help="Write the image ID here."
)
@click.argument("context")
@click.pass_context
def build(
    ctx: click.Context,
    tags: tuple[str, ...],
    dockerfile: str | None,
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
    cache_to: tuple[str, ...],
    cache_from: tuple[str, ...],
    labels: tuple[str, ...],
    platform: str | None,
    outputs: tuple[str, ...],
    iidfile: Path | None,
    context: str,
) -> None:
    """Build an image from a Dockerfile and a context: a directory, a tar archive (file or
    `-` for stdin), or `-` with a Dockerfile on stdin and no context."""
    from lamina.api import (
        build_image,
        check_dockerfile,
        parse_build_args,
        parse_labels,
        parse_secret,
        parse_ssh,
    )

    args = parse_build_args(build_args)
    dockerfile_arg = _dockerfile_arg(dockerfile, context)
    if check:
        if context == "-" or dockerfile == "-" or not Path(context).is_dir():
            raise click.UsageError("--check needs a context directory and a Dockerfile file")
        findings = check_dockerfile(Path(context), _as_path(dockerfile_arg), args)
        for finding in findings:
            click.echo(str(finding))
        if any(f.level == "error" for f in findings):
            sys.exit(1)
        return
    obj: _Context = ctx.find_root().obj
    uses_stdin = context == "-" or dockerfile == "-"
    result = build_image(
        obj.api(),
        context,
        dockerfile=dockerfile_arg,
        stdin=sys.stdin.buffer if uses_stdin else None,
        tags=tags,
        build_args=args,
        target=target,
        no_cache=no_cache,
        network="none" if network == "none" else "host",
        secrets=dict(parse_secret(s) for s in secrets),
        ssh=dict(parse_ssh(s) for s in ssh),
        allow=_entitlements(allow),
        explain=explain,
        on_event=None if quiet else _Progress(progress, explain, sys.stdout.isatty()),
        labels=parse_labels(labels),
        platform=platform,
        outputs=outputs,
        iidfile=iidfile,
        cache_to=cache_to,
        cache_from=cache_from,
    )
    click.echo(result.image.id)


def _dockerfile_arg(dockerfile: str | None, context: str) -> str | None:
    """Docker's rule for `-f` with a context directory: a relative path is relative to the
    current directory (lamina falls back to the context when it is not found there);
    with an archive it is a path inside the archive."""
    if dockerfile is None or dockerfile == "-" or context == "-" or not Path(context).is_dir():
        return dockerfile
    here = Path(dockerfile)
    if not here.is_absolute() and here.exists():
        return str(here.absolute())
    return dockerfile


def _as_path(text: str | None) -> Path | None:
    return Path(text) if text is not None else None
