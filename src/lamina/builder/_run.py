"""RUN: the stage's snapshots as overlay lowerdirs plus a fresh upper dir, under runc.

The upper dir ends up holding exactly what the command changed (minus the mount-point
stubs runc made), so it is the step's layer and, renamed, its snapshot.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import os
import posixpath
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lamina.dockerfile import Mount as RunMount
from lamina.errors import InvalidInputError, NotFoundError
from lamina.layers import resolve_in_root
from lamina.runtime import (
    BindMount,
    Network,
    TmpfsMount,
    bundle_config,
    mount_targets,
    resolve_user,
    run,
)
from lamina.snapshots import clean_upper, find_stubs, mounted, overlay_mount

from ._options import StepFailedError

OUTPUT_TAIL_LINES = 20


@dataclass
class RunRequest:
    """Everything a RUN needs, resolved by the executor."""

    argv: list[str]
    env: list[str]
    cwd: str
    user: str
    lowerdirs: list[Path]  # bottom first
    network: Network
    mounts: Sequence[RunMount] = ()
    context_dir: Path | None = None
    stage_roots: dict[str, list[Path]] = field(default_factory=dict)  # from= → lowerdirs
    secrets: dict[str, Path] = field(default_factory=dict)


class OutputTail:
    """Keeps the last lines a command printed and passes each chunk on."""

    def __init__(self, sink: Callable[[bytes], None] | None) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=OUTPUT_TAIL_LINES)
        self._partial = b""
        self._sink = sink

    def __call__(self, chunk: bytes) -> None:
        if self._sink is not None:
            self._sink(chunk)
        data = self._partial + chunk
        *whole, self._partial = data.split(b"\n")
        for line in whole:
            self.lines.append(line.decode("utf-8", "replace"))

    def tail(self) -> list[str]:
        rest = [self._partial.decode("utf-8", "replace")] if self._partial else []
        return [*self.lines, *rest][-OUTPUT_TAIL_LINES:]


def cache_mount_dir(root: Path, m: RunMount) -> Path:
    ident = m.id or m.target or ""
    name = hashlib.sha256(ident.encode()).hexdigest()[:32]
    path = root / "cache-mounts" / name
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o755 if m.mode is None else m.mode)
        os.chown(path, m.uid or 0, m.gid or 0)
    return path


@contextlib.contextmanager
def _mounts(
    req: RunRequest, store_root: Path, scratch: Path
) -> Iterator[tuple[list[BindMount], list[TmpfsMount]]]:
    binds: list[BindMount] = []
    tmpfs: list[TmpfsMount] = []
    with contextlib.ExitStack() as stack:
        for n, m in enumerate(req.mounts):
            if m.type == "ssh":
                raise InvalidInputError("RUN --mount=type=ssh is not supported by lamina")
            if m.type == "secret":
                ident = m.id or posixpath.basename(m.target or "")
                src = req.secrets.get(ident)
                if src is None:
                    if m.required:
                        raise NotFoundError(f"secret {ident!r} was not given (--secret id=...)")
                    continue
                binds.append(BindMount(src, m.target or f"/run/secrets/{ident}", True))
                continue
            if m.target is None:
                raise InvalidInputError(f"RUN --mount=type={m.type} needs a target")
            if m.type == "tmpfs":
                tmpfs.append(TmpfsMount(m.target, m.size))
            elif m.type == "cache":
                path = cache_mount_dir(store_root, m)
                lock = stack.enter_context(open(path.parent / (path.name + ".lock"), "w"))
                if m.sharing == "private":
                    # In use by another step: this one gets a fresh dir of its own.
                    try:
                        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        path = scratch / f"cache-{n}"
                        path.mkdir()
                else:
                    # shared: any number at once; locked: one at a time, the rest wait.
                    fcntl.flock(lock, fcntl.LOCK_EX if m.sharing == "locked" else fcntl.LOCK_SH)
                binds.append(BindMount(path, m.target, False))
            elif m.type == "bind":
                if m.from_ is not None:
                    lowers = req.stage_roots[m.from_]
                    view = scratch / f"from-{n}"
                    view.mkdir()
                    stack.enter_context(mounted(overlay_mount(lowers[::-1] or [_empty(scratch)]),
                                                view))  # fmt: skip
                    base = view
                else:
                    if req.context_dir is None:
                        raise InvalidInputError("RUN --mount=type=bind needs a build context")
                    base = req.context_dir
                # Resolved with the source's root as `/`, as BuildKit does: an absolute
                # symlink in a --from image leads to that image's file, never the host's.
                resolved = resolve_in_root(base, m.source or ".")
                if resolved.missing:
                    raise NotFoundError(f"RUN --mount source {m.source!r} not found")
                source = resolved.host_path(base)
                if m.readonly is False:
                    # rw: the step may write, but into a scratch layer over the source that
                    # goes with the step; the context and snapshots stay as they were.
                    binds.append(BindMount(_writable_view(stack, Path(source), scratch, n),
                                           m.target, False))  # fmt: skip
                else:
                    binds.append(BindMount(Path(source), m.target, True))
        yield binds, tmpfs


def _writable_view(stack: contextlib.ExitStack, source: Path, scratch: Path, n: int) -> Path:
    """A copy-on-write view of `source` whose writes stay in `scratch`."""
    where = scratch / f"rw-{n}"
    where.mkdir()
    if not source.is_dir():
        copy = where / source.name
        shutil.copy2(source, copy)
        return copy
    upper, work, view = where / "upper", where / "work", where / "view"
    for d in (upper, work, view):
        d.mkdir()
    stack.enter_context(mounted(overlay_mount([source], upper, work), view))
    return view


def _empty(scratch: Path) -> Path:
    path = scratch / "empty"
    path.mkdir(exist_ok=True)
    return path


def run_step(
    req: RunRequest,
    *,
    store_root: Path,
    state_dir: Path,
    scratch: Path,
    what: str,
    where: str,
    output: Callable[[bytes], None] | None = None,
) -> Path:
    """Run `req` over its lowerdirs with `scratch/upper` as upper dir; return the upper dir,
    cleaned of mount stubs. `scratch` must be on the snapshots' file system; `state_dir` is
    runc's state dir (the build's own, so that an interrupted build can kill its containers)."""
    upper, work, merged, bundle = (scratch / n for n in ("upper", "work", "merged", "bundle"))
    for d in (upper, work, merged, bundle):
        d.mkdir()
    os.chmod(upper, 0o755)
    lowers = req.lowerdirs[::-1] or [_empty(scratch)]
    tail = OutputTail(output)
    with (
        mounted(overlay_mount(lowers, upper, work), merged),
        _mounts(req, store_root, scratch) as (binds, tmpfs),
    ):
        user = resolve_user(merged, req.user)
        config = bundle_config(
            req.argv, bundle_dir=bundle, env=req.env, cwd=req.cwd, user=user,
            network=req.network, binds=binds, tmpfs=tmpfs,
        )  # fmt: skip
        stubs = find_stubs(merged, mount_targets(config))
        code = run(bundle, merged, config, state_dir=state_dir,
                   stdout=tail, stderr=tail)  # fmt: skip
    if code != 0:
        raise StepFailedError(what, where, code, tail.tail())
    clean_upper(upper, stubs, lowers)
    shutil.rmtree(work, ignore_errors=True)
    return upper


def kill_containers(state_dir: Path) -> None:
    """Kill every container still running in `state_dir` (a build being interrupted: its
    RUN steps in other threads then fail fast and clean up after themselves)."""
    from lamina.runtime import runc_binary

    if not state_dir.is_dir():
        return
    runc = runc_binary()
    listed = subprocess.run([runc, "--root", str(state_dir), "list", "-q"],
                            capture_output=True, text=True, check=False)  # fmt: skip
    for cid in listed.stdout.split():
        subprocess.run([runc, "--root", str(state_dir), "kill", cid, "KILL"],
                       capture_output=True, check=False)  # fmt: skip
