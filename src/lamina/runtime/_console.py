"""A runc command's terminal, held by lamina: `run_with_console`.

Given `--tty` in the foreground, runc itself copies between the process' pseudo-terminal
and a terminal of its caller, and fails ("open /dev/tty: no such device or address") when
its caller has none: in a CI job, under a pipe. Docker does not need one there (`docker
exec -t` prints the process' terminal output wherever its stdout goes). So where none of
the command's stdio is a terminal, runc starts the process detached with
`--console-socket` (runc takes a console socket only when it detaches): it sends the
master side of the pty it made over that socket and exits; the process, orphaned, becomes
this process' child (a subreaper), lamina copies the master to its stdout (and its stdin
to the master, with `-i`) until the process' side closes, and reaps it for its status.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import subprocess

from lamina.errors import ToolError
from lamina.runtime._monitor import write_all
from lamina.runtime._runc import subreaper

_ACCEPT_TIMEOUT = 30.0


def run_with_console(argv: list[str], cwd: str, *, stdin: int | None, stdout: int) -> int:
    """Run `argv` (a foreground `runc exec` of a process with a terminal, the container's
    ID last) in `cwd`, detached with a console socket, copy the process' terminal to
    `stdout` (and `stdin`, when given, to it) and return its exit code (as a shell reports
    it: 128 + the signal that killed it); runc's own exit code when it failed to start it."""
    token = os.urandom(6).hex()
    name, pid_file = f"console-{token}.sock", f"exec-{token}.pid"
    # (Bound through the directory's fd: a socket path is at most 107 bytes, a store's
    # container directory can be longer. runc gets it relative to its working directory.)
    where = os.open(cwd, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(f"/proc/self/fd/{where}/{name}")
        listener.listen(1)
        with subreaper():
            proc = subprocess.Popen([*argv[:-1], "--detach", "--console-socket", name,
                                     "--pid-file", pid_file, argv[-1]], cwd=cwd,
                                    stdin=subprocess.DEVNULL)  # fmt: skip
            pid: int | None = None
            try:
                master = _receive_master(listener, proc)
                code = proc.wait()
                if master is None or code != 0:
                    if master is not None:
                        os.close(master)
                    return code
                with open(pid_file, "rb", opener=lambda p, f: os.open(p, f, dir_fd=where)) as f:
                    pid = int(f.read())
                with open(master, "rb", buffering=0, closefd=True) as pty:
                    _copy(pty.fileno(), stdin, stdout)
                _, status = os.waitpid(pid, 0)
                pid = None
                code = os.waitstatus_to_exitcode(status)
                return 128 - code if code < 0 else code
            except BaseException:
                proc.kill()
                proc.wait()
                if pid is not None:  # interrupted while it runs: it goes too
                    with contextlib.suppress(OSError):
                        os.kill(pid, 9)
                        os.waitpid(pid, 0)
                raise
    finally:
        listener.close()
        for leftover in (name, pid_file):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover, dir_fd=where)
        os.close(where)


def _receive_master(listener: socket.socket, proc: subprocess.Popen[bytes]) -> int | None:
    """The pty master runc sends, or None when runc ended without sending one (it failed
    before the process started: its exit code and log say why)."""
    deadline_polls = int(_ACCEPT_TIMEOUT / 0.05)
    for _ in range(deadline_polls):
        ready, _, _ = select.select([listener], [], [], 0.05)
        if ready:
            conn, _ = listener.accept()
            with conn:
                _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
            if not fds:
                raise ToolError("runc sent no terminal over its console socket")
            return fds[0]
        if proc.poll() is not None:
            return None
    raise ToolError(f"runc did not send the process' terminal within {_ACCEPT_TIMEOUT:g} s")


def _copy(master: int, stdin: int | None, stdout: int) -> None:
    """Master to `stdout` until the process' side is closed (EIO, or EOF), and `stdin` to
    the master meanwhile (until stdin ends)."""
    poller = select.poll()
    poller.register(master, select.POLLIN)
    if stdin is not None:
        poller.register(stdin, select.POLLIN)
    out_open = True
    while True:
        for fd, _ in poller.poll():
            if fd == master:
                try:
                    chunk = os.read(master, 65536)
                except OSError as e:
                    if e.errno != errno.EIO:
                        raise
                    chunk = b""
                if not chunk:
                    return
                if out_open and not write_all(stdout, chunk):
                    out_open = False  # keep reading: the process must not block
            else:
                data = os.read(fd, 65536)
                if not data:
                    poller.unregister(fd)
                    os.write(master, b"\x04")  # end of input, as a terminal's ^D
                    continue
                write_all(master, data)
