"""What a build is asked to do, what it reports while it runs, and what it returns."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from lamina.errors import ToolError
from lamina.store import ImageRecord, LayerRecord

if TYPE_CHECKING:
    from lamina.dockerfile import ContextFile
    from lamina.runtime import Network

Resolver = Callable[[str], ImageRecord]
"""Finds an image in the local store by name, digest or ID (`FROM`, `COPY --from`)."""


@dataclass(frozen=True)
class BuildOptions:
    """`lamina build` as values. `dockerfile` is relative to the context unless absolute."""

    context_dir: Path
    dockerfile: Path | None = None
    tags: tuple[str, ...] = ()
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    network: Network = "host"
    # id → a file, or the value itself (`--secret id=X,env=VAR` reads it at start)
    secrets: Mapping[str, Path | bytes] = field(default_factory=dict)
    ssh: Mapping[str, Path] = field(default_factory=dict)  # id → ssh-agent socket
    allow: frozenset[str] = frozenset()  # entitlements: "security.insecure"
    source_date_epoch: int | None = None
    explain: bool = False
    # `--label K=V`: set on the final image's config, no history entry (as BuildKit does).
    labels: Mapping[str, str] = field(default_factory=dict)
    # `--platform os/arch[/variant]`: the target; None is this machine's. RUN can only
    # run on this machine's platform; FROM, COPY, ADD and metadata steps work for any.
    platform: str | None = None
    # Where the context and Dockerfile came from when they live in a temporary directory
    # (`-`, an archive): names "the same build" for `--explain` across runs.
    origin: str | None = None

    def dockerfile_path(self) -> Path:
        if self.dockerfile is None:
            return self.context_dir / "Dockerfile"
        if self.dockerfile.is_absolute():
            return self.dockerfile
        return self.context_dir / self.dockerfile


EventKind = Literal["step", "cached", "miss", "output", "done", "warning", "image"]


@dataclass(frozen=True)
class BuildEvent:
    """A progress report: `step` numbers the step (0 for build-wide events)."""

    kind: EventKind
    step: int
    text: str
    seconds: float = 0.0


EventSink = Callable[[BuildEvent], None]


@dataclass(frozen=True)
class CacheStep:
    """A layer step's cache entry as a build used or made it: its key, the key before it,
    the image's layers after it (none when the step added no layer), and its time."""

    stage: int
    key: str
    parent: str
    layers: tuple[LayerRecord, ...]
    created: str


@dataclass(frozen=True)
class BuildResult:
    """The image made (tagged as asked) and how many layer steps were cached."""

    image: ImageRecord
    steps: int
    cached: int
    # The context entries the image depends on, and whether nothing else (a URL) counts.
    context_files: tuple[ContextFile, ...] = ()
    replayable: bool = False
    # Each layer step's cache entry (for --cache-to) and which stage is the target.
    cache_steps: tuple[CacheStep, ...] = ()
    target_stage: int = 0


def timestamp(source_date_epoch: int | None, now: float) -> str:
    """RFC 3339 in UTC; SOURCE_DATE_EPOCH wins over the clock (reproducible builds)."""
    when = float(source_date_epoch) if source_date_epoch is not None else now
    moment = datetime.datetime.fromtimestamp(when, datetime.UTC)
    if source_date_epoch is not None:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class StepFailedError(ToolError):
    """A RUN whose command exited non-zero: the step, its line, exit code and last output."""

    def __init__(
        self, step: str, where: str, code: int, tail: Sequence[str], argv: Sequence[str] = ()
    ) -> None:
        lines = "\n".join("  " + line for line in tail)
        # BuildKit's wording (testDockerfileInvalidCommand greps for it), lamina's place.
        process = f'process "{" ".join(argv)}" ' if argv else "it "
        text = f"{where}: {step}: {process}did not complete successfully: exit code: {code}"
        if lines:
            text += "\nlast output:\n" + lines
        super().__init__(text, hint="fix the command; earlier steps stay cached")
        self.step = step
        self.where = where
        self.code = code
        self.tail = list(tail)
