"""Container commands: run, ps, logs, stop, kill, start, restart, rm, wait, exec, diff, commit,
container prune. Arguments and presentation only; `Lamina.containers` does the work."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import click

from lamina.cli._format import (
    created_since,
    go_time,
    human_size,
    rfc3339_nano,
    truncate,
)
from lamina.cli._launch import RUN_OPTIONS, check_tty, fail, reporting, run_container
from lamina.cli._main import _Context, cli
from lamina.errors import LaminaError

if TYPE_CHECKING:
    from lamina.api import ContainerInfo, Lamina

_NO_SHORT_HELP = {"help_option_names": ["--help"]}  # -h is --hostname, as in Docker


def _api(ctx: click.Context) -> Lamina:
    obj: _Context = ctx.find_root().obj
    return obj.api()


# -- run -------------------------------------------------------------------------------


def _run_options(
    command: Callable[..., None], without: tuple[str, ...] = ()
) -> Callable[..., None]:
    """The click options of `run` (but those named in `without`), made from the table the
    lean entry point parses by."""
    for flags, dest, kind, help_text in reversed(RUN_OPTIONS):
        if dest in without:
            continue
        if kind == "flag":
            command = click.option(*flags, dest, is_flag=True, help=help_text)(command)
        elif kind in ("multi", "path"):
            path = click.Path(path_type=Path) if kind == "path" else None
            command = click.option(*flags, dest, multiple=True, type=path,
                                   help=help_text)(command)  # fmt: skip
        elif kind == "int":
            command = click.option(*flags, dest, type=int, help=help_text)(command)
        elif isinstance(kind, tuple):
            command = click.option(*flags, dest, type=click.Choice(list(kind)),
                                   help=help_text)(command)  # fmt: skip
        else:
            command = click.option(*flags, dest, help=help_text)(command)
    return command


class _RunCommand(click.Command):
    """`run`, whose flag errors exit 125 as docker-cli's FlagErrorFunc makes them: a status
    the container's command could not have returned."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.MissingParameter:
            raise  # an argument missing is a usage error (2) like any command's
        except (click.NoSuchOption, click.BadOptionUsage, click.BadParameter) as e:
            raise _FlagError(e.format_message(), e.ctx) from None


class _FlagError(click.UsageError):
    exit_code = 125


@cli.command(cls=_RunCommand,
             context_settings={**_NO_SHORT_HELP, "allow_interspersed_args": False})  # fmt: skip
@_run_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx: click.Context, /, **params: Any) -> None:
    """Run a command in a new container (exit status: the command's; 125 lamina failed,
    126 the command cannot be invoked, 127 not found)."""
    run_container(ctx.find_root().obj, params)


@cli.command(cls=_RunCommand,
             context_settings={**_NO_SHORT_HELP, "allow_interspersed_args": False})  # fmt: skip
@lambda command: _run_options(command, without=("detach",))
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def create(ctx: click.Context, /, **params: Any) -> None:
    """Create a container to start later; print its ID (as `run`, without starting it)."""
    from lamina.cli._launch import run_options

    opts = run_options(params)
    click.echo(reporting(lambda: _api(ctx).containers.create_container(opts), 125))


@cli.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers, not only running.")
@click.option("-q", "--quiet", is_flag=True, help="Only IDs.")
@click.option("-s", "--size", is_flag=True, help="Show the read-write layer's size.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate.")
@click.option("--format", "fmt", help="Go-template subset, e.g. '{{.ID}} {{.Status}}'.")
@click.option("-n", "--last", type=int, default=-1, help="The n last created (all states).")
@click.option("-l", "--latest", is_flag=True, help="The latest created (all states).")
@click.option("-f", "--filter", "filters", multiple=True,
              help="KEY=VALUE: id, name, label, status, exited, ancestor, before, since, "
              "volume, network.")  # fmt: skip
@click.pass_context
def ps(ctx: click.Context, all_: bool, quiet: bool, size: bool, no_trunc: bool,
       fmt: str | None, last: int, latest: bool, filters: tuple[str, ...]) -> None:  # fmt: skip
    """List containers."""
    from lamina.api import (
        describe_status,
        filter_containers,
        image_container_config,
        parse_container_filters,
    )

    chosen = parse_container_filters(filters)
    api = _api(ctx)
    if latest and last == -1:
        last = 1
    # docker-cli: a limit looks at containers in every state, newest first.
    infos = api.containers.list(all_ or last > 0 or chosen.needs_all)
    labels_of: dict[str, dict[str, str]] = {}
    if chosen.values:
        infos = filter_containers(api, infos, chosen, labels_of)
    if last > 0:
        infos = infos[:last]
    # docker-cli asks for sizes when the format shows them, -s or not.
    size = size or (fmt is not None and ".Size" in fmt)
    want_labels = fmt is not None and ("Labels" in fmt or "json" in fmt)
    if quiet:
        for c in infos:
            click.echo(c.id if no_trunc else c.id[:12])
        return
    rows = []
    image_sizes: dict[str, int] = {}
    for c in infos:
        command = " ".join(c.command)
        if want_labels and c.image_id not in labels_of:
            labels_of[c.image_id] = image_container_config(api, c.id).get("Labels") or {}
        labels = sorted(labels_of.get(c.image_id, {}).items())
        mounts = [src if no_trunc else truncate(src, 15) for src, _, _ in c.spec["volumes"]]
        row = {
            "ID": c.id if no_trunc else c.id[:12],
            "Image": c.image_ref,
            "Command": json.dumps(
                command if no_trunc else truncate(command, 20), ensure_ascii=False
            ),
            "CreatedAt": go_time(datetime.fromtimestamp(int(c.created), UTC), "go"),
            "RunningFor": created_since(rfc3339_nano(c.created)),
            "Status": describe_status(c),
            "State": c.status,
            "Names": c.name,
            "Ports": "",
            "Size": _size(api, c.id, c.image_id, image_sizes) if size else "0B",
            "Labels": ",".join(f"{k}={v}" for k, v in labels),
            "Mounts": ",".join(mounts),
            "Networks": c.spec["network"],
            "LocalVolumes": "0",  # bind mounts only: no volume of the local driver
        }
        rows.append(dict(sorted(row.items())))  # `{{json .}}`: a Go map, keys in order
    default = PS_TABLE + ("\\t{{.Size}}" if size else "")
    from lamina.cli._template import format_rows

    click.echo(format_rows(fmt or "table", rows, PS_HEADERS, default), nl=False)


def _size(api: Lamina, cid: str, image_id: str, image_sizes: dict[str, int]) -> str:
    """docker-cli's SIZE: the read-write layer's bytes and, in brackets, the virtual size
    (the image's layers and that layer)."""
    if image_id not in image_sizes:
        image_sizes[image_id] = api.container_image_size(cid)
    rw = api.containers.rw_size(cid)
    return f"{human_size(rw)} (virtual {human_size(image_sizes[image_id] + rw)})"


PS_HEADERS = {
    "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED", "Status": "STATUS", "State": "STATE", "Names": "NAMES",
    "Ports": "PORTS", "Size": "SIZE", "Labels": "LABELS", "Mounts": "MOUNTS",
    "Networks": "NETWORKS", "LocalVolumes": "LOCAL VOLUMES",
}  # fmt: skip
PS_TABLE = (
    "table {{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.RunningFor}}\\t{{.Status}}\\t{{.Ports}}"
    "\\t{{.Names}}"
)


@cli.command()
@click.option("-f", "--follow", is_flag=True, help="Follow the output.")
@click.option("-n", "--tail", default="all", help="Lines from the end (default all).")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps.")
@click.option("--since", help="Lines since a time (2013-01-02T13:23:37Z) or ago (42m).")
@click.option("--until", help="Lines before a time (2013-01-02T13:23:37Z) or ago (42m).")
@click.option("--details", is_flag=True, help="Extra attributes (lamina's logs have none).")
@click.argument("container")
@click.pass_context
def logs(ctx: click.Context, follow: bool, tail: str, timestamps: bool, since: str | None,
         until: str | None, details: bool, container: str) -> None:  # fmt: skip
    """Show a container's output (stdout to stdout, stderr to stderr)."""
    import time

    digits = tail[1:] if tail[:1] in "+-" else tail
    if tail != "all" and not (digits.isascii() and digits.isdigit()):
        raise click.UsageError(f"--tail {tail!r}: a number or 'all'")
    count = None if tail == "all" or int(tail) < 0 else int(tail)  # negative: all, as moby
    now = time.time_ns()
    from lamina.api import docker_timestamp_ns

    low = docker_timestamp_ns(since, now) if since else None
    high = docker_timestamp_ns(until, now) if until else None
    out = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    lines = _api(ctx).containers.logs(container, follow=follow, tail=count, since=low, until=high)
    for line in lines:
        stream = out.get(line.stream, sys.stdout.buffer)
        if timestamps:
            stream.write(line.time.encode() + b" ")
        stream.write(line.data)
        stream.flush()


def _each(ctx: click.Context, refs: tuple[str, ...], action: Any, parallel: bool = False,
          summary: str | None = None) -> None:  # fmt: skip
    """`action(containers, ref)` for each ref, in order: its result printed when there is
    one, one error line for each that fails, exit 1 if any did, after doing the rest.
    `parallel`: all at once (up to 50), as docker-cli's stop, kill and rm, still printed
    in the order given; each thread has its own connection to the store. `summary`: a
    last error line naming the refs that failed (docker-cli's start)."""
    api = _api(ctx)

    def attempt(containers: Any, ref: str) -> tuple[Any, LaminaError | None]:
        try:
            return action(containers, ref), None
        except LaminaError as e:
            return None, e

    def report(results: Iterable[tuple[Any, LaminaError | None]]) -> list[str]:
        failed = []
        for ref, (done, error) in zip(refs, results, strict=True):
            if error is not None:
                from lamina.cli._main import _print_error

                _print_error(error.message, error.hint)
                failed.append(ref)
            elif done:
                click.echo(done)
        return failed

    if parallel and len(refs) > 1:
        from concurrent.futures import ThreadPoolExecutor

        from lamina.api import Lamina

        def on_own_store(ref: str) -> tuple[Any, LaminaError | None]:
            own = Lamina(api.root)
            try:
                return attempt(own.containers, ref)
            finally:
                own.store.close()

        with ThreadPoolExecutor(max_workers=min(50, len(refs))) as pool:
            failed = report(pool.map(on_own_store, refs))
    else:
        failed = report(attempt(api.containers, ref) for ref in refs)
    if failed:
        if summary:
            from lamina.cli._main import _print_error

            _print_error(f"{summary}: {', '.join(failed)}", None)
        sys.exit(1)


@cli.command()
@click.option("-t", "--timeout", "--time", "timeout", type=int,
              help="Seconds to wait before SIGKILL.")  # fmt: skip
@click.option("-s", "--signal", "sig", help="Signal to send (default: the container's).")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def stop(ctx: click.Context, timeout: int | None, sig: str | None,
         containers: tuple[str, ...]) -> None:  # fmt: skip
    """Stop running containers: the stop signal, then SIGKILL after the timeout."""
    _each(ctx, containers, lambda api, ref: api.stop(ref, timeout, sig), parallel=True)


@cli.command()
@click.option("-s", "--signal", "sig", default="KILL", show_default=True, help="Signal.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def kill(ctx: click.Context, sig: str, containers: tuple[str, ...]) -> None:
    """Send a signal to running containers."""
    _each(ctx, containers, lambda api, ref: api.kill(ref, sig), parallel=True)


@cli.command()
@click.option("-a", "--attach", is_flag=True, help="Attach stdout/stderr; exit with its code.")
@click.option("-i", "--interactive", is_flag=True, help="Attach stdin.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def start(ctx: click.Context, attach: bool, interactive: bool,
          containers: tuple[str, ...]) -> None:  # fmt: skip
    """Start stopped containers."""
    from lamina.api import Attach, ContainerExit

    api = _api(ctx).containers
    if attach or interactive:
        if len(containers) != 1:
            raise click.UsageError("you cannot start and attach multiple containers at once")
        try:
            record, started = api.start(containers[0], Attach(0 if interactive else None, 1, 2))
        except ContainerExit as e:
            fail(e, 1)  # docker-cli's start returns the error: 1, not run's 125/126/127
            return
        if started is None:
            return
        _, code, _ = started.wait_exit()
        started.close()
        sys.exit(code if code is not None else api.wait(record.id))

    def one(api: Any, ref: str) -> str:
        _, started = api.start(ref)
        if started is not None:
            started.close()
        return ref

    _each(ctx, containers, one, summary="failed to start containers")


@cli.command()
@click.option("-t", "--timeout", "--time", "timeout", type=int,
              help="Seconds to wait before SIGKILL.")  # fmt: skip
@click.option("-s", "--signal", "sig", help="Signal to send (default: the container's).")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def restart(ctx: click.Context, timeout: int | None, sig: str | None,
            containers: tuple[str, ...]) -> None:  # fmt: skip
    """Stop and start containers again (one after the other, as docker-cli)."""
    _each(ctx, containers, lambda api, ref: api.restart(ref, timeout, sig))


@cli.command()
@click.option("-f", "--force", is_flag=True, help="Kill a running container first.")
@click.option("-v", "--volumes", is_flag=True,
              help="Anonymous volumes too (lamina makes none: bind mounts are kept).")  # fmt: skip
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, force: bool, volumes: bool, containers: tuple[str, ...]) -> None:
    """Remove containers: their read-write layer, directory and record."""
    _each(ctx, containers, lambda api, ref: api.remove(ref, force), parallel=True)


@cli.command()
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def wait(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Wait for containers to exit; print their exit codes."""
    _each(ctx, containers, lambda api, ref: str(api.wait(ref)))


@cli.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-i", "--interactive", is_flag=True, help="Pass stdin on.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-terminal.")
@click.option("-u", "--user", help="USER[:GROUP].")
@click.option("-e", "--env", multiple=True, help="Set K=V.")
@click.option("--env-file", "env_files", multiple=True, help="Read K=V lines from a file.")
@click.option("-w", "--workdir", help="Working directory.")
@click.option("-d", "--detach", is_flag=True, help="Run in the background.")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_(ctx: click.Context, interactive: bool, tty: bool, user: str | None,
          env: tuple[str, ...], env_files: tuple[str, ...], workdir: str | None, detach: bool,
          container: str, command: tuple[str, ...]) -> None:  # fmt: skip
    """Run a command in a running container; exit with its status."""
    check_tty(interactive, tty, detach)
    code = reporting(lambda: _api(ctx).containers.exec(
        container, command, interactive=interactive, tty=tty, user=user, env=env,
        workdir=workdir, detach=detach, env_files=env_files), 1)  # fmt: skip
    sys.exit(code)


@cli.command()
@click.argument("container")
@click.pass_context
def diff(ctx: click.Context, container: str) -> None:
    """What the container changed: A added, C changed, D deleted."""
    for kind, path in _api(ctx).containers.diff(container):
        click.echo(f"{kind} {path}")


_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")


class _GoBoolCommand(click.Command):
    """A command whose on/off flags also take Go's `--flag=false` (pflag's booleans; as
    strconv.ParseBool reads the value): `--pause=false` is `--no-pause`."""

    go_bools: ClassVar[Mapping[str, tuple[str, str]]] = {
        "-p": ("--pause", "--no-pause"),
        "--pause": ("--pause", "--no-pause"),
    }

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        out: list[str] = []
        for i, arg in enumerate(args):
            if arg == "--":
                out += args[i:]
                break
            name, eq, value = arg.partition("=")
            if eq and name in self.go_bools:
                on, off = self.go_bools[name]
                if value not in _GO_TRUE + _GO_FALSE:
                    raise click.BadParameter(
                        f"invalid argument {value!r} for {on}: not true or false", ctx
                    )
                arg = on if value in _GO_TRUE else off
            out.append(arg)
        return super().parse_args(ctx, out)


@cli.command(cls=_GoBoolCommand)
@click.option("-m", "--message", default="", help="Commit message (history comment).")
@click.option("-a", "--author", default="", help="Author.")
@click.option("-c", "--change", "changes", multiple=True, help="Dockerfile instruction.")
@click.option("-p/--no-pause", "--pause", "pause", default=True, help="Pause while committing.")
@click.argument("container")
@click.argument("reference", required=False)
@click.pass_context
def commit(ctx: click.Context, message: str, author: str, changes: tuple[str, ...], pause: bool,
           container: str, reference: str | None) -> None:  # fmt: skip
    """Make an image of a container's changes; print its ID."""
    click.echo(_api(ctx).containers.commit(container, reference, message=message, author=author,
                                           changes=changes, pause=pause))  # fmt: skip


@cli.command(context_settings={"allow_interspersed_args": False,
                               "ignore_unknown_options": True})  # fmt: skip
@click.argument("container")
@click.argument("ps_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def top(ctx: click.Context, container: str, ps_args: tuple[str, ...]) -> None:
    """Show a container's processes (`ps` options after the container; default -ef)."""
    click.echo(_api(ctx).containers.top(container, ps_args), nl=False)


@cli.command()
@click.argument("container")
@click.argument("new_name")
@click.pass_context
def rename(ctx: click.Context, container: str, new_name: str) -> None:
    """Rename a container."""
    try:
        _api(ctx).containers.rename(container, new_name)
    except LaminaError as e:  # docker-cli's: the reason, then its own line
        from lamina.cli._main import _print_error

        _print_error(e.message, None)
        raise LaminaError(f"failed to rename container named {container}") from None


@cli.group("container")
def container_group() -> None:
    """Manage containers."""


@container_group.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not prompt (lamina never prompts).")
@click.option("--filter", "filters", multiple=True,
              help="until=TIME (created before), label=K[=V], label!=K[=V].")  # fmt: skip
@click.pass_context
def container_prune(ctx: click.Context, force: bool, filters: tuple[str, ...]) -> None:
    """Remove all stopped containers (those the filters take)."""
    import time

    from lamina.api import prune_selector

    api = _api(ctx)
    select = prune_selector(api, filters, time.time_ns())
    gone = api.containers.prune(select)
    if gone:
        click.echo("Deleted Containers:")
        for cid, _ in gone:
            click.echo(cid)
        click.echo()
    click.echo(f"Total reclaimed space: {human_size(sum(n for _, n in gone), 4)}")


def _moby_time(stamp: float | None, status: str) -> str:
    """A State time as moby prints it: Go's zero time when it was never reached (a
    container whose process could not start has neither started nor finished)."""
    if stamp is None or status == "created":
        return "0001-01-01T00:00:00Z"
    return rfc3339_nano(stamp)


def container_inspect(api: Lamina, info: ContainerInfo, size: bool = False) -> dict[str, Any]:
    """`docker container inspect`'s document, for the fields lamina has; `size` adds
    SizeRw and SizeRootFs, as `docker inspect -s`."""
    spec = info.spec
    d = api.root / "containers" / info.id
    from lamina.api import image_container_config

    image_config = image_container_config(api, info.id)
    config: dict[str, Any] = {
        "Hostname": spec["hostname"],
        "User": spec["user"],
        "Env": spec["env"],
        "Cmd": spec["cmd"],
        "Entrypoint": spec["entrypoint"] or None,
        "WorkingDir": spec["workdir"],
        "Image": spec["image_ref"],
        "Tty": spec["tty"],
        "OpenStdin": spec["interactive"],
        "StopSignal": spec["stop_signal"],
        "StopTimeout": spec["stop_timeout"],
        # moby merges these from the image into the container's config: Labels is a map
        # even when empty, Volumes null, ExposedPorts left out when there are none.
        "Labels": dict(image_config.get("Labels") or {}),
        "Volumes": image_config.get("Volumes") or None,
    }
    if image_config.get("ExposedPorts"):
        config["ExposedPorts"] = image_config["ExposedPorts"]
    doc: dict[str, Any] = {
        "Id": info.id,
        "Created": rfc3339_nano(info.created),
        "Path": info.command[0] if info.command else "",
        "Args": info.command[1:],
        "State": {
            "Status": info.status,
            "Running": info.status == "running",
            "Paused": False,
            "Restarting": False,
            "OOMKilled": False,
            "Dead": False,
            "Pid": info.pid or 0,
            "ExitCode": info.exit_code or 0,
            "Error": info.error or "",
            "StartedAt": _moby_time(info.started_at, info.status),
            "FinishedAt": _moby_time(info.finished_at, info.status),
        },
        "Image": info.image_id,
        "Name": "/" + info.name,
        "Config": config,
        "HostConfig": {
            "Binds": [f"{s}:{t}{':ro' if ro else ''}" for s, t, ro in spec["volumes"]],
            "NetworkMode": spec["network"],
            "ReadonlyRootfs": spec["read_only"],
            "AutoRemove": spec["autoremove"],
            "Init": spec["init"],
        },
        "GraphDriver": {
            "Name": "overlay",
            "Data": {
                "UpperDir": str(d / "upper"),
                "WorkDir": str(d / "work"),
                "MergedDir": str(d / "rootfs"),
            },
        },
        "Mounts": [
            {"Type": "bind", "Source": s, "Destination": t, "RW": not ro}
            for s, t, ro in spec["volumes"]
        ],
    }
    if size:
        rw = api.containers.rw_size(info.id)
        doc["SizeRw"] = rw
        doc["SizeRootFs"] = api.container_image_size(info.id) + rw
    return doc


def inspect_document(
    api: Lamina, ref: str, kind: str | None = None, size: bool = False
) -> dict[str, Any]:
    """A container's document when `ref` names one, else the image's (as `docker inspect`);
    `kind` ("container", "image") looks only there; `size`: a container's sizes too."""
    from lamina.errors import NotFoundError

    if kind == "image":
        return api.inspect(ref)
    try:
        info = api.containers.info(ref)
    except NotFoundError:
        if kind == "container":
            raise
        try:
            return api.inspect(ref)
        except NotFoundError:
            raise NotFoundError(f"No such object: {ref}",
                                hint="`lamina ps -a` and `lamina images` list them") from None
    return container_inspect(api, info, size)
