"""`pull`, `push`, `login`, `logout`: presentation of `Lamina.pull/push/login/logout`.

Progress: `--progress=plain` (default off a terminal) prints a line per blob as Docker
does; `tty` (default on a terminal) a rich display per blob and in total; `json` one
JSON object per event, for CI logs. `-q` prints only the result.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from lamina.cli._commands import (
    _api,
    max_layer_ratio_option,
    max_layer_size_option,
    set_layer_limits,
)
from lamina.cli._format import human_size
from lamina.cli._main import cli
from lamina.oci import short_id

if TYPE_CHECKING:
    from lamina.api import Lamina

_PULL_WORDS = {"present": "Already exists", "downloaded": "Pull complete"}
_PUSH_WORDS = {
    "known": "Layer already exists",
    "existed": "Layer already exists",
    "mounted": "Mounted",
    "uploaded": "Pushed",
    "resumed": "Resuming upload",
}

Events = Callable[[str, str, int], None]


def _mode(progress: str, quiet: bool) -> str:
    if quiet:
        return "quiet"
    if progress == "auto":
        return "tty" if sys.stderr.isatty() else "plain"
    return progress


@contextmanager
def _progress(mode: str, words: dict[str, str]) -> Iterator[Events]:
    lock = threading.Lock()
    if mode == "quiet":
        yield lambda event, digest, n: None
        return
    if mode == "json":

        def emit_json(event: str, digest: str, n: int) -> None:
            line = json.dumps({"time": round(time.time(), 3), "event": event, "digest": digest,
                               "bytes": n})  # fmt: skip
            with lock:
                click.echo(line)

        yield emit_json
        return
    if mode == "plain":

        def emit_plain(event: str, digest: str, n: int) -> None:
            if event in words:
                with lock:
                    click.echo(f"{short_id(digest)[:12]}: {words[event]}", err=True)

        yield emit_plain
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskID,
        TextColumn,
        TransferSpeedColumn,
    )

    bars = Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        transient=False,
    )  # fmt: skip
    tasks: dict[str, TaskID] = {}
    total = bars.add_task("total", total=None)

    def emit_tty(event: str, digest: str, n: int) -> None:
        with lock:
            name = short_id(digest)[:12]
            if digest not in tasks:
                tasks[digest] = bars.add_task(name, total=None)
            task = tasks[digest]
            if event in ("downloading", "uploading"):
                bars.advance(task, n)
                bars.advance(total, n)
            elif event in words:
                bars.update(task, description=f"{name} {words[event]}")

    with bars:
        yield emit_tty


_progress_option = click.option(
    "--progress",
    type=click.Choice(["auto", "plain", "tty", "json"]),
    default="auto",
    show_default=True,
)
_jobs_option = click.option(
    "--jobs", type=click.IntRange(1, 32), default=4, show_default=True,
    help="Blobs transferred at once.",
)  # fmt: skip
_tls_option = click.option(
    "--tls-verify/--no-tls-verify", "tls_verify", default=True,
    help="--tls-verify=false: allow plain HTTP and unchecked certificates for this registry.",
)  # fmt: skip


@cli.command()
@click.option("-a", "--all-tags", is_flag=True, help="Pull every tag the repository has.")
@click.option("--platform", help="OS/ARCH[/VARIANT] to pick from an index (default: this one).")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image reference.")
@_progress_option
@_jobs_option
@_tls_option
@click.option(
    "--keep-blobs/--no-keep-blobs",
    default=None,
    help="Also keep compressed layers as they arrived (default no, or LAMINA_KEEP_BLOBS=1).",
)
@max_layer_size_option
@max_layer_ratio_option
@click.argument("reference")
@click.pass_context
def pull(
    ctx: click.Context,
    all_tags: bool,
    platform: str | None,
    quiet: bool,
    progress: str,
    jobs: int,
    tls_verify: bool,
    keep_blobs: bool | None,
    max_layer_size: str | None,
    max_layer_ratio: float | None,
    reference: str,
) -> None:
    """Pull an image from a registry; only layers the store lacks are downloaded, each
    unpacked into its snapshot as it arrives."""
    api = _api(ctx)
    set_layer_limits(api, max_layer_size, max_layer_ratio)
    options = {"platform": platform, "jobs": jobs, "tls_verify": tls_verify,
               "keep_blobs": keep_blobs}  # fmt: skip
    refs = api.remote_tags(reference, tls_verify=tls_verify) if all_tags else [reference]
    for ref in refs:
        if all_tags and not quiet:  # docker pull -a: a header per tag
            click.echo(f"{ref.rsplit(':', 1)[1]}: Pulling from {reference}")
        _pull_one(api, ref, quiet, _mode(progress, quiet), options)


def _pull_one(api: Lamina, ref: str, quiet: bool, mode: str, opts: dict[str, Any]) -> None:
    with _progress(mode, _PULL_WORDS) as events:
        result = api.pull(ref, events=events, **opts)
    for warning in result.warnings:
        click.echo(f"WARNING: {warning}", err=True)
    if quiet:
        click.echo(result.reference)
        return
    click.echo(f"Digest: {result.digest}")
    click.echo(
        f"Downloaded {result.layers_downloaded} layers ({human_size(result.bytes_downloaded)}),"
        f" {result.layers_present} already present"
    )
    click.echo(result.reference)


@cli.command()
@click.option("-a", "--all-tags", is_flag=True, help="Push every local tag of REPOSITORY.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the pushed digest.")
@_progress_option
@_jobs_option
@_tls_option
@click.argument("image")
@click.argument("reference", required=False)
@click.pass_context
def push(
    ctx: click.Context,
    all_tags: bool,
    quiet: bool,
    progress: str,
    jobs: int,
    tls_verify: bool,
    image: str,
    reference: str | None,
) -> None:
    """Push an image to a registry (as REFERENCE, default its own name); with -a, every
    local tag of the repository IMAGE."""
    if all_tags and reference is not None:
        raise click.UsageError("--all-tags takes one argument: the repository")
    images = _api(ctx).local_tags(image) if all_tags else [image]
    mode = _mode(progress, quiet)
    if mode in ("plain", "tty"):
        from lamina.oci import parse_reference

        target = parse_reference(reference or image)
        click.echo(f"The push refers to repository [{target.domain}/{target.path}]")
    for one in images:
        _push_one(ctx, one, reference, mode, quiet, jobs, tls_verify)


def _push_one(
    ctx: click.Context,
    image: str,
    reference: str | None,
    mode: str,
    quiet: bool,
    jobs: int,
    tls_verify: bool,
) -> None:
    api = _api(ctx)
    with _progress(mode, _PUSH_WORDS) as events:
        result = api.push(image, reference, jobs=jobs, tls_verify=tls_verify, events=events)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    if quiet:
        click.echo(result.digest)
        return
    click.echo(
        f"Pushed {result.uploaded} blobs ({human_size(result.bytes_sent)}), mounted"
        f" {result.mounted}, {result.existed} already there"
    )
    # docker push's last line: the tag (or, pushed by digest, the reference), the
    # manifest's digest and its size in bytes.
    click.echo(f"{result.tag or result.reference}: digest: {result.digest} size: {result.size}")


@cli.command()
@click.option("-u", "--username", help="User name.")
@click.option("-p", "--password", help="Password (prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@_tls_option
@click.argument("registry")
@click.pass_context
def login(
    ctx: click.Context,
    username: str | None,
    password: str | None,
    password_stdin: bool,
    tls_verify: bool,
    registry: str,
) -> None:
    """Log in to a registry; the credentials go to Docker's config.json (mode 0600)."""
    from lamina.errors import InvalidInputError
    from lamina.transport import registry_host

    registry = registry_host(registry)
    if password:
        # docker/cli's own warning, word for word; the value itself is never echoed.
        click.echo("WARNING! Using --password via the CLI is insecure. Use --password-stdin.",
                   err=True)  # fmt: skip
    if password_stdin:
        if password:
            raise click.UsageError("--password and --password-stdin are exclusive")
        if not username:
            raise InvalidInputError("Must provide --username with --password-stdin")
        # All of stdin, less one trailing newline (and carriage return), as docker/cli.
        password = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    if not username and not password and _login_with_saved(ctx, registry, tls_verify):
        return
    if (not username or not password) and not sys.stdin.isatty():
        raise InvalidInputError(
            "Cannot perform an interactive login from a non TTY device",
            hint="give -u USER and the password on stdin with --password-stdin",
        )
    if not username:
        username = click.prompt("Username")
    if not password:
        password = click.prompt("Password", hide_input=True)
    _api(ctx).login(registry, username or "", password or "", tls_verify=tls_verify)
    click.echo("Login Succeeded")


def _login_with_saved(ctx: click.Context, registry: str, tls_verify: bool) -> bool:
    """docker login without -u or a password first tries the credentials already saved
    for the registry; if they fail it says so and goes on to ask for new ones."""
    from lamina.errors import LaminaError

    saved = _api(ctx).saved_login(registry)
    if saved is None:
        return False
    click.echo("Authenticating with existing credentials...")
    try:
        _api(ctx).login(registry, *saved, tls_verify=tls_verify)
    except LaminaError as exc:  # its message names the registry, never the secret
        click.echo(f"Login did not succeed, error: {exc}", err=True)
        return False
    click.echo("Login Succeeded")
    return True


@cli.command()
@click.argument("registry")
@click.pass_context
def logout(ctx: click.Context, registry: str) -> None:
    """Forget a registry's credentials."""
    from lamina.transport import registry_host

    registry = registry_host(registry)
    if _api(ctx).logout(registry):
        click.echo(f"Removing login credentials for {registry}")
    else:
        click.echo(f"Not logged in to {registry}")
