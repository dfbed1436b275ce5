"""The monitor: one small process per started container that outlives the lamina command.

It is lamina's equivalent of conmon. `spawn_monitor` forks twice (a new session, so no
terminal signal reaches it and the command may exit at once, as `run -d` does); the
monitor then

1. records itself (`monitor.json`: pid and start time) in the container's directory,
2. becomes a child subreaper and runs ``runc run --detach`` (process stdio: pipes it
   reads, or a pty whose master runc hands over through ``console.sock``),
3. tells the command "started" through a pipe, copies the process' output into the
   container's log (``lamina.runtime._logs``, CRI format) and to the command's own
   stdout/stderr while it is attached, and relays a terminal's input,
4. reaps the process, deletes it from runc, unmounts the container's rootfs, writes
   ``exit.json`` (exit code, time, error) by write-and-rename, tells the command the exit
   code, closes the command's fds and execs `then` (a fresh process that folds the status
   into the metadata db: SQLite must not be used in a forked copy of a process that had
   it open).

A command killed at any moment therefore loses neither output nor exit status; a monitor
killed at any moment leaves `monitor.json` naming a dead process, which the next command
notices (`lamina.runtime.alive`) and cleans up after.

`supervise` does steps 2-4 in the calling process instead, for a container nobody needs
after the command (`run --rm` in the foreground, no terminal): its status goes to the
command that waits for it and its record goes with it, so a monitor that outlives the command
would keep nothing. There is no `monitor.json`: the container's record names the command as
its owner, and a running container whose owner is gone and which has no monitor is one the
next command stops and removes (`lamina.api`'s `refresh`).
"""

from __future__ import annotations

import errno
import os
import select
import time

from lamina import _lightctx as contextlib
from lamina._lightjson import dumps, loads
from lamina.runtime._logs import LOG_FILE, LogWriter
from lamina.runtime._owner import Owner, current_owner
from lamina.runtime._runc import (
    _PR_SET_CHILD_SUBREAPER,
    delete_stopped,
    exit_code_for_runc_error,
    runc_binary,
    runc_failure,
    subreaper,
)

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Sequence
    from typing import Any, NamedTuple

    from lamina._paths import StrPath
else:
    from lamina._frozen import NamedTuple

MONITOR_FILE = "monitor.json"
EXIT_FILE = "exit.json"
EXIT_LAMINA_FAILED = 125
# runc dials the console socket after changing to the bundle dir: the name is relative to it
# (a full path could pass the 108-byte limit of a socket address).
_CONSOLE_SOCKET = "console.sock"
# runc's state.json of each container this process started (read once, when it started).
_runc_states: dict[str, dict[str, Any]] = {}


class MonitorSpec(NamedTuple):
    """What one start of a container needs. Paths are absolute."""

    container_dir: StrPath
    bundle_dir: StrPath
    state_dir: StrPath  # runc's --root
    runc_id: str
    rootfs: StrPath  # the mounted rootfs, unmounted once the process has exited
    tty: bool = False
    stdin: int | None = None  # the command's fds while attached (None: /dev/null, not shown)
    stdout: int | None = None
    stderr: int | None = None
    # exit.json fsynced: a --rm container's is not (whoever reads it removes the container).
    durable_exit: bool = True


class ExitStatus(NamedTuple):
    """How a start ended: `started` false when runc could not start the process at all."""

    code: int
    finished: float
    started: bool
    error: str | None = None


def read_exit(container_dir: StrPath) -> ExitStatus | None:
    try:
        with open(os.path.join(container_dir, EXIT_FILE)) as f:
            doc = loads(f.read())
        return ExitStatus(
            int(doc["code"]), float(doc["finished"]), bool(doc["started"]), doc.get("error")
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_monitor(container_dir: StrPath) -> Owner | None:
    try:
        with open(os.path.join(container_dir, MONITOR_FILE)) as f:
            doc = loads(f.read())
        return Owner(int(doc["pid"]), int(doc["start"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_json(path: str, doc: object, *, durable: bool = True) -> None:
    """Write-and-rename: readers see the whole document or none. `durable` also fsyncs it
    (the exit status must survive a power loss; the monitor's pid need not, since no process
    survives one)."""
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.tmp")
    with open(tmp, "w") as f:
        f.write(dumps(doc))
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.rename(tmp, path)


class Started:
    """The command's end of the monitor's pipe: 'started', then the exit code."""

    def __init__(self, fd: int, monitor_pid: int) -> None:
        self._file = os.fdopen(fd, "rb")
        self.monitor_pid = monitor_pid

    def wait_started(self) -> tuple[bool, int | None, str | None]:
        """(started, exit code if it ended already, error). A dead monitor reads as ended."""
        line = self._file.readline().decode("utf-8", "replace").rstrip("\n")
        if line.startswith("started"):
            return True, None, None
        return self._ended(line)

    def wait_exit(self) -> tuple[bool, int | None, str | None]:
        line = self._file.readline().decode("utf-8", "replace").rstrip("\n")
        return self._ended(line)

    @staticmethod
    def _ended(line: str) -> tuple[bool, int | None, str | None]:
        if not line.startswith("exit "):
            return False, None, "the container's monitor died"
        _, code, *rest = line.split(" ", 2)
        return False, int(code), (rest[0] if rest and rest[0] else None)

    def close(self) -> None:
        self._file.close()


def spawn_monitor(spec: MonitorSpec, then: Sequence[str] | None = None) -> Started:
    """Start a monitor for `spec` (see the module doc) and return the pipe it reports on.

    Call it with no other thread running: the monitor is a fork of this process.
    """
    import gc

    r, w = os.pipe()
    parent = os.getpid()
    # The monitor never collects what it inherits: frozen, those objects are not walked
    # by its garbage collector, whose writes would copy the parent's pages one by one.
    gc.freeze()
    try:
        pid = os.fork()
    finally:
        if os.getpid() == parent:
            gc.unfreeze()
    if pid == 0:  # pragma: no cover - runs in the forked child
        try:
            os.close(r)
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            _serve(spec, w, then)
        except BaseException:
            pass
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    started = Started(r, 0)
    # The grandchild records itself (monitor.json) first thing, then says its pid here: the
    # command blocks on the pipe instead of polling for the file. EOF: it died first.
    line = started._file.readline().decode("ascii", "replace")
    if line.startswith("pid "):
        started.monitor_pid = int(line.split()[1])
    return started


def supervise(
    spec: MonitorSpec,
    on_started: Callable[[int], None] | None = None,
    then: Callable[[], None] | None = None,
) -> ExitStatus:
    """Run the container of `spec` under this process, as its monitor would, and return how
    it ended (see the module doc: for a container nobody needs once the command is done).

    The process' output goes to the log and to `spec.stdout` / `spec.stderr`;
    `on_started(pid)` is called once it runs (a signal proxy then knows where to send). It
    returns once the process has exited and been reaped, its runc state deleted and the
    rootfs unmounted; interrupted, it kills the container first. No `monitor.json` is written
    (the caller's record names it as the owner); `exit.json` is, unsynced, so that a `wait` or
    `stop` of another command learns the status before the caller removes the container.

    `then()`, when the process ended normally, runs once the rootfs is unmounted and
    `exit.json` written, while a thread deletes the runc state (cgroups: a dozen rmdirs on a
    cgroup v1 host) beside it; supervise returns when both are done. (For the caller's own
    clean-up of the container's files: the two have nothing in common.)
    """
    if spec.tty:
        raise ValueError("a terminal's console socket needs the monitor process")
    log_fd = os.open(os.path.join(spec.container_dir, LOG_FILE),
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)  # fmt: skip
    started, code, error = False, EXIT_LAMINA_FAILED, None
    # (Counted with a build's RUN steps that may run in this process at the same time.)
    deleting: Callable[[], bool] | None = None
    with subreaper():
        try:
            started, code, error = _run(spec, LogWriter(log_fd), None, on_started)
        finally:
            os.close(log_fd)
            deleting = _finish(spec, started, beside=then is not None)
    result = ExitStatus(code, time.time(), started, error)
    with contextlib.suppress(OSError):
        _write_json(os.path.join(spec.container_dir, EXIT_FILE), result._asdict(), durable=False)
    try:
        if then is not None:
            then()
    finally:
        if deleting is not None and not deleting():
            _force_delete(spec)
    return result


def _finish(spec: MonitorSpec, reaped: bool, beside: bool = False) -> Callable[[], bool] | None:
    """After the process: its runc state deleted (the container killed first if it still
    runs: `runc delete --force`), the rootfs unmounted. `beside`: once every process of the
    container is reaped, the state is deleted by a thread while this goes on; the returned
    call waits for it (False: the caller runs `runc delete --force`)."""
    deleting = None
    state = _runc_states.pop(spec.runc_id, None)
    if reaped and _all_reaped():
        if beside:
            deleting = _in_thread(delete_stopped, spec.state_dir, spec.runc_id, state)
        elif not delete_stopped(spec.state_dir, spec.runc_id, state):
            _force_delete(spec)
    else:
        _force_delete(spec)
    with contextlib.suppress(BaseException):
        from lamina.snapshots import unmount

        unmount(spec.rootfs)
    return deleting


def _in_thread(call: Callable[..., bool], *args: object) -> Callable[[], bool]:
    """Start `call(*args)` on a thread (`_thread`: `threading` costs every `lamina run`
    milliseconds to load); the returned function waits for it and gives its result (False
    if it raised)."""
    from _thread import allocate_lock, start_new_thread

    done = allocate_lock()
    done.acquire()
    result = [False]

    def work() -> None:
        try:
            result[0] = call(*args)
        except BaseException:
            result[0] = False
        finally:
            done.release()

    start_new_thread(work, ())

    def wait() -> bool:
        with done:
            return result[0]

    return wait


def _force_delete(spec: MonitorSpec) -> None:
    with contextlib.suppress(BaseException):
        import subprocess

        subprocess.run(_runc_delete(spec), capture_output=True, check=False)


def _isolate_fds(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        if fd not in keep:
            os.dup2(null, fd)
    if null not in keep and null > 2:
        os.close(null)


def _say(fd: int | None, text: str) -> None:
    if fd is None:
        return
    with contextlib.suppress(OSError):
        os.write(fd, text.encode())


def _serve(spec: MonitorSpec, status: int, then: Sequence[str] | None) -> None:
    import gc
    import signal

    gc.enable()  # (a `lamina run` turns it off for its own short life)
    client = {spec.stdin, spec.stdout, spec.stderr} - {None}
    _isolate_fds({status, *(fd for fd in client if fd is not None)})
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_IGN)
    from lamina import _libc as libc

    # The reaper of its orphaned descendants: `runc run --detach` exits once the container's
    # process runs, which then becomes this monitor's child.
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1)
    os.chdir(spec.container_dir)
    owner = current_owner()
    _write_json(os.path.join(spec.container_dir, MONITOR_FILE),
                {"pid": owner.pid, "start": owner.start},
                durable=False)  # fmt: skip
    _say(status, f"pid {owner.pid}\n")
    log_fd = os.open(os.path.join(spec.container_dir, LOG_FILE),
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # fmt: skip
    log = LogWriter(log_fd)
    started, code, error = False, EXIT_LAMINA_FAILED, None
    try:
        started, code, error = _run(spec, log, status)
    except BaseException as e:
        error = error or f"monitor: {e}"
    finally:
        _finish(spec, started)
        result = ExitStatus(code, time.time(), started, error)
        with contextlib.suppress(BaseException):
            _write_json(os.path.join(spec.container_dir, EXIT_FILE), result._asdict(),
                        durable=spec.durable_exit)  # fmt: skip
        _say(status, f"exit {code} {(error or '').replace(chr(10), ' ')}\n")
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (status, *client):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.dup2(null, fd) if fd <= 2 else os.close(fd)
        if then:
            with contextlib.suppress(BaseException):
                os.execv(then[0], list(then))


def _runc_delete(spec: MonitorSpec) -> list[str]:
    return [runc_binary(), "--root", os.fspath(spec.state_dir), "delete", "--force", spec.runc_id]


def _all_reaped() -> bool:
    """Whether nothing of the container runs any more (its init was reaped): its other
    processes, reparented to this subreaper, are reaped here. Then `delete_stopped` does
    what `runc delete` would (a stopped container, no hooks), without starting runc again;
    False: something still runs, and `runc delete --force` kills and deletes it."""
    try:
        while True:
            got, _ = os.waitpid(-1, os.WNOHANG)
            if got == 0:
                return False
    except ChildProcessError:
        pass
    return True


def _runc_args(spec: MonitorSpec, *args: str) -> list[str]:
    return [runc_binary(), "--root", os.fspath(spec.state_dir), "--log",
            os.path.join(spec.container_dir, "runc.log"), "--log-format", "json",
            *args]  # fmt: skip


def _run(
    spec: MonitorSpec,
    log: LogWriter,
    status: int | None,
    on_started: Callable[[int], None] | None = None,
) -> tuple[bool, int, str | None]:
    """Start the process with runc, pass its output on, reap it: (started, exit code, error).
    Interrupted once the process runs, it kills it (and reaps it) before the exception goes on."""
    d = spec.container_dir
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    console: socket.socket | None = None
    pipes: dict[int, str] = {}
    child_ends: list[int] = []
    if spec.tty:
        import socket  # only a terminal's master comes through a socket

        here = os.path.relpath(os.path.join(spec.bundle_dir, _CONSOLE_SOCKET))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(here)
        console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        console.bind(here)
        console.listen(1)
        stdio = (null, null, null)
        extra = ["--console-socket", _CONSOLE_SOCKET]
    else:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        pipes = {out_r: "stdout", err_r: "stderr"}
        child_ends = [out_w, err_w]
        stdio = (spec.stdin if spec.stdin is not None else null, out_w, err_w)
        extra = []
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(d, "runc.log"))
    # `run --detach` is create + start in one runc process: the container's init becomes
    # this subreaper's child, its stdio the fds given here (or the pty runc hands over).
    try:
        returncode = _spawn_wait(
            _runc_args(spec, "run", "--detach", "--bundle", os.fspath(spec.bundle_dir),
                       *extra, spec.runc_id),
            stdio,
        )  # fmt: skip
    finally:
        for fd in (*child_ends, null):
            os.close(fd)
    if returncode != 0:
        for fd in pipes:
            os.close(fd)
        failure = runc_failure(os.path.join(d, "runc.log")) or f"runc run exited {returncode}"
        mapped = exit_code_for_runc_error(failure)
        return False, mapped if mapped is not None else EXIT_LAMINA_FAILED, failure
    master: int | None = None
    if console is not None:
        import socket

        console.settimeout(10)
        conn, _ = console.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        master = fds[0]
        console.close()
        os.unlink(here)
        _copy_winsize(spec.stdout if spec.stdout is not None else spec.stdin, master)
        pipes = {master: "stdout"}
    # `pid` appears once runc has started the process: a command that finds no `pid` beside
    # a live monitor waits for it. The pid is runc's state's (which the clean-up reads for
    # the cgroups anyway), not a `--pid-file`: runc writes that with O_SYNC, a wait for the
    # disk in every start.
    with open(os.path.join(spec.state_dir, spec.runc_id, "state.json")) as f:
        state = loads(f.read())
    pid = int(state["init_process_pid"])
    _runc_states[spec.runc_id] = state
    tmp = os.path.join(d, ".pid.tmp")
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, os.path.join(d, "pid"))
    try:
        _say(status, f"started {pid}\n")
        if on_started is not None:
            on_started(pid)
        _pump(spec, log, pipes, master)
    except BaseException:
        with contextlib.suppress(OSError):
            os.kill(pid, 9)  # SIGKILL
        _reap(pid)
        raise
    return True, _reap(pid), None


def _spawn_wait(argv: list[str], stdio: tuple[int, int, int]) -> int:
    """Run `argv` with `stdio` as its fds 0, 1 and 2 (every other fd of this process is
    close-on-exec); its exit code. What `subprocess.run` does here, through posix_spawn
    (vfork + exec) and without loading `subprocess` into every `lamina run`."""
    import _signal  # type: ignore[import-not-found]  # (no stubs: `signal`'s C half)

    actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(stdio)]
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions,
                         setsigdef=(_signal.SIGPIPE, _signal.SIGXFSZ))  # fmt: skip
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _copy_winsize(source: int | None, master: int) -> None:
    if source is None:
        return
    import fcntl
    import struct
    import termios

    with contextlib.suppress(OSError):
        size = fcntl.ioctl(source, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)


def write_all(fd: int, data: bytes) -> bool:
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        return False
    return True


def _pump(spec: MonitorSpec, log: LogWriter, pipes: dict[int, str], master: int | None) -> None:
    # poll(2) directly: `selectors` (and the modules it loads) would cost every `lamina run`.
    poller = select.poll()
    for fd in pipes:
        poller.register(fd, select.POLLIN)
    targets = {"stdout": spec.stdout, "stderr": spec.stderr if not spec.tty else spec.stdout}
    relay_in = spec.stdin if (master is not None and spec.stdin is not None) else None
    if relay_in is not None:
        poller.register(relay_in, select.POLLIN)
    open_outputs = set(pipes)
    while open_outputs:
        for fd, _ in poller.poll():
            try:
                chunk = os.read(fd, 65536)
            except OSError as e:
                if e.errno != errno.EIO:  # a pty whose other side closed reads EIO
                    raise
                chunk = b""
            if fd == relay_in:
                if not chunk or master is None or not write_all(master, chunk):
                    poller.unregister(fd)
                    relay_in = None
                continue
            if not chunk:
                poller.unregister(fd)
                open_outputs.discard(fd)
                os.close(fd)
                continue
            stream = pipes[fd]
            log.write(stream, chunk)
            target = targets.get(stream)
            if target is not None and not write_all(target, chunk):
                targets[stream] = None  # the command went away: keep logging


def _reap(pid: int) -> int:
    """Wait for the container process (this monitor is its subreaper); its exit code as a
    shell reports it (128 + signal when killed)."""
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return EXIT_LAMINA_FAILED
        if got == pid:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code
