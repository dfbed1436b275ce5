"""Running one process under runc, and always cleaning up after it."""

from __future__ import annotations

import os
import time
from _thread import allocate_lock

from lamina import _libc as libc
from lamina import _lightctx as contextlib
from lamina._lightjson import dumps, loads
from lamina._paths import absolute
from lamina.errors import ToolError
from lamina.runtime._spec import HOSTNAME_FILE, HOSTS_FILE, RESOLV_FILE

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    # Loaded where they are used: `lamina run` starts runc alone (no `subprocess`), waits
    # with poll(2) (no `selectors`) and finds runc without `shutil` (which loads the
    # compression modules).
    import subprocess
    from collections.abc import Callable, Iterator
    from types import FrameType
    from typing import IO, Any

    from lamina._paths import StrPath

# Where output goes: an open file (or fd) receives it directly; a callable gets chunks.
if TYPE_CHECKING:
    Output = IO[bytes] | int | Callable[[bytes], None]
else:
    Output = object  # (an alias for annotations; no `typing` at run time)

EXIT_NOT_INVOKABLE = 126
EXIT_NOT_FOUND = 127
_KILL_GRACE = 10.0
_HOST_RESOLV = "/etc/resolv.conf"
_FALLBACK_RESOLV = "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"


def runc_binary() -> str:
    """The runc to use: `$LAMINA_RUNC`, else the one on PATH."""
    found = os.environ.get("LAMINA_RUNC") or _which("runc")
    if not found:
        raise ToolError("runc not found on PATH", hint="install runc (apt-get install runc)")
    return found


def _which(name: str) -> str | None:
    """`shutil.which(name)` for a bare name: the first executable file of that name on PATH."""
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(directory, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _host_resolv() -> str:
    try:
        with open(_HOST_RESOLV) as f:
            text = f.read()
    except OSError:
        return _FALLBACK_RESOLV
    # A resolver on the host's loopback is unreachable from a container's own network.
    usable = [
        line
        for line in text.splitlines()
        if not (line.startswith("nameserver") and " 127." in line.replace("\t", " "))
    ]
    if not any(line.startswith("nameserver") for line in usable):
        usable.append(_FALLBACK_RESOLV.rstrip("\n"))
    return "\n".join(usable) + "\n"


def hosts_file(hostname: str) -> str:
    """Docker's /etc/hosts for a container: the localhost lines, then its own name."""
    return (
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\n"
        "ff00::0\tip6-mcastprefix\n"
        "ff02::1\tip6-allnodes\n"
        "ff02::2\tip6-allrouters\n"
        f"127.0.1.1\t{hostname}\n"
    )


def write_bundle(bundle_dir: StrPath, rootfs: StrPath, config: dict[str, Any]) -> str:
    """Write config.json (its root path set to `rootfs`), hosts and resolv.conf into
    `bundle_dir`; return the config's path."""
    os.makedirs(bundle_dir, exist_ok=True)
    hostname = str(config.get("hostname") or "localhost")
    root = absolute(rootfs)
    config = {**config, "root": {**config.get("root", {}), "path": root}}
    for name, text in ((HOSTS_FILE, hosts_file(hostname)), (HOSTNAME_FILE, hostname + "\n"),
                       (RESOLV_FILE, _host_resolv()), ("config.json", dumps(config))):
        with open(os.path.join(bundle_dir, name), "w") as f:
            f.write(text)
    return os.path.join(bundle_dir, "config.json")


def _runc(state_dir: StrPath, *args: str) -> subprocess.CompletedProcess[str]:
    import subprocess

    return subprocess.run(
        [runc_binary(), "--root", os.fspath(state_dir), *args],
        capture_output=True,
        text=True,
        check=False,
    )


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into SystemExit(143) for the block, so cleanup runs as for Ctrl-C (a
    container, a build); only from the main thread and only when nobody else handles it."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def runc_failure(log: StrPath) -> str | None:
    """The error runc itself reported (not the process), from its JSON log."""
    try:
        with open(log, errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            entry = loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
            return str(entry.get("msg", ""))
    return None


def exit_code_for_runc_error(message: str) -> int | None:
    """Docker's exit code for a process runc could not start: 127 not found, 126 not
    invokable; None when the failure was something else (lamina's or runc's own)."""
    if "exec:" not in message and "exec " not in message:
        return None
    if "executable file not found" in message or "no such file or directory" in message:
        return EXIT_NOT_FOUND
    if (
        "permission denied" in message
        or "exec format error" in message
        or "is a directory" in message
    ):
        return EXIT_NOT_INVOKABLE
    return None


_PR_SET_CHILD_SUBREAPER = 36
_subreaper_lock = allocate_lock()
_subreaper_users = 0


@contextlib.contextmanager
def subreaper() -> Iterator[None]:
    """This process adopts its orphaned descendants for the block (counted: RUN steps of
    parallel stages overlap). `runc run --detach` exits once the container's process runs:
    that process becomes this one's child, to be waited for like any other."""
    global _subreaper_users
    with _subreaper_lock:
        if _subreaper_users == 0:
            libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        _subreaper_users += 1
    try:
        yield
    finally:
        with _subreaper_lock:
            _subreaper_users -= 1
            if _subreaper_users == 0:
                libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def delete_stopped(state_dir: StrPath, cid: str, doc: dict[str, Any] | None = None) -> bool:
    """What `runc delete` does for a container whose process has exited and been reaped (no
    hooks): remove its cgroups and its state dir, without starting runc. False when anything
    is not as expected; the caller then runs `runc delete --force`. (`doc`: its state.json,
    read already.)"""
    state = os.path.join(state_dir, cid)
    try:
        if doc is None:
            with open(os.path.join(state, "state.json")) as f:
                doc = loads(f.read())
        paths = doc.get("cgroup_paths") or {}
        for path in sorted(set(paths.values()), key=len, reverse=True):
            if not str(path).startswith("/sys/fs/cgroup/"):
                return False
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(path)
        for name in os.listdir(state):
            os.unlink(os.path.join(state, name))
        os.rmdir(state)
    except (OSError, ValueError, AttributeError):
        return False
    return True


def _fd_of(target: IO[bytes] | int) -> int:
    return target if isinstance(target, int) else target.fileno()


def _wait_pid(pid: int, deadline: float | None) -> int | None:
    """The exit code of child `pid` (128 + signal when killed); None past `deadline`."""
    while True:
        got, status = os.waitpid(pid, os.WNOHANG if deadline is not None else 0)
        if got == pid:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


def _drain(pipes: dict[int, Callable[[bytes], None]], deadline: float | None) -> list[Exception]:
    """Pass what the pipes carry to their sinks until every one is closed; a sink that fails
    stops receiving, but its pipe is still drained (a full pipe would block the container).
    Raises TimeoutError past `deadline`."""
    import selectors

    errors: list[Exception] = []
    with selectors.DefaultSelector() as sel:
        for fd in pipes:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = sel.select(left)
            if not ready and deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError
            for key, _ in ready:
                fd = int(key.fd)
                chunk = os.read(fd, 65536)
                if not chunk:
                    sel.unregister(fd)
                    continue
                if errors:
                    continue
                try:
                    pipes[fd](chunk)
                except Exception as e:  # Ctrl-C and SIGTERM (BaseException) go on: kill
                    errors.append(e)
    return errors


def run(
    bundle_dir: StrPath,
    rootfs: StrPath,
    config: dict[str, Any],
    *,
    state_dir: StrPath,
    stdout: Output,
    stderr: Output,
    stdin: IO[bytes] | int | None = None,
    timeout: float | None = None,
) -> int:
    """Run the process `config` describes on `rootfs` under runc; return its exit code.

    The container gets a unique id in runc's state dir `state_dir` (lamina's own, not runc's
    default) and is always deleted afterwards. An exit code is the process' own, or 127 / 126
    when its command is not found / cannot be invoked. Interrupted (KeyboardInterrupt, SIGTERM
    as SystemExit(143)) or past `timeout` seconds, the container is killed and deleted first,
    then the exception propagates (ToolError for the timeout). Any other runc failure is a
    ToolError with runc's message.

    The process is started as containers are (`runc run --detach`, this process its
    subreaper) and writes to the given fds itself: `stderr=subprocess.STDOUT` puts fds 1
    and 2 on one pipe, so a callable sink gets the output in the order it was written
    (foreground `runc run` copies each stream with its own goroutine, which can swap lines).
    """
    import subprocess

    cid = "lamina-" + os.urandom(8).hex()
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    write_bundle(bundle_dir, rootfs, config)
    log = os.path.join(bundle_dir, "runc.log")
    pid_file = os.path.join(bundle_dir, "runc.pid")
    for stale in (log, pid_file):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)
    argv = [runc_binary(), "--root", os.fspath(state_dir), "--log", log, "--log-format", "json",
            "run", "--detach", "--pid-file", pid_file, "--bundle", os.fspath(bundle_dir),
            cid]  # fmt: skip
    deadline = None if timeout is None else time.monotonic() + timeout
    pipes: dict[int, Callable[[bytes], None]] = {}
    ours: list[int] = []  # the write ends, closed once runc has handed them on

    def fd_for(target: Output) -> int:
        if not callable(target):
            return _fd_of(target)
        r, w = os.pipe()
        pipes[r] = target
        ours.append(w)
        return w

    pid: int | None = None
    code: int | None = None
    errors: list[Exception] = []
    with sigterm_raises(), subreaper():
        try:
            out_fd = fd_for(stdout)
            err_fd = out_fd if stderr == subprocess.STDOUT else fd_for(stderr)
            created = subprocess.run(
                argv, stdin=subprocess.DEVNULL if stdin is None else stdin, stdout=out_fd,
                stderr=err_fd, check=False,
                # Its own session: a terminal's Ctrl-C reaches lamina, which kills in order.
                start_new_session=True,
            )  # fmt: skip
            for w in ours:
                os.close(w)
            ours.clear()
            if created.returncode == 0:
                with open(pid_file) as f:
                    pid = int(f.read().strip())
            errors = _drain(pipes, deadline)
            if pid is not None:
                code = _wait_pid(pid, deadline)
                if code is None:
                    raise TimeoutError
        except TimeoutError:
            _kill(state_dir, cid, pid)
            msg = f"container {cid}: still running after {timeout} s; killed"
            raise ToolError(msg) from None
        except BaseException:
            _kill(state_dir, cid, pid)
            raise
        finally:
            for fd in (*ours, *pipes):
                with contextlib.suppress(OSError):
                    os.close(fd)
            if os.path.exists(os.path.join(state_dir, cid)) and not (code is not None
                                                   and delete_stopped(state_dir, cid)):  # fmt: skip
                _runc(state_dir, "delete", "--force", cid)
    if errors:
        raise errors[0]
    if code is None:
        failure = runc_failure(log) or f"runc run exited {created.returncode}"
        mapped = exit_code_for_runc_error(failure)
        if mapped is None:
            raise ToolError(f"runc: {failure}")
        return mapped
    return code


def _kill(state_dir: StrPath, cid: str, pid: int | None) -> None:
    """Kill the container and reap its process (if it got one)."""
    import signal

    _runc(state_dir, "kill", cid, "KILL")
    if pid is not None:
        with contextlib.suppress(ChildProcessError):
            if _wait_pid(pid, time.monotonic() + _KILL_GRACE) is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                _wait_pid(pid, None)
