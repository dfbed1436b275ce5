"""`lamina build` as a Python call: the build package driven with this store's names."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lamina.errors import InvalidInputError

if TYPE_CHECKING:
    from lamina.api._lamina import Lamina
    from lamina.builder import BuildResult, EventSink
    from lamina.dockerfile import Diagnostic
    from lamina.runtime import Network
    from lamina.store import ImageRecord


def parse_secret(spec: str) -> tuple[str, Path | bytes]:
    """`id=NAME,src=PATH` (or `source=`, `type=file`) → (NAME, PATH); `id=NAME,env=VAR`
    (or `type=env`) → (NAME, the value of VAR now). A bare `id=NAME` reads the variable
    NAME if it is set, else the file NAME, as buildx does."""
    fields: dict[str, str] = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise InvalidInputError(f"--secret {spec!r}: want id=NAME,src=PATH or id=NAME,env=VAR")
        fields[key.strip()] = value.strip()
    ident = fields.get("id")
    kind = fields.get("type")
    src = fields.get("src") or fields.get("source")
    env = fields.get("env")
    if not ident or kind not in (None, "file", "env"):
        raise InvalidInputError(f"--secret {spec!r}: want id=NAME,src=PATH or id=NAME,env=VAR")
    if kind == "env" or (env and not src):
        name = env or src or ident
        if name not in os.environ:
            raise InvalidInputError(f"--secret {ident}: environment variable {name} is not set")
        return ident, os.environ[name].encode("utf-8", "surrogateescape")
    if not src:
        if kind is None and ident in os.environ:
            return ident, os.environ[ident].encode("utf-8", "surrogateescape")
        src = ident
    path = Path(src)
    if not path.is_file():
        raise InvalidInputError(f"--secret {ident}: {src} is not a file")
    return ident, path.resolve()


def parse_ssh(spec: str) -> tuple[str, Path]:
    """`default` (the agent at $SSH_AUTH_SOCK) or `ID=SOCKET` → (ID, socket path)."""
    ident, sep, value = spec.partition("=")
    if not ident:
        raise InvalidInputError(f"--ssh {spec!r}: want default or ID=SOCKET")
    if not sep:
        value = os.environ.get("SSH_AUTH_SOCK", "")
        if not value:
            raise InvalidInputError(
                f"--ssh {spec}: SSH_AUTH_SOCK is not set", hint="start ssh-agent or give ID=SOCKET"
            )
    path = Path(value.split(",")[0])
    if not path.is_socket():
        raise InvalidInputError(f"--ssh {ident}: {path} is not a socket (an ssh-agent's)")
    return ident, path.resolve()


def parse_build_args(items: Sequence[str]) -> dict[str, str]:
    """`K=V` pairs; a bare `K` takes its value from the environment, as Docker does."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise InvalidInputError(f"--build-arg {item!r}: want NAME=VALUE")
        if not sep:
            if key not in os.environ:
                continue
            value = os.environ[key]
        out[key] = value
    return out


def build_image(
    lamina: Lamina,
    context: Path,
    *,
    dockerfile: Path | None = None,
    tags: Sequence[str] = (),
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    no_cache: bool = False,
    network: Network = "host",
    secrets: Mapping[str, Path | bytes] | None = None,
    ssh: Mapping[str, Path] | None = None,
    allow: Sequence[str] = (),
    explain: bool = False,
    on_event: EventSink | None = None,
) -> BuildResult:
    """Build `context` (its Dockerfile, or `dockerfile`) and tag the image with `tags`.

    A request whose every input is unchanged since it was last built is answered from
    its record (see `_replay`) without running the builder; `no_cache` always builds.
    """
    from lamina.api._lamina import normalize_tag
    from lamina.api._replay import BuildRequest, record_build, replay_build
    from lamina.builder import BuildEvent, BuildOptions, BuildResult
    from lamina.layers import source_date_epoch

    opts = BuildOptions(
        context_dir=Path(context),
        dockerfile=dockerfile,
        tags=tuple(normalize_tag(t) for t in tags),
        build_args=dict(build_args or {}),
        target=target,
        no_cache=no_cache,
        network=network,
        secrets=dict(secrets or {}),
        ssh=dict(ssh or {}),
        allow=frozenset(allow),
        source_date_epoch=source_date_epoch(),
        explain=explain,
    )
    request = BuildRequest(
        opts.context_dir,
        opts.dockerfile_path(),
        opts.build_args,
        target,
        network,
        opts.secrets,
        opts.source_date_epoch,
        opts.ssh,
        opts.allow,
    )
    if not no_cache and opts.context_dir.is_dir() and opts.dockerfile_path().is_file():
        replayed = replay_build(lamina.store, request, lambda ref: lamina.resolve(ref).digest)
        if replayed is not None:
            for tag in opts.tags:
                lamina.store.tag(tag, replayed.image.digest)
            if on_event is not None:
                for text in replayed.warnings:
                    on_event(BuildEvent("warning", 0, text))
                for n, text in enumerate(replayed.steps, 1):
                    on_event(BuildEvent("step", n, text))
                    on_event(BuildEvent("cached", n, ""))
                on_event(BuildEvent("image", 0, replayed.image.id))
            image = lamina.store.get_image(replayed.image.digest)
            return BuildResult(image, len(replayed.steps), len(replayed.steps))

    from lamina.builder import build

    bases: dict[str, str] = {}
    steps: list[str] = []
    warnings: list[str] = []

    def resolve(ref: str) -> ImageRecord:
        image = lamina.resolve(ref)
        bases[ref] = image.digest
        return image

    def observe(event: BuildEvent) -> None:
        if event.kind == "step":
            steps.append(event.text)
        elif event.kind == "warning":
            warnings.append(event.text)
        if on_event is not None:
            on_event(event)

    from lamina.runtime import sigterm_raises

    started = time.time()
    with sigterm_raises():
        result = build(lamina.store, opts, resolve, observe)
    if result.replayable:
        record_build(
            lamina.store,
            request,
            result.image,
            [f.path for f in result.context_files],
            bases,
            steps,
            warnings,
            started,
        )
    return result


def check_dockerfile(
    context: Path, dockerfile: Path | None = None, build_args: Mapping[str, str] | None = None
) -> list[Diagnostic]:
    """`lamina build --check`: the frontend's lint findings, nothing built."""
    from lamina.builder import BuildOptions
    from lamina.dockerfile import check, read_dockerfile

    path = BuildOptions(Path(context), dockerfile).dockerfile_path()
    return check(read_dockerfile(path), filename=path.name, build_args=dict(build_args or {}))
