"""`images`, `history`, `inspect`, `df`, `rmi`: Docker's fields, `--format` and messages.

Each listing turns what `lamina.api` returns into rows keyed by Docker's field names
(docker/cli's formatter: `{{.Repository}}`, `{{.ID}}`, `{{.CreatedSince}}`, …) and
prints them through `_template.format_rows`, so the default table, `table …`, `json`
and custom templates all share one path.
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import TYPE_CHECKING, Any

import click

from lamina.cli._format import created_since, go_time, human_size, parse_timestamp, truncate
from lamina.cli._main import _Context, _print_error, cli
from lamina.cli._template import format_rows, render, tabwrite
from lamina.errors import LaminaError
from lamina.oci import short_id

if TYPE_CHECKING:
    from lamina.api import HistoryRow, ImageSummary, Lamina

IMAGE_HEADERS = {
    "Containers": "CONTAINERS",
    "CreatedAt": "CREATED AT",
    "CreatedSince": "CREATED",
    "Digest": "DIGEST",
    "ID": "IMAGE ID",
    "Repository": "REPOSITORY",
    "SharedSize": "SHARED SIZE",
    "Size": "SIZE",
    "Tag": "TAG",
    "UniqueSize": "UNIQUE SIZE",
    "VirtualSize": "SIZE",
}
IMAGES_TABLE = (
    "table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}\\t"
    "{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}\\t{{.Size}}"
)
IMAGES_TABLE_DIGESTS = (
    "table {{.Repository}}\\t{{.Tag}}\\t{{.Digest}}\\t{{.ID}}\\t"
    "{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}\\t{{.Size}}"
)
HISTORY_HEADERS = {
    "Comment": "COMMENT",
    "CreatedAt": "CREATED AT",
    "CreatedBy": "CREATED BY",
    "CreatedSince": "CREATED",
    "ID": "IMAGE",
    "Size": "SIZE",
}
HISTORY_TABLE = "table {{.ID}}\\t{{.CreatedSince}}\\t{{.CreatedBy}}\\t{{.Size}}\\t{{.Comment}}"
HISTORY_TABLE_RAW = "table {{.ID}}\\t{{.CreatedAt}}\\t{{.CreatedBy}}\\t{{.Size}}\\t{{.Comment}}"
DF_HEADERS = {
    "Active": "ACTIVE",
    "Reclaimable": "RECLAIMABLE",
    "Size": "SIZE",
    "TotalCount": "TOTAL",
    "Type": "TYPE",
}
DF_TABLE = "table {{.Type}}\\t{{.TotalCount}}\\t{{.Active}}\\t{{.Size}}\\t{{.Reclaimable}}"


def _api(ctx: click.Context) -> Lamina:
    obj: _Context = ctx.find_root().obj
    return obj.api()


def _report(ctx: click.Context, error: LaminaError) -> None:
    """One error among several (one per name): printed, and the command goes on."""
    obj: _Context = ctx.find_root().obj
    if obj.debug:
        traceback.print_exception(error)
    _print_error(error.message, error.hint)


def _out(text: str) -> None:
    click.echo(text, nl=False)


# -- images -------------------------------------------------------------------------------


def image_names(
    image: ImageSummary, *, digests: bool, need_digest: bool
) -> list[tuple[str, str, str]]:
    """docker/cli's rows of one image, (repository, tag, digest): a dangling image is one
    `<none>` row; each tag is a row, once per repo digest of its repository when
    `need_digest` (`--digests` or `{{.Digest}}` in the format), else with digest
    `<none>`; a repository with digests but no tag is a `<none>` tag row, one per digest
    under `--digests`, else one with an empty digest."""
    if image.dangling:
        return [("<none>", "<none>", "<none>")]
    tags: dict[str, list[str]] = {}
    for repository, tag in image.repo_tags:
        tags.setdefault(repository, []).append(tag)
    by_repository: dict[str, list[str]] = {}
    for repository, digest in image.repo_digests:
        by_repository.setdefault(repository, []).append(digest)
    rows = []
    for repository in sorted(tags):
        shown = by_repository.pop(repository, []) if need_digest else []
        by_repository.pop(repository, None)  # digests are never rows of their own here
        for tag in tags[repository]:
            rows += [(repository, tag, d) for d in shown] or [(repository, tag, "<none>")]
    for repository in sorted(by_repository):
        if digests:
            rows += [(repository, "<none>", d) for d in by_repository[repository]]
        else:
            rows.append((repository, "<none>", ""))
    return rows


def image_rows(
    images: list[ImageSummary], *, trunc: bool, digests: bool = False, need_digest: bool = False
) -> list[dict[str, str]]:
    """One row per name (`image_names`), Docker's fields, keys sorted as `{{json .}}`
    shows them."""
    rows = []
    for image in images:
        created = parse_timestamp(image.created)
        size = human_size(image.content_size)
        for repository, tag, digest in image_names(
            image, digests=digests, need_digest=need_digest or digests
        ):
            rows.append(
                {
                    "Containers": "N/A",
                    "CreatedAt": go_time(created, "go"),
                    "CreatedSince": created_since(image.created) if created else "",
                    "Digest": digest,
                    "ID": short_id(image.id) if trunc else image.id,
                    "Repository": repository,
                    "SharedSize": "N/A",
                    "Size": size,
                    "Tag": tag,
                    "UniqueSize": "N/A",
                    "VirtualSize": size,
                }
            )
    return rows


@cli.command()
@click.option("-a", "--all", "all_images", is_flag=True, help="Show intermediate images too.")
@click.option("-q", "--quiet", is_flag=True, help="Only IDs.")
@click.option("--no-trunc", is_flag=True, help="Full IDs.")
@click.option("--digests", is_flag=True, help="Show manifest digests.")
@click.option(
    "-f",
    "--filter",
    "filters",
    multiple=True,
    metavar="K=V",
    help="dangling=true|false, reference=PATTERN, label=K[=V], before=IMAGE, since=IMAGE.",
)
@click.option("--format", "fmt", help="table, json, or a Go template ({{.Repository}}, …).")
@click.argument("repository", required=False)
@click.pass_context
def images(
    ctx: click.Context,
    all_images: bool,
    quiet: bool,
    no_trunc: bool,
    digests: bool,
    filters: tuple[str, ...],
    fmt: str | None,
    repository: str | None,
) -> None:
    """List images, like `docker images`."""
    wanted = [*filters, *([f"reference={repository}"] if repository else [])]
    listed = _api(ctx).images(filters=wanted, all_images=all_images)
    fmt = fmt or "table"
    rows = image_rows(listed, trunc=not no_trunc, digests=digests, need_digest="{{.Digest}}" in fmt)
    if quiet and fmt == "table":
        # docker/cli's quiet format, "{{.ID}}" for each row: an ID once per name it has.
        _out("".join(row["ID"] + "\n" for row in rows))
        return
    if fmt == "table":
        fmt = IMAGES_TABLE_DIGESTS if digests else IMAGES_TABLE
    elif digests and fmt.startswith("table") and "{{.Digest}}" not in fmt:
        fmt += "\\t{{.Digest}}"
    _out(format_rows(fmt, rows, IMAGE_HEADERS, IMAGES_TABLE))


# -- history ------------------------------------------------------------------------------


def history_rows(rows: list[HistoryRow], *, trunc: bool, human: bool) -> list[dict[str, str]]:
    """Docker's history fields per step, newest first."""
    out = []
    for row in rows:
        moment = parse_timestamp(row.created)
        created_at = go_time(moment, "rfc3339")
        created_by = row.created_by.replace("\t", " ")
        out.append(
            {
                "Comment": row.comment,
                "CreatedAt": created_at,
                "CreatedBy": truncate(created_by, 45) if trunc else created_by,
                "CreatedSince": (created_since(row.created) if moment else "N/A")
                if human
                else created_at,
                "ID": short_id(row.id) if trunc and row.id.startswith("sha256:") else row.id,
                "Size": human_size(row.size) if human else str(row.size),
            }
        )
    return out


_PFLAG_TRUE = ("1", "t", "T", "true", "TRUE", "True")
_PFLAG_FALSE = ("0", "f", "F", "false", "FALSE", "False")


class _HumanFlagCommand(click.Command):
    """Takes pflag's `-H=false` / `--human=false` (how Docker's docs write it) for the
    boolean `--human/--no-human`, which click alone refuses."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        out: list[str] = []
        for i, arg in enumerate(args):
            if arg == "--":
                out.extend(args[i:])
                break
            name, eq, value = arg.partition("=")
            if eq and name in ("-H", "--human"):
                if value not in _PFLAG_TRUE + _PFLAG_FALSE:
                    raise click.UsageError(
                        f'invalid argument "{value}" for "-H, --human" flag: '
                        f'strconv.ParseBool: parsing "{value}": invalid syntax',
                        ctx,
                    )
                arg = "--human" if value in _PFLAG_TRUE else "--no-human"
            out.append(arg)
        return super().parse_args(ctx, out)


@cli.command(cls=_HumanFlagCommand)
@click.option("--no-trunc", is_flag=True, help="Do not truncate output.")
@click.option(
    "-H", "--human/--no-human", default=True, help="Human-readable sizes and dates (default)."
)
@click.option("-q", "--quiet", is_flag=True, help="Only IDs.")
@click.option("--format", "fmt", help="table, json, or a Go template ({{.CreatedBy}}, …).")
@click.argument("image")
@click.pass_context
def history(
    ctx: click.Context, no_trunc: bool, human: bool, quiet: bool, fmt: str | None, image: str
) -> None:
    """Show the history of an image, newest step first, like `docker image history`."""
    rows = history_rows(_api(ctx).history(image), trunc=not no_trunc, human=human)
    default = HISTORY_TABLE if human else HISTORY_TABLE_RAW
    if quiet and fmt in (None, "", "table"):
        fmt = "{{.ID}}"
    _out(format_rows(fmt or default, rows, HISTORY_HEADERS, default))


def _containers_row(api: Lamina) -> dict[str, str]:
    """`df`'s Containers line: how many, how many run, their read-write layers' bytes."""
    infos = api.containers.list(all_=True)
    sizes = {c.id: api.containers.rw_size(c.id) for c in infos}
    idle = sum(sizes[c.id] for c in infos if c.status != "running")
    return {
        "Active": str(sum(1 for c in infos if c.status == "running")),
        "Reclaimable": human_size(idle),
        "Size": human_size(sum(sizes.values())),
        "TotalCount": str(len(infos)),
        "Type": "Containers",
    }


# -- inspect ------------------------------------------------------------------------------


@cli.command()
@click.option(
    "-f", "--format", "fmt", help="A Go template over each image's JSON ({{.Config.Env}}, …)."
)
@click.option("--type", "kind", type=click.Choice(["container", "image"]),
              help="Only this kind of object.")  # fmt: skip
@click.option("-s", "--size", is_flag=True, help="A container's sizes (SizeRw, SizeRootFs).")
@click.argument("images", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, fmt: str | None, kind: str | None, size: bool,
            images: tuple[str, ...]) -> None:  # fmt: skip
    """Show containers' or images' details as JSON, like `docker inspect` (a container's
    name or ID first, then an image's); exit 1 if one is missing."""
    from lamina.cli._container_cmds import inspect_document

    api = _api(ctx)
    found: list[dict[str, Any]] = []
    failed: list[LaminaError] = []
    for ref in images:
        try:
            found.append(inspect_document(api, ref, kind, size))
        except LaminaError as exc:
            failed.append(exc)
    if fmt and fmt != "json":
        # Parsed before anything is printed: a malformed template prints nothing.
        text = "".join(render(fmt, doc, raw=True) + "\n" for doc in found)
        _out(text)
    else:
        click.echo(json.dumps(found, indent=4))
    for error in failed:
        _report(ctx, error)
    if failed:
        sys.exit(1)


# -- df -----------------------------------------------------------------------------------


@cli.command()
@click.option("-v", "--verbose", is_flag=True, help="Per image and per layer.")
@click.option("--format", "fmt", help="table, json, or a Go template ({{.Type}}, {{.Size}}, …).")
@click.pass_context
def df(ctx: click.Context, verbose: bool, fmt: str | None) -> None:
    """Show disk usage: images, layers, shared and unique bytes (`docker system df`)."""
    if verbose and fmt:
        raise click.UsageError("--format applies to the summary; use it without -v")
    usage = _api(ctx).df()
    if not verbose:
        rows = [
            {
                "Active": str(usage.active_images),
                "Reclaimable": human_size(usage.reclaimable_size),
                "Size": human_size(usage.blobs_size),
                "TotalCount": str(len(usage.images)),
                "Type": "Images",
            },
            {
                "Active": "",
                "Reclaimable": "",
                "Size": human_size(usage.snapshots_size),
                "TotalCount": "",
                "Type": "Snapshots",
            },
            {
                "Active": "",
                "Reclaimable": "",
                "Size": "",
                "TotalCount": str(usage.cache_records),
                "Type": "Build Cache",
            },
        ]
        rows.insert(1, _containers_row(_api(ctx)))  # Docker's order: Images, Containers, …
        _out(format_rows(fmt or "table", rows, DF_HEADERS, DF_TABLE))
        return
    from lamina.api import familiar

    click.echo("Images space usage:\n")
    image_lines = []
    for u in usage.images:
        names = [familiar(t) for t in u.image.tags] or [("<none>", "<none>")]
        for repository, tag_ in sorted(names):
            image_lines.append(
                f"{repository}\t{tag_}\t{short_id(u.image.id)}\t{human_size(u.size)}\t"
                f"{human_size(u.shared_size)}\t{human_size(u.unique_size)}\t{u.containers}"
            )
    head = "REPOSITORY\tTAG\tIMAGE ID\tSIZE\tSHARED SIZE\tUNIQUE SIZE\tCONTAINERS"
    _out(_tabbed([head, *image_lines]))
    click.echo("\nLayers space usage:\n")
    layer_lines = [
        f"{short_id(lu.layer.digest)}\t{short_id(lu.layer.diff_id)}\t"
        f"{human_size(lu.layer.size)}\t{lu.images}"
        for lu in usage.layers
    ]
    _out(_tabbed(["LAYER DIGEST\tDIFF ID\tSIZE\tIMAGES", *layer_lines]))
    click.echo(
        f"\nBlobs: {human_size(usage.blobs_size)}   Snapshots: {human_size(usage.snapshots_size)}"
        f"   Build cache records: {usage.cache_records}"
    )


def _tabbed(lines: list[str]) -> str:
    return tabwrite("\n".join(lines) + "\n")


# -- rmi ----------------------------------------------------------------------------------


@cli.command()
@click.option(
    "-f", "--force", is_flag=True, help="Remove the image even if several names point at it."
)
@click.argument("images", nargs=-1, required=True)
@click.pass_context
def rmi(ctx: click.Context, force: bool, images: tuple[str, ...]) -> None:
    """Remove images (their names; content goes at the next prune). Each name is tried;
    an error for one is reported and the rest go on; exit 1 if any failed, as Docker does."""
    api = _api(ctx)
    failed = False
    for ref in images:
        try:
            lines = api.rmi([ref], force=force)
        except LaminaError as exc:
            _report(ctx, exc)
            failed = True
            continue
        for line in lines:
            click.echo(line)
    if failed:
        sys.exit(1)


# -- image: docker's `image` management command -------------------------------------------


@cli.group("image")
def image_group() -> None:
    """Manage images (`docker image ls|inspect|tag|history|rm|prune`)."""


@image_group.command("inspect")
@click.option("-f", "--format", "fmt", help="A Go template over each image's JSON.")
@click.argument("refs", nargs=-1, required=True)
@click.pass_context
def image_inspect(ctx: click.Context, fmt: str | None, refs: tuple[str, ...]) -> None:
    """Show images' details as JSON (images only: `docker image inspect`)."""
    ctx.invoke(inspect, fmt=fmt, kind="image", images=refs)


@image_group.command("prune")
@click.option("-a", "--all", "all_images", is_flag=True,
              help="Remove every image no container uses, not only dangling ones.")  # fmt: skip
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.pass_context
def image_prune(ctx: click.Context, all_images: bool, force: bool) -> None:
    """Remove dangling images (with -a: every image no container uses), as `docker image
    prune`; the build cache stays (`lamina prune` removes it)."""
    if not force:
        what = (
            "all images without at least one container associated to them"
            if all_images
            else "all dangling images"
        )
        click.echo(f"WARNING! This will remove {what}.")
        click.echo("Are you sure you want to continue? [y/N] ", nl=False)
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            click.echo()
            raise LaminaError("image prune has been cancelled")
    lines, freed = _api(ctx).prune_images(all_images=all_images)
    if lines:
        click.echo("Deleted Images:")
        for line in lines:
            click.echo(line)
        click.echo()
    click.echo(f"Total reclaimed space: {human_size(freed, 4)}")
