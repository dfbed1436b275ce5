"""`lamina build` as a Python call: the build package driven with this store's names."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from lamina.errors import InvalidInputError, LaminaError, NotFoundError

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


def pull_base(lamina: Lamina, ref: str, on_event: EventSink | None) -> ImageRecord:
    """FROM or COPY --from of an image the store lacks: pull it, as Docker does, with the
    build's progress; NotFoundError saying why when it cannot be pulled."""
    from lamina.builder import BuildEvent
    from lamina.oci import parse_reference

    try:
        parse_reference(ref)
    except InvalidInputError:
        raise NotFoundError(
            f"no such image: {ref}", hint="`lamina images` lists names and IDs"
        ) from None

    def show(event: str, digest: str, count: int) -> None:
        if on_event is not None and event in ("present", "downloaded"):
            word = "already exists" if event == "present" else "pulled"
            on_event(BuildEvent("output", 0, f"{ref}: {digest[:19]} {word}\n"))

    if on_event is not None:
        on_event(BuildEvent("output", 0, f"{ref}: not in the store, pulling\n"))
    try:
        # Lazy: only a step that runs on it fetches its layers (BuildKit does the same).
        pulled = lamina.pull(ref, events=show, lazy=True)
    except LaminaError as exc:
        raise NotFoundError(
            f"no such image: {ref}, and pulling it failed: {exc.message}", exc.hint
        ) from None
    if on_event is not None:
        on_event(BuildEvent("output", 0, f"{ref}: pulled {pulled.digest}\n"))
    return lamina.store.get_image(pulled.digest)


def build_image(
    lamina: Lamina,
    context: Path | str,
    *,
    dockerfile: Path | str | None = None,
    stdin: BinaryIO | None = None,
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
    cache_to: Sequence[str] = (),
    cache_from: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
    platform: str | None = None,
    outputs: Sequence[str] = (),
    iidfile: Path | None = None,
) -> BuildResult:
    """Build `context` (its Dockerfile, or `dockerfile`) and tag the image with `tags`.

    `context` is a directory, an archive file, or `-` (read from `stdin`: an archive,
    or a Dockerfile and no context); `dockerfile` may be `-` too (see `_build_io`).
    `labels` go on the final image; `platform` is the target (`os/arch[/variant]`).
    `outputs` are `-o` exporter specs; `iidfile` receives the image ID.

    A request whose every input is unchanged since it was last built is answered from
    its record (see `_replay`) without running the builder; `no_cache` always builds.
    """
    from lamina.api._build_io import build_input, parse_output, write_iidfile, write_outputs

    exports = [parse_output(spec) for spec in outputs]
    with build_input(lamina, context, dockerfile, stdin) as where:
        result = _build(
            lamina,
            where.context_dir,
            where.dockerfile,
            replayable=not where.temporary,
            origin=where.origin,
            tags=tags,
            build_args=build_args,
            target=target,
            no_cache=no_cache,
            network=network,
            secrets=secrets,
            ssh=ssh,
            allow=allow,
            explain=explain,
            on_event=on_event,
            labels=dict(labels or {}),
            platform=_platform(platform),
            cache_to=cache_to,
            cache_from=cache_from,
        )
    write_outputs(lamina, result.image, result.image.tags, exports)
    if iidfile is not None:
        write_iidfile(Path(iidfile), result.image.id)
    return result


def _epoch(build_args: Mapping[str, str], from_env: int | None) -> int | None:
    """`--build-arg SOURCE_DATE_EPOCH=N` is BuildKit's spelling of the epoch (its
    testWorkdirSourceDateEpochReproducible); the environment's value wins."""
    value = build_args.get("SOURCE_DATE_EPOCH", "")
    if from_env is not None or not value:
        return from_env
    if not value.isdigit():
        raise InvalidInputError(f"--build-arg SOURCE_DATE_EPOCH={value!r} is not a number")
    return int(value)


def parse_labels(items: Sequence[str]) -> dict[str, str]:
    """`--label K=V` values; a bare `K` is an empty label, as Docker sets it."""
    out: dict[str, str] = {}
    for item in items:
        key, _sep, value = item.partition("=")
        if not key:
            raise InvalidInputError(f"--label {item!r}: want KEY=VALUE")
        out[key] = value
    return out


def _platform(text: str | None) -> str | None:
    """`--platform` as `os/arch[/variant]`, normalised by containerd's rules
    (`Platform.parse`: `arm64` means linux/arm64, `x86_64` is amd64)."""
    if not text:
        return None
    from lamina.oci import Platform

    try:
        return str(Platform.parse(text))
    except ValueError:
        raise InvalidInputError(
            f"--platform {text!r}: want os/arch[/variant], such as linux/arm64"
        ) from None


def _build(
    lamina: Lamina,
    context: Path,
    dockerfile: Path | None,
    *,
    replayable: bool,
    tags: Sequence[str],
    build_args: Mapping[str, str] | None,
    target: str | None,
    no_cache: bool,
    network: Network,
    secrets: Mapping[str, Path | bytes] | None,
    explain: bool,
    on_event: EventSink | None,
    labels: dict[str, str],
    platform: str | None,
    origin: str | None = None,
    ssh: Mapping[str, Path] | None = None,
    allow: Sequence[str] = (),
    cache_to: Sequence[str] = (),
    cache_from: Sequence[str] = (),
) -> BuildResult:
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
        source_date_epoch=_epoch(build_args or {}, source_date_epoch()),
        explain=explain,
        labels=labels,
        platform=platform,
        origin=origin,
    )
    request = BuildRequest(
        opts.context_dir,
        opts.dockerfile_path(),
        opts.build_args,
        target,
        network,
        opts.secrets,
        opts.source_date_epoch,
        {
            **{f"label:{k}": v for k, v in labels.items()},
            **({"platform": platform} if platform else {}),
            **{f"ssh:{k}": os.path.realpath(v) for k, v in opts.ssh.items()},
            **({"allow": ",".join(sorted(opts.allow))} if opts.allow else {}),
        },
    )
    for spec in [*cache_to, *cache_from]:
        from lamina.transport import parse_cache_option

        parse_cache_option(spec, "--cache-to" if spec in cache_to else "--cache-from")
    # an export needs the builder's step list
    replay = replayable and not no_cache and not cache_to
    if replay and opts.context_dir.is_dir() and opts.dockerfile_path().is_file():
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
        try:
            image = lamina.resolve(ref)
        except NotFoundError:
            image = pull_base(lamina, ref, on_event)
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
    if cache_from and not no_cache:
        from lamina.api._registry_cache import import_caches

        def warn(text: str) -> None:
            observe(BuildEvent("warning", 0, text))

        import_caches(lamina.store, lamina.root, cache_from, lamina.limits, warn)
    with sigterm_raises():
        result = build(lamina.store, opts, resolve, observe)
    if cache_to:
        from lamina.api._registry_cache import export_cache

        for spec in cache_to:
            digest = export_cache(lamina.store, lamina.root, result, spec)
            observe(BuildEvent("output", 0, f"cache exported: {spec} {digest}\n"))
    if replayable and result.replayable:
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
