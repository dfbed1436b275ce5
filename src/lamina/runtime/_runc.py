"""Running one process under runc, and always cleaning up after it."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import IO, Any

from lamina.errors import ToolError
from lamina.runtime._spec import HOSTNAME_FILE, HOSTS_FILE, RESOLV_FILE

# Where output goes: an open file (or fd) receives it directly; a callable gets chunks.
Output = IO[bytes] | int | Callable[[bytes], None]

EXIT_NOT_INVOKABLE = 126
EXIT_NOT_FOUND = 127
_KILL_GRACE = 10.0
_HOST_RESOLV = Path("/etc/resolv.conf")
_FALLBACK_RESOLV = "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"


def runc_binary() -> str:
    """The runc to use: `$LAMINA_RUNC`, else the one on PATH."""
    found = os.environ.get("LAMINA_RUNC") or shutil.which("runc")
    if not found:
        raise ToolError("runc not found on PATH", hint="install runc (apt-get install runc)")
    return found


def _host_resolv() -> str:
    try:
        text = _HOST_RESOLV.read_text()
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


def write_bundle(bundle_dir: Path, rootfs: Path, config: dict[str, Any]) -> Path:
    """Write config.json (its root path set to `rootfs`), hosts and resolv.conf into
    `bundle_dir`; return the config's path."""
    bundle_dir.mkdir(parents=True, exist_ok=True)
    hostname = str(config.get("hostname") or "localhost")
    (bundle_dir / HOSTS_FILE).write_text(hosts_file(hostname))
    (bundle_dir / HOSTNAME_FILE).write_text(hostname + "\n")
    (bundle_dir / RESOLV_FILE).write_text(_host_resolv())
    config = copy.deepcopy(config)
    config["root"] = {**config.get("root", {}), "path": str(rootfs.absolute())}
    path = bundle_dir / "config.json"
    path.write_text(json.dumps(config, indent=1))
    return path


def _runc(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [runc_binary(), "--root", str(state_dir), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def _destroy(state_dir: Path, cid: str, proc: subprocess.Popen[bytes]) -> None:
    _runc(state_dir, "kill", cid, "KILL")
    try:
        proc.wait(_KILL_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _pump(stream: IO[bytes], sink: Callable[[bytes], None], errors: list[BaseException]) -> None:
    with stream:
        while chunk := os.read(stream.fileno(), 65536):
            if errors:
                continue  # keep draining: a full pipe would block the container forever
            try:
                sink(chunk)
            except BaseException as e:
                errors.append(e)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into SystemExit(143) for the block, so cleanup runs as for Ctrl-C (a
    container, a build); only from the main thread and only when nobody else handles it."""
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


def runc_failure(log: Path) -> str | None:
    """The error runc itself reported (not the process), from its JSON log."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            entry = json.loads(line)
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


def run(
    bundle_dir: Path,
    rootfs: Path,
    config: dict[str, Any],
    *,
    state_dir: Path,
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
    """
    cid = "lamina-" + secrets.token_hex(8)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_bundle(bundle_dir, rootfs, config)
    log = bundle_dir / "runc.log"
    log.unlink(missing_ok=True)
    argv = [
        runc_binary(),
        "--root",
        str(state_dir),
        "--log",
        str(log),
        "--log-format",
        "json",
        "run",
        "--bundle",
        str(bundle_dir),
        cid,
    ]
    pumps: list[threading.Thread] = []
    sink_errors: list[BaseException] = []
    with sigterm_raises():
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=subprocess.PIPE if callable(stdout) else stdout,
            stderr=subprocess.PIPE if callable(stderr) else stderr,
            # Its own session: a terminal's Ctrl-C reaches lamina, which then kills in order.
            start_new_session=True,
        )
        try:
            for stream, sink in ((proc.stdout, stdout), (proc.stderr, stderr)):
                if stream is not None and callable(sink):
                    t = threading.Thread(
                        target=_pump, args=(stream, sink, sink_errors), daemon=True
                    )
                    t.start()
                    pumps.append(t)
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _destroy(state_dir, cid, proc)
                msg = f"container {cid}: still running after {timeout} s; killed"
                raise ToolError(msg) from None
            except BaseException:
                _destroy(state_dir, cid, proc)
                raise
        finally:
            for t in pumps:
                t.join(_KILL_GRACE)
            # `runc run` deletes a container whose process exited; only a killed one remains.
            if (state_dir / cid).exists():
                _runc(state_dir, "delete", "--force", cid)
    if sink_errors:
        raise sink_errors[0]
    failure = runc_failure(log)
    if code != 0 and failure is not None:
        mapped = exit_code_for_runc_error(failure)
        if mapped is None:
            raise ToolError(f"runc: {failure}")
        return mapped
    return code
