"""What `lamina build` reads and writes besides the store.

In: the context as a directory, as an archive (a `.tar`, `.tar.gz`, … file, or on
stdin with `-`), or no context at all (`-` with a Dockerfile on stdin); the
Dockerfile from stdin (`-f -`). An archive is unpacked by `layers`' bounded reader
and safe applier into a temporary directory inside the store (`$ROOT/tmp/`), so
nothing it names can land outside that directory; the directory is removed after
the build.

Out: `--iidfile FILE` (the image ID, no newline, as Docker writes it) and the `-o`
exporters: `type=docker-archive|docker,dest=F`, `type=oci-archive|oci,dest=F`,
`type=local,dest=DIR` (the final tree, as BuildKit's local exporter writes it) and
`type=tar,dest=F` (that tree as one tar). `-o DIR` is short for `type=local,dest=DIR`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from lamina._rmtree import remove_tree
from lamina.errors import InvalidInputError, LaminaError, NotFoundError
from lamina.oci import MAX_DOCKERFILE_BYTES

if TYPE_CHECKING:
    from lamina.api._lamina import Lamina
    from lamina.store import ImageRecord

STDIN = "-"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class BuildInput:
    """A build's context directory and Dockerfile (None: the context's own), and whether
    the directory was made for this build (such a build is never replayed by stat)."""

    context_dir: Path
    dockerfile: Path | None
    temporary: bool
    origin: str | None = None  # what a temporary input was made from: "stdin", an archive


def is_archive(path: Path) -> bool:
    """Whether the file is compressed (any compression layers reads) or starts with a tar
    header its bounded reader accepts (Docker's rule: anything else on stdin is a
    Dockerfile)."""
    from lamina.layers import Compression, Limits, TarReader, sniff_compression

    with path.open("rb") as f:
        if sniff_compression(f.read(8)) is not Compression.NONE:
            return True
        f.seek(0)
        try:
            next(TarReader(f, Limits()).entries(), None)
        except LaminaError:
            return False
    return True


@contextlib.contextmanager
def build_input(
    lamina: Lamina,
    context: Path | str,
    dockerfile: Path | str | None,
    stdin: BinaryIO | None,
) -> Iterator[BuildInput]:
    """The context and Dockerfile named as `docker build` names them, ready to build.

    `context`: a directory, an archive file, or `-` (stdin holds an archive, or a
    Dockerfile and no context). `dockerfile`: a path (relative to the context), `-`
    (stdin), or None. `stdin` is read only when one of them is `-`.
    """
    if str(context) == STDIN and dockerfile is not None and str(dockerfile) == STDIN:
        raise InvalidInputError("cannot read both the build context and the Dockerfile from stdin")
    with _scratch(lamina) as tmp:
        if str(context) == STDIN:
            spool = tmp / "stdin"
            _copy_bounded(_need(stdin, "the build context"), spool, lamina.max_layer_bytes)
            if is_archive(spool):
                where = _dockerfile(dockerfile)
                yield BuildInput(_unpack(lamina, spool, tmp), where, True, f"stdin:{where}")
                return
            if dockerfile is not None:
                raise InvalidInputError(
                    "-f names a Dockerfile, and stdin holds a Dockerfile too",
                    hint="with `-` and a Dockerfile on stdin there is no context; drop -f",
                )
            if spool.stat().st_size > MAX_DOCKERFILE_BYTES:
                raise InvalidInputError("stdin is neither a tar archive nor a Dockerfile")
            empty = tmp / "context"
            empty.mkdir()
            named = tmp / "Dockerfile"
            spool.rename(named)
            yield BuildInput(empty, named, True, "stdin")
            return
        path = Path(context)
        named_file = _dockerfile(dockerfile)
        if dockerfile is not None and str(dockerfile) == STDIN:
            named_file = tmp / "Dockerfile"
            _copy_bounded(_need(stdin, "the Dockerfile"), named_file, MAX_DOCKERFILE_BYTES)
        if path.is_dir():
            from_stdin = dockerfile is not None and str(dockerfile) == STDIN
            origin = f"{path.resolve()}\0stdin" if from_stdin else None
            yield BuildInput(path, named_file, from_stdin, origin)
            return
        if not path.exists():
            raise NotFoundError(f"build context {path} does not exist")
        if not path.is_file() or not is_archive(path):
            raise InvalidInputError(
                f"build context {path} is neither a directory nor a tar archive",
                hint="give a directory, a .tar/.tar.gz file, or - for stdin",
            )
        origin = f"{path.resolve()}\0{named_file}"
        yield BuildInput(_unpack(lamina, path, tmp), named_file, True, origin)


def _need(stdin: BinaryIO | None, what: str) -> BinaryIO:
    if stdin is None:
        raise InvalidInputError(f"`-` reads {what} from stdin, and there is no stdin here")
    return stdin


def _dockerfile(dockerfile: Path | str | None) -> Path | None:
    if dockerfile is None or str(dockerfile) == STDIN:
        return None
    return Path(dockerfile)


@contextlib.contextmanager
def _scratch(lamina: Lamina) -> Iterator[Path]:
    base = lamina.root / "tmp"
    base.mkdir(mode=0o700, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="build-input-", dir=base))
    try:
        yield path
    finally:
        remove_tree(path)


def _copy_bounded(source: BinaryIO, target: Path, limit: int) -> None:
    total = 0
    with target.open("wb") as out:
        while chunk := source.read(_CHUNK):
            total += len(chunk)
            if total > limit:
                raise InvalidInputError(f"stdin holds more than {limit} bytes; refused")
            out.write(chunk)


def _unpack(lamina: Lamina, archive: Path, tmp: Path) -> Path:
    """The archive unpacked into `tmp/context` by the safe applier (every path resolved
    inside that directory; sizes, counts and names bounded)."""
    from lamina.layers import Limits, apply_layer, open_layer_reader

    target = tmp / "context"
    target.mkdir()
    limits = Limits(max_total_bytes=lamina.max_layer_bytes)
    with archive.open("rb") as f:
        tar = open_layer_reader(f, lamina.max_layer_bytes)
        try:
            apply_layer(tar, target, overlay=False, limits=limits)
        except InvalidInputError as exc:
            raise InvalidInputError(
                f"build context archive: {exc.message}", hint=exc.hint
            ) from None
    return target


# -- outputs ------------------------------------------------------------------------------

EXPORTERS = {
    "docker": "docker-archive",
    "docker-archive": "docker-archive",
    "oci": "oci-archive",
    "oci-archive": "oci-archive",
    "local": "local",
    "tar": "tar",
}


@dataclass(frozen=True)
class Output:
    """An `-o` exporter: its kind (see EXPORTERS' values) and destination."""

    kind: str
    dest: Path


def parse_output(spec: str) -> Output:
    """`type=KIND,dest=PATH`, or a bare path meaning `type=local,dest=PATH`."""
    if "=" not in spec:
        if not spec or spec == STDIN:
            raise InvalidInputError(f"-o {spec!r}: want a directory, or type=KIND,dest=PATH")
        return Output("local", Path(spec))
    fields: dict[str, str] = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise InvalidInputError(f"-o {spec!r}: {part!r} is not KEY=VALUE")
        fields[key.strip()] = value.strip()
    kind = fields.pop("type", "")
    if kind not in EXPORTERS:
        raise InvalidInputError(
            f"-o {spec!r}: unknown exporter type {kind!r}",
            hint="types: " + ", ".join(sorted(EXPORTERS)),
        )
    dest = fields.pop("dest", "")
    if not dest or dest == STDIN:
        raise InvalidInputError(f"-o {spec!r}: needs dest=PATH (stdout is not supported)")
    if fields:
        raise InvalidInputError(f"-o {spec!r}: unknown option {sorted(fields)[0]!r}")
    return Output(EXPORTERS[kind], Path(dest))


def write_outputs(
    lamina: Lamina, image: ImageRecord, names: Sequence[str], outputs: Sequence[Output]
) -> None:
    """Write the built image to each exporter's destination."""
    for output in outputs:
        if output.kind in ("docker-archive", "oci-archive"):
            lamina.save(list(names) or [image.id], output.dest, output.kind)
        elif output.kind == "local":
            export_tree(lamina, image, output.dest)
        else:
            with _scratch(lamina) as tmp:
                tree = export_tree(lamina, image, tmp / "tree")
                _write_tree_tar(tree, output.dest)


def export_tree(lamina: Lamina, image: ImageRecord, dest: Path) -> Path:
    """The image's file tree written into `dest` (made if missing): each layer applied in
    order by the safe applier, so whiteouts delete and no entry lands outside `dest`."""
    from lamina.layers import Limits, apply_layer, open_layer_reader

    dest.mkdir(parents=True, exist_ok=True)
    limits = Limits(max_total_bytes=lamina.max_layer_bytes)
    from lamina.transport import open_layer_tar

    for layer in image.layers:
        if lamina.store.has_layer(layer.diff_id):
            # The snapshot is the layer: its exact tar, rebuilt and checked as it streams.
            with open_layer_tar(lamina.store, layer.diff_id) as rebuilt:
                apply_layer(rebuilt, dest, overlay=False, limits=limits)
                while rebuilt.read(1 << 20):
                    pass
            continue
        with lamina.store.content.open(layer.digest) as blob:
            tar = open_layer_reader(blob, lamina.max_layer_bytes)
            apply_layer(tar, dest, overlay=False, limits=limits)
    return dest


def _write_tree_tar(tree: Path, dest: Path) -> None:
    from lamina.layers import changes_from_dir, source_date_epoch, write_layer

    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as out:
            write_layer(changes_from_dir(tree), out, source_date_epoch=source_date_epoch())
        tmp.rename(dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_iidfile(path: Path, image_id: str) -> None:
    """The image ID, without a newline, written whole (temporary file, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(image_id)
        tmp.rename(path)
    finally:
        tmp.unlink(missing_ok=True)
