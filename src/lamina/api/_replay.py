"""Replaying a build whose every input is unchanged: make's up-to-date check for images.

A build's image depends on the Dockerfile and .dockerignore, the options, the images
its FROM and --from lines resolve to, and the context entries its COPY/ADD and bind
mounts read. After each build lamina records all of them, the context entries by their
stat identity (as the stat cache trusts them); a later build with the same request
re-checks them by lstat alone and returns the recorded image, without parsing,
planning or hashing anything. Start-up time is most of a cached build, and this path
never imports the frontend or the executor.

A record is not written when a context entry (or its directory) changed within
RACY_SECONDS of the build's start, since a later change in the same clock tick would
not move its mtime (git's racy timestamps), nor for a build that used ADD of a URL,
whose content lies outside the context. Directories are recorded too: adding or
removing a file changes its directory's mtime.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lamina import __version__
from lamina.errors import NotFoundError
from lamina.store import RACY_SECONDS, ImageRecord, Store

# 3: ENV replaced in place and context bind mounts masked; 4: an ADDed archive placed as
# moby's Unpack does (results changed: a record of the old results must not be replayed)
RECORD_VERSION = 4
_PREFIX = "replay:"


@dataclass(frozen=True)
class BuildRequest:
    """Everything about a build request except the context's content."""

    context: Path
    dockerfile: Path
    build_args: Mapping[str, str]
    target: str | None
    network: str
    secrets: Mapping[str, Path | bytes]
    source_date_epoch: int | None
    # Other options the image depends on (`--label`, `--platform`, `--ssh`, `--allow`).
    options: Mapping[str, str] = field(default_factory=dict)

    def key(self) -> str:
        df = self.dockerfile
        doc = {
            "v": RECORD_VERSION,
            "lamina": __version__,
            "context": os.path.realpath(self.context),
            "dockerfile": os.path.realpath(df),
            "dockerfile_sha256": _file_sha256(df),
            "ignores": [
                _file_sha256(df.with_name(df.name + ".dockerignore")),
                _file_sha256(self.context / ".dockerignore"),
            ],
            "args": sorted(self.build_args.items()),
            "target": self.target,
            "network": self.network,
            # A secret given by value is named, never hashed into the record.
            "secrets": sorted(
                (k, "<value>" if isinstance(v, bytes) else os.path.realpath(v))
                for k, v in self.secrets.items()
            ),
            "sde": self.source_date_epoch,
        }
        if self.options:
            doc["options"] = sorted(self.options.items())
        text = json.dumps(doc, sort_keys=True).encode("utf-8", "surrogateescape")
        return _PREFIX + hashlib.sha256(text).hexdigest()


@dataclass(frozen=True)
class Replayed:
    """A build answered from its record: the image and the steps to show as CACHED."""

    image: ImageRecord
    steps: tuple[str, ...]
    warnings: tuple[str, ...]


def _file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _identity(st: os.stat_result) -> list[int]:
    # git's index fields: ctime catches an in-place edit whose mtime was put back.
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode, st.st_ctime_ns, st.st_dev,
            st.st_uid, st.st_gid]  # fmt: skip


def _entries(paths: Iterable[str]) -> list[str]:
    """The paths and every directory above them up to the context root."""
    out = {"."}
    for path in paths:
        out.add(path)
        parent = os.path.dirname(path)
        while parent and parent not in out:
            out.add(parent)
            parent = os.path.dirname(parent)
    return sorted(out)


def record_build(
    store: Store,
    request: BuildRequest,
    image: ImageRecord,
    context_paths: Sequence[str],
    bases: Mapping[str, str],
    steps: Sequence[str],
    warnings: Sequence[str],
    started: float,
) -> bool:
    """Remember what `image` was built from; False when it cannot be trusted later."""
    root = os.path.realpath(request.context)
    cutoff = int((started - RACY_SECONDS) * 1e9)
    entries: list[list[Any]] = []
    for rel in _entries(context_paths):
        try:
            st = os.lstat(os.path.join(root, rel))
        except FileNotFoundError:
            return False
        if st.st_mtime_ns >= cutoff:
            return False
        entries.append([rel, *_identity(st)])
    store.put_cache(
        request.key(),
        {
            "v": RECORD_VERSION,
            "image": image.digest,
            "bases": dict(bases),
            "entries": entries,
            "steps": list(steps),
            "warnings": list(warnings),
        },
    )
    return True


def replay_build(store: Store, request: BuildRequest, resolve_digest: Any) -> Replayed | None:
    """The recorded image if every input is as it was; None means: build it.

    `resolve_digest(ref)` gives the manifest digest a name resolves to now.
    """
    found = store.get_cache(request.key())
    if found is None or not isinstance(found.value, dict) or found.value.get("v") != RECORD_VERSION:
        return None
    value = found.value
    for ref, digest in value["bases"].items():
        try:
            if resolve_digest(ref) != digest:
                return None
        except NotFoundError:
            return None
    try:
        root = os.open(os.path.realpath(request.context), os.O_PATH | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        # Relative to the root's fd: one syscall per entry, no path joining.
        for rel, *identity in value["entries"]:
            try:
                st = os.stat(rel, dir_fd=root, follow_symlinks=False)
            except OSError:
                return None
            if _identity(st) != identity:
                return None
            if rel == "." and not stat.S_ISDIR(st.st_mode):
                return None
    finally:
        os.close(root)
    try:
        image = store.get_image(value["image"])
    except NotFoundError:
        return None
    return Replayed(image, tuple(value["steps"]), tuple(value["warnings"]))
