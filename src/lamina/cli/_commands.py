"""The commands: parse arguments, call `lamina.api`, print what it returns as Docker would."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import click

from lamina.cli._format import human_size
from lamina.cli._main import _Context, cli

if TYPE_CHECKING:
    from lamina.api import Lamina


def _api(ctx: click.Context) -> Lamina:
    obj: _Context = ctx.find_root().obj
    return obj.api()


max_layer_size_option = click.option(
    "--max-layer-size",
    metavar="SIZE",
    help="Largest a layer may decompress to (default 64G, or LAMINA_MAX_LAYER_SIZE).",
)
max_layer_ratio_option = click.option(
    "--max-layer-ratio",
    type=float,
    metavar="N",
    help="Most bytes out per compressed byte in (default 1000, or LAMINA_MAX_LAYER_RATIO).",
)


def set_layer_limits(api: Lamina, max_layer_size: str | None, max_ratio: float | None) -> None:
    """--max-layer-size/--max-layer-ratio over LAMINA_MAX_LAYER_SIZE/_RATIO (load, pull)."""
    if max_layer_size is not None or max_ratio is not None:
        from lamina.transport import LayerLimits, parse_size

        size = parse_size(max_layer_size, "--max-layer-size") if max_layer_size else None
        api.limits = LayerLimits.from_env(size, max_ratio)


@cli.command()
@click.option(
    "-i",
    "--input",
    "source",
    type=click.Path(path_type=Path, exists=True),
    help="Read from this file or OCI layout directory (default stdin).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the image IDs.")
@click.option(
    "--keep-blobs/--no-keep-blobs",
    default=None,
    help="Also keep compressed layers as they arrived (default no, or LAMINA_KEEP_BLOBS=1).",
)
@max_layer_size_option
@max_layer_ratio_option
@click.pass_context
def load(
    ctx: click.Context,
    source: Path | None,
    quiet: bool,
    keep_blobs: bool | None,
    max_layer_size: str | None,
    max_layer_ratio: float | None,
) -> None:
    """Load images from a docker-archive or an OCI layout (directory or tar), or stdin."""
    if source is None and (sys.stdin is None or sys.stdin.isatty()):
        from lamina.errors import InvalidInputError

        raise InvalidInputError("requested load from stdin, but stdin is empty",
                                hint="lamina load -i FILE, or lamina load < FILE")  # fmt: skip
    api = _api(ctx)
    set_layer_limits(api, max_layer_size, max_layer_ratio)
    target = source if source is not None else sys.stdin.buffer
    for loaded in api.load(target, keep_blobs=keep_blobs):
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
@click.option(
    "--compression",
    type=click.Choice(["gzip", "zstd", "none"]),
    default="gzip",
    show_default=True,
    help="How OCI layouts' layers are compressed (a docker-archive's never are).",
)
@click.argument("images", nargs=-1, required=True)
@click.pass_context
def save(
    ctx: click.Context, output: Path | None, fmt: str, compression: str, images: tuple[str, ...]
) -> None:
    """Save images to a docker-archive or an OCI layout."""
    if output is None:
        if fmt == "oci-dir":
            raise click.UsageError("--format oci-dir needs -o DIR")
        if sys.stdout.isatty():
            raise click.UsageError("refusing to write an archive to a terminal; use -o FILE")
    target = output if output is not None else sys.stdout.buffer
    for note in _api(ctx).save(list(images), target, fmt, compression):
        click.echo(f"note: {note}", err=True)


@cli.command("import")
@click.option("--base", help="Stack the source as a new layer on this image (lamina's own).")
@click.option("-m", "--message", default="", help="History comment for the new layer.")
@click.option(
    "-c", "--change", "changes", multiple=True, help="Dockerfile instruction for the config."
)
@click.argument("source", type=click.Path(path_type=Path, exists=True, allow_dash=True))
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
    """Make an image from a root filesystem (a directory or a tarball; `-`: a tarball on
    stdin), like `docker import`."""
    given: Path | BinaryIO = sys.stdin.buffer if str(source) == "-" else source
    image_id = _api(ctx).import_image(
        given, reference, base=base, message=message, changes=list(changes)
    )
    click.echo(image_id)


@cli.command()
@click.argument("source")
@click.argument("target")
@click.pass_context
def tag(ctx: click.Context, source: str, target: str) -> None:
    """Give an image another name."""
    _api(ctx).tag(source, target)


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
