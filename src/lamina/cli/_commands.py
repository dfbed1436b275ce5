"""The commands: parse arguments, call `lamina.api`, print what it returns as Docker would."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from lamina.cli._format import created_since, human_size, truncate
from lamina.cli._main import _Context, cli
from lamina.oci import short_id

if TYPE_CHECKING:
    from lamina.api import Lamina


def _api(ctx: click.Context) -> Lamina:
    obj: _Context = ctx.find_root().obj
    return obj.api()


def _table(headers: list[str], rows: list[list[str]]) -> None:
    """Docker's plain columns: left-aligned, three spaces apart, no borders."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    for line in [headers, *rows]:
        click.echo("   ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


@cli.command()
@click.option(
    "-i", "--input", "source", required=True, type=click.Path(path_type=Path, exists=True)
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the image IDs.")
@click.pass_context
def load(ctx: click.Context, source: Path, quiet: bool) -> None:
    """Load images from a docker-archive or an OCI layout (directory or tar)."""
    for loaded in _api(ctx).load(source):
        if quiet:
            click.echo(loaded.image_id)
            continue
        for name in loaded.names:
            click.echo(f"Loaded image: {name}")
        if not loaded.names:
            click.echo(f"Loaded image ID: {loaded.image_id}")


@cli.command()
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="Write to a file (default stdout)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["docker-archive", "oci-archive", "oci-dir"]),
    default="docker-archive",
    show_default=True,
)
@click.argument("images", nargs=-1, required=True)
@click.pass_context
def save(ctx: click.Context, output: Path | None, fmt: str, images: tuple[str, ...]) -> None:
    """Save images to a docker-archive or an OCI layout."""
    if output is None:
        if fmt == "oci-dir":
            raise click.UsageError("--format oci-dir needs -o DIR")
        if sys.stdout.isatty():
            raise click.UsageError("refusing to write an archive to a terminal; use -o FILE")
    _api(ctx).save(list(images), output if output is not None else sys.stdout.buffer, fmt)


@cli.command("import")
@click.option("--base", help="Stack the source as a new layer on this image (lamina's own).")
@click.option("-m", "--message", default="", help="History comment for the new layer.")
@click.option(
    "-c", "--change", "changes", multiple=True, help="Dockerfile instruction for the config."
)
@click.argument("source", type=click.Path(path_type=Path, exists=True))
@click.argument("reference", required=False)
@click.pass_context
def import_(
    ctx: click.Context,
    base: str | None,
    message: str,
    changes: tuple[str, ...],
    source: Path,
    reference: str | None,
) -> None:
    """Make an image from a root filesystem (a directory or a tarball), like `docker import`."""
    image_id = _api(ctx).import_image(
        source, reference, base=base, message=message, changes=list(changes)
    )
    click.echo(image_id)


@cli.command()
@click.option("-q", "--quiet", is_flag=True, help="Only IDs.")
@click.option("--no-trunc", is_flag=True, help="Full IDs.")
@click.option("--digests", is_flag=True, help="Show manifest digests.")
@click.pass_context
def images(ctx: click.Context, quiet: bool, no_trunc: bool, digests: bool) -> None:
    """List images."""
    rows: list[list[str]] = []
    seen: set[str] = set()
    for image in _api(ctx).images():
        image_id = image.id if no_trunc else short_id(image.id)
        if quiet:
            if image_id not in seen:
                click.echo(image_id)
                seen.add(image_id)
            continue
        size = human_size(image.content_size)
        created = created_since(image.created)
        for repository, tag in image.repo_tags or [("<none>", "<none>")]:
            row = [repository, tag]
            if digests:
                row.append(image.digest)
            rows.append([*row, image_id, created, size])
    if not quiet:
        headers = [
            "REPOSITORY",
            "TAG",
            *(["DIGEST"] if digests else []),
            "IMAGE ID",
            "CREATED",
            "SIZE",
        ]
        _table(headers, rows)


@cli.command()
@click.argument("images", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, images: tuple[str, ...]) -> None:
    """Show images' details as JSON, like `docker image inspect`."""
    click.echo(json.dumps([_api(ctx).inspect(ref) for ref in images], indent=4))


@cli.command()
@click.option("--no-trunc", is_flag=True, help="Do not truncate output.")
@click.option("-H", "--human/--no-human", default=True, help="Human-readable sizes and dates.")
@click.option("-q", "--quiet", is_flag=True, help="Only IDs.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.argument("image")
@click.pass_context
def history(
    ctx: click.Context, no_trunc: bool, human: bool, quiet: bool, fmt: str, image: str
) -> None:
    """Show the history of an image, newest step first, like `docker image history`."""
    rows = _api(ctx).history(image)
    if quiet:
        for row in rows:
            click.echo(row.id if no_trunc or row.id == "<missing>" else short_id(row.id))
        return
    if fmt == "json":
        for row in rows:
            click.echo(
                json.dumps(
                    {
                        "Comment": row.comment,
                        "CreatedAt": row.created,
                        "CreatedBy": row.created_by,
                        "CreatedSince": created_since(row.created),
                        "ID": row.id,
                        "Size": human_size(row.size),
                    }
                )
            )
        return
    table = []
    for row in rows:
        shown_id = row.id if no_trunc or row.id == "<missing>" else short_id(row.id)
        created = created_since(row.created) if human else row.created
        created_by = row.created_by if no_trunc else truncate(row.created_by, 45)
        size = human_size(row.size) if human else str(row.size)
        table.append([shown_id, created, created_by, size, row.comment])
    _table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], table)


@cli.command()
@click.argument("source")
@click.argument("target")
@click.pass_context
def tag(ctx: click.Context, source: str, target: str) -> None:
    """Give an image another name."""
    _api(ctx).tag(source, target)


@cli.command()
@click.option(
    "-f", "--force", is_flag=True, help="Remove the image even if several names point at it."
)
@click.argument("images", nargs=-1, required=True)
@click.pass_context
def rmi(ctx: click.Context, force: bool, images: tuple[str, ...]) -> None:
    """Remove images (their names; content goes at the next prune)."""
    for line in _api(ctx).rmi(list(images), force=force):
        click.echo(line)


@cli.command()
@click.option("-v", "--verbose", is_flag=True, help="Per image and per layer.")
@click.pass_context
def df(ctx: click.Context, verbose: bool) -> None:
    """Show disk usage: images, layers, shared and unique bytes."""
    usage = _api(ctx).df()
    if not verbose:
        _table(
            ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
            [
                [
                    "Images",
                    str(len(usage.images)),
                    str(usage.active_images),
                    human_size(usage.blobs_size),
                    human_size(usage.reclaimable_size),
                ],
                ["Snapshots", "", "", human_size(usage.snapshots_size), ""],
                ["Build Cache", str(usage.cache_records), "", "", ""],
            ],
        )
        return
    click.echo("Images space usage:\n")
    rows = []
    from lamina.api import familiar

    for u in usage.images:
        names = [familiar(t) for t in u.image.tags] or [("<none>", "<none>")]
        for repository, tag_ in sorted(names):
            rows.append(
                [
                    repository,
                    tag_,
                    short_id(u.image.id),
                    human_size(u.size),
                    human_size(u.shared_size),
                    human_size(u.unique_size),
                    str(u.containers),
                ]
            )
    _table(
        ["REPOSITORY", "TAG", "IMAGE ID", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"], rows
    )
    click.echo("\nLayers space usage:\n")
    _table(
        ["LAYER DIGEST", "DIFF ID", "SIZE", "IMAGES"],
        [
            [
                short_id(lu.layer.digest),
                short_id(lu.layer.diff_id),
                human_size(lu.layer.size),
                str(lu.images),
            ]
            for lu in usage.layers
        ],
    )
    click.echo(
        f"\nBlobs: {human_size(usage.blobs_size)}   Snapshots: {human_size(usage.snapshots_size)}"
        f"   Build cache records: {usage.cache_records}"
    )


@cli.command()
@click.option("--keep-build-cache", is_flag=True, help="Keep the build cache records.")
@click.pass_context
def prune(ctx: click.Context, keep_build_cache: bool) -> None:
    """Remove the build cache, untagged images, and every blob and snapshot nothing uses."""
    report = _api(ctx).prune(keep_build_cache=keep_build_cache)
    for image in report.images_removed:
        click.echo(f"Deleted Images: {image}")
    if report.cache_records_removed:
        click.echo(f"Deleted build cache records: {report.cache_records_removed}")
    click.echo(
        f"Removed {len(report.blobs_removed)} blobs and {len(report.snapshots_removed)} snapshots"
    )
    click.echo(f"Total reclaimed space: {human_size(report.bytes_freed)}")


@cli.command()
@click.pass_context
def fsck(ctx: click.Context) -> None:
    """Re-verify every blob and snapshot; exit 1 if anything is broken."""
    report = _api(ctx).fsck()
    for problem in report.problems:
        click.echo(f"problem: {problem}")
    for stray in report.strays:
        click.echo(f"stray (prune collects it): {stray}")
    click.echo(f"checked {report.blobs_checked} blobs: {'ok' if report.ok else 'BROKEN'}")
    if not report.ok:
        sys.exit(1)


@cli.command()
@click.argument("image")
@click.argument("target", type=click.Path(path_type=Path, file_okay=False))
@click.pass_context
def mount(ctx: click.Context, image: str, target: Path) -> None:
    """Mount an image's layers read-only as one overlayfs tree at TARGET."""
    _api(ctx).mount(image, target)
    click.echo(str(target))


@cli.command()
@click.argument("target", type=click.Path(path_type=Path, file_okay=False))
@click.pass_context
def umount(ctx: click.Context, target: Path) -> None:
    """Unmount what `lamina mount` mounted at TARGET."""
    _api(ctx).umount(target)
