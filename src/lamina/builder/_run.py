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
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lamina._rmtree import remove_tree
from lamina.dockerfile import IgnoreRules
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
from ._ssh import agent_proxy

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
    context_ignore: IgnoreRules | None = None  # .dockerignore: a context bind mount obeys it
    stage_roots: dict[str, list[Path]] = field(default_factory=dict)  # from= → lowerdirs
    secrets: dict[str, Path | bytes] = field(default_factory=dict)
    ssh: dict[str, Path] = field(default_factory=dict)  # id → ssh-agent socket
    insecure: bool = False  # RUN --security=insecure, allowed by the caller
    scripts: dict[str, str] = field(default_factory=dict)  # container path → executable text


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
        for n, (target, text) in enumerate(sorted(req.scripts.items())):
            # A `RUN <<EOF` whose body starts with #!: the body as an executable file.
            script = scratch / f"script-{n}"
            script.write_text(text)
            os.chmod(script, 0o755)
            binds.append(BindMount(script, target, True))
        for n, m in enumerate(req.mounts):
            if m.type not in ("bind", "cache", "tmpfs", "secret", "ssh"):
                raise InvalidInputError(f'RUN --mount: unsupported mount type "{m.type}"')
            if m.type == "ssh":
                ident = m.id or "default"
                agent = req.ssh.get(ident)
                if agent is None:
                    if m.required:
                        raise NotFoundError(
                            f"no SSH key {ident!r} forwarded from the client",
                            hint=f"give --ssh {ident}[=SOCKET]",
                        )
                    continue
                proxy = stack.enter_context(agent_proxy(agent, _secret_dir(stack), m))
                binds.append(BindMount(proxy, ssh_target(m), True))
                continue
            if m.type == "secret":
                ident = secret_id(m)
                value = req.secrets.get(ident)
                if value is None:
                    if m.required:
                        raise NotFoundError(
                            f"secret {ident}: not found", hint=f"give --secret id={ident},..."
                        )
                    continue
                if m.env and not m.target:
                    continue  # the value goes in as an environment variable only
                path = _secret_file(_secret_dir(stack), n, value, m)
                binds.append(BindMount(path, m.target or f"/run/secrets/{ident}", True))
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
                if m.source:
                    # A subpath of the cache; it may not lead out of it through a link
                    # (BuildKit's testCacheMountSourceEscape).
                    inner = os.path.realpath(os.path.join(path, m.source.lstrip("/")))
                    if inner != str(path) and not inner.startswith(str(path) + os.sep):
                        raise InvalidInputError(
                            f"cache mount source {m.source!r} leads out of the cache"
                        )
                    if not os.path.isdir(inner):
                        raise NotFoundError(f"cache mount source {m.source!r} does not exist")
                    path = Path(inner)
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
                lowers = [Path(source)]
                if m.from_ is None and req.context_ignore is not None:
                    lowers = _context_lowers(req.context_ignore, base, resolved.existing,
                                             m, scratch / f"mask-{n}")  # fmt: skip
                    if len(lowers) > 1 and m.readonly is not False:
                        view = scratch / f"ctx-{n}"
                        view.mkdir()
                        stack.enter_context(mounted(overlay_mount(lowers), view))
                        lowers = [view]
                if m.readonly is False:
                    # rw: the step may write, but into a scratch layer over the source that
                    # goes with the step; the context and snapshots stay as they were.
                    binds.append(BindMount(_writable_view(stack, lowers, scratch, n),
                                           m.target, False))  # fmt: skip
                else:
                    binds.append(BindMount(lowers[0], m.target, True))
        yield binds, tmpfs


def _context_lowers(ignore: IgnoreRules, context: Path, existing: Sequence[str], m: RunMount,
                    mask: Path) -> list[Path]:  # fmt: skip
    """The lower dirs (top first) that show the mounted part of the context as BuildKit
    sends it: without what .dockerignore leaves out (a mask of whiteouts over it)."""
    from ._ctxmask import context_mask

    rel = "/".join(existing)
    source = context.joinpath(*existing)
    if rel and ignore.ignored(rel) and (
        not source.is_dir() or source.is_symlink() or not ignore.has_exceptions
    ):
        raise NotFoundError(
            f"RUN --mount source {m.source!r} is excluded by {ignore.source}"
        )
    if not source.is_dir() or not context_mask(str(context), rel, ignore, str(mask)):
        return [source]
    return [mask, source]


def secret_id(m: RunMount) -> str:
    return m.id or posixpath.basename(m.target or "")


def ssh_target(m: RunMount) -> str:
    return m.target or "/run/buildkit/ssh_agent.0"


def secret_env(req: RunRequest) -> list[str]:
    """`--mount=type=secret,env=NAME`: NAME=value for each given secret (BuildKit's
    testSecretAsEnviron); SSH_AUTH_SOCK for the first ssh mount, as BuildKit sets it."""
    out: list[str] = []
    for m in req.mounts:
        if m.type == "secret" and m.env:
            value = req.secrets.get(secret_id(m))
            if value is None:
                continue
            data = value if isinstance(value, bytes) else _read_secret(value)
            out.append(f"{m.env}={data.decode('utf-8', 'surrogateescape')}")
    ssh = [m for m in req.mounts if m.type == "ssh" and (m.id or "default") in req.ssh]
    if ssh:
        out.append(f"SSH_AUTH_SOCK={ssh_target(ssh[0])}")
    return out


_MAX_SECRET = 500 * 1024  # BuildKit's limit on a secret's size


def _read_secret(path: Path) -> bytes:
    with open(path, "rb") as f:
        data = f.read(_MAX_SECRET + 1)
    if len(data) > _MAX_SECRET:
        raise InvalidInputError(f"secret {path}: larger than {_MAX_SECRET} bytes")
    return data


def _secret_dir(stack: contextlib.ExitStack) -> Path:
    """A private directory in memory (tmpfs) for this step's secrets, gone after it."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    path = Path(tempfile.mkdtemp(prefix="lamina-secrets-", dir=base))
    os.chmod(path, 0o700)
    stack.callback(remove_tree, path)
    return path


def _secret_file(where: Path, n: int, value: Path | bytes, m: RunMount) -> Path:
    """The secret as a file with the mount's mode/uid/gid (default 0400 root, as BuildKit:
    testSecretFileParams), never the user's own file chmodded."""
    data = value if isinstance(value, bytes) else _read_secret(value)
    path = where / f"secret-{n}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        os.fchown(fd, m.uid or 0, m.gid or 0)
        os.fchmod(fd, 0o400 if m.mode is None else m.mode)
    finally:
        os.close(fd)
    return path


def _writable_view(stack: contextlib.ExitStack, lowers: list[Path], scratch: Path,
                   n: int) -> Path:  # fmt: skip
    """A copy-on-write view of `lowers` (top first) whose writes stay in `scratch`."""
    where = scratch / f"rw-{n}"
    where.mkdir()
    source = lowers[0]
    if not source.is_dir():
        copy = where / source.name
        shutil.copy2(source, copy)
        return copy
    upper, work, view = where / "upper", where / "work", where / "view"
    for d in (upper, work, view):
        d.mkdir()
    stack.enter_context(mounted(overlay_mount(lowers, upper, work), view))
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
        # nodev: no device node in the image or made by the step opens anything.
        mounted(overlay_mount(lowers, upper, work, extra_options=("nodev",)), merged),
        _mounts(req, store_root, scratch) as (binds, tmpfs),
    ):
        user = resolve_user(merged, req.user)
        config = bundle_config(
            req.argv, bundle_dir=bundle, env=[*req.env, *secret_env(req)], cwd=req.cwd,
            user=user, network=req.network, binds=binds, tmpfs=tmpfs,
        )  # fmt: skip
        if req.insecure:
            _make_insecure(config)
        stubs = find_stubs(merged, mount_targets(config))
        # One pipe for both streams: the lines reach the log in the order they were written.
        code = run(bundle, merged, config, state_dir=state_dir,
                   stdout=tail, stderr=subprocess.STDOUT)  # fmt: skip
    if code != 0:
        raise StepFailedError(what, where, code, tail.tail(), req.argv)
    clean_upper(upper, stubs, lowers)
    remove_tree(work)
    return upper


def _make_insecure(config: dict[str, Any]) -> None:
    """RUN --security=insecure: every capability and no masked /proc paths, as BuildKit's
    insecure mode (testRunSecurityInsecure reads a full CapBnd)."""
    process = config.setdefault("process", {})
    caps = [f"CAP_{name}" for n, name in enumerate(_ALL_CAPS) if _bounding_set() >> n & 1]
    process["capabilities"] = {k: list(caps) for k in
                               ("bounding", "effective", "permitted", "inheritable")}  # fmt: skip
    process["noNewPrivileges"] = False
    linux = config.setdefault("linux", {})
    linux.pop("maskedPaths", None)
    linux.pop("readonlyPaths", None)
    linux.pop("seccomp", None)


# Capability numbers 0..40, in order (linux/capability.h).
_ALL_CAPS = (
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
)


def _bounding_set() -> int:
    """The capabilities lamina itself may hold (runc can grant no more)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    return 0


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
