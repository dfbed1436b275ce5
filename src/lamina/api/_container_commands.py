"""The container commands besides `run`: ps and inspect, stop, kill, wait, restart, rm, prune,
logs, exec, diff and commit (`Containers`). What `lamina run` needs, creating, starting and
running a container and cleaning up after dead processes, is `ContainerRunner`'s
(`lamina.api._containers`), which `lamina run` loads alone: this module is the larger part of
the container code, and none of it runs there.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import stat
import time

from lamina._lightjson import dumps
from lamina.api._container_opts import (
    check_container_name,
    merge_env,
    parse_env_options,
    read_env_file,
)
from lamina.api._containers import _WAITING, ContainerExit, ContainerRunner, RunOptions
from lamina.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidInputError,
    LaminaError,
    NotFoundError,
)
from lamina.runtime import (
    EXIT_LAMINA_FAILED,
    LOG_FILE,
    LineJoiner,
    LogLine,
    alive,
    current_owner,
    exit_code_for_runc_error,
    parse_signal,
    read_exit,
    read_monitor,
    read_records,
    runc_binary,
    runc_failure,
)
from lamina.snapshots import mounted, overlay_mount, unmount
from lamina.store import ContainerRecord

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from typing import Any, NamedTuple

    from lamina._paths import StrPath
else:
    from lamina._frozen import NamedTuple

_DEFAULT_STOP_TIMEOUT = 10


class ContainerInfo(NamedTuple):
    """A container as `ps` and `inspect` show it."""

    id: str
    name: str
    image_id: str
    image_ref: str
    command: list[str]
    created: float
    status: str  # created, running, exited
    exit_code: int | None
    error: str | None
    started_at: float | None
    finished_at: float | None
    spec: dict[str, Any]
    pid: int | None


def _log_time_ns(stamp: str) -> int:
    """A log record's time (`2026-11-29T23:56:53.123456789Z`, as runtime's LogWriter
    writes it) in nanoseconds since the epoch."""
    import calendar  # only `logs --since/--until` need it, never `lamina run`

    whole, _, fraction = stamp.rstrip("Z").partition(".")
    fields = [int(x) for x in whole.replace("T", "-").replace(":", "-").split("-")]
    seconds = calendar.timegm((*fields, 0, 0, 0))
    return seconds * 1_000_000_000 + int((fraction + "000000000")[:9])


class Containers(ContainerRunner):
    """The container commands over one host (see `ContainerRunner`)."""

    def rename(self, ref: str, new_name: str) -> None:
        """`docker rename`, with moby's rules: a valid name (a leading `/` dropped), not the
        current one, not another container's."""
        if not ref or not new_name:
            raise InvalidInputError("Neither old nor new names may be empty")
        name = check_container_name(new_name)
        record = self.get(ref)
        if record.name == name:
            raise InvalidInputError("Renaming a container with the same name as its current name")
        try:
            self.lam.full().store.rename_container(record.id, name)
        except AlreadyExistsError:
            holder = self.store.get_container(name).id
            raise ConflictError(
                f'Conflict. The container name "/{name}" is already in use by container '
                f'"{holder}". You have to remove (or rename) that container to be able to '
                "reuse that name."
            ) from None

    def top(self, ref: str, ps_args: Sequence[str] = ()) -> str:
        """`docker top`: the container's processes as `ps` shows them (default `-ef`), run
        by `runc ps` over the container's cgroup."""
        record = self.refresh(self.get(ref))
        if record is None or record.state["status"] != "running":
            raise ConflictError(f"container {ref} is not running")
        done = self._runc("ps", record.id, *(ps_args or ("-ef",)))
        if done.returncode != 0:
            failure = done.stderr.strip().splitlines()
            raise InvalidInputError(f"ps: {failure[-1] if failure else 'failed'}")
        return done.stdout

    def create_container(self, opts: RunOptions) -> str:
        """`docker create`: the container made and recorded, ready to `start`; its ID. With
        `--rm` it goes once a start of it ends (its monitor's fold removes it)."""
        return self.create(opts, started_next=False).id

    def _info(self, record: ContainerRecord) -> ContainerInfo:
        s = record.state
        spec = s["spec"]
        pid = None
        if s["status"] == "running":
            with contextlib.suppress(OSError, ValueError), open(
                os.path.join(self._dir(record.id), "pid")
            ) as f:
                pid = int(f.read())
        return ContainerInfo(
            id=record.id, name=record.name, image_id=self._image_id(record.image),
            image_ref=spec["image_ref"], command=spec["entrypoint"] + spec["cmd"],
            created=record.created, status=s["status"], exit_code=s.get("exit_code"),
            error=s.get("error"), started_at=s.get("started_at"),
            finished_at=s.get("finished_at"), spec=spec, pid=pid,
        )  # fmt: skip

    def _image_id(self, digest: str) -> str:
        try:
            return self.store.get_image(digest).id
        except NotFoundError:
            return digest

    def list(self, all_: bool = False) -> builtins.list[ContainerInfo]:
        """Newest first; only running ones unless `all_`."""
        out = []
        for record in self.store.list_containers():
            fresh = self.refresh(record)
            if fresh is None or (not all_ and fresh.state["status"] != "running"):
                continue
            out.append(self._info(fresh))
        out.sort(key=lambda c: (c.created, c.id), reverse=True)
        return out

    def info(self, ref: str) -> ContainerInfo:
        record = self.refresh(self.get(ref))
        if record is None:
            raise NotFoundError(f"No such container: {ref}")
        return self._info(record)

    def rw_size(self, cid: str) -> int:
        """Bytes in the container's read-write layer (its files' sizes, as Docker's SizeRw)."""
        total = 0
        for top, _dirs, files in os.walk(os.path.join(self._dir(cid), "upper")):
            for name in files:
                with contextlib.suppress(OSError):
                    st = os.lstat(os.path.join(top, name))
                    if stat.S_ISREG(st.st_mode):
                        total += st.st_size
        return total

    # -- run ---------------------------------------------------------------------------

    def _wait_exit(self, cid: str, timeout: float | None) -> bool:
        d = self._dir(cid)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while True:
            if os.path.exists(os.path.join(d, "exit.json")) or not os.path.isdir(d):
                return True  # (no directory: the command that ran it in the foreground removed it)
            monitor = read_monitor(d)
            if monitor is not None and not alive(monitor):
                return True  # it will never come: `refresh` records what happened
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def stop(self, ref: str, timeout: int | None = None, signal: str | None = None) -> str:
        """The stop signal (`signal`, else the container's), then SIGKILL after `timeout`
        (the container's, else 10) s; a negative timeout waits for the exit and never kills
        (moby's). Stopping a container that is not running is not an error."""
        record = self.refresh(self.get(ref))
        if record is None or record.state["status"] != "running":
            return ref
        spec = record.state["spec"]
        if timeout is None:
            timeout = spec.get("stop_timeout")
        if timeout is None:
            timeout = _DEFAULT_STOP_TIMEOUT
        sig = parse_signal(signal or spec.get("stop_signal") or "SIGTERM")
        self._kill_runc(record.id, str(sig))
        if not self._wait_exit(record.id, None if timeout < 0 else float(timeout)):
            self._kill_runc(record.id, "KILL")
            self._wait_exit(record.id, 30.0)
        self._fold_now(record.id)
        return ref

    def kill(self, ref: str, signal: str = "KILL") -> str:
        number = parse_signal(signal)
        record = self.refresh(self.get(ref))
        if record is None or record.state["status"] != "running":
            raise ConflictError(f"cannot kill container {ref}: it is not running")
        if not self._kill_runc(record.id, str(number)):
            self._fold_now(record.id)
            raise ConflictError(f"cannot kill container {ref}: it is not running")
        return ref

    def wait(self, ref: str) -> int:
        record = self.get(ref)
        if record.state["status"] == "running":
            if record.state["spec"].get("autoremove"):
                # Its monitor's fold removes it, exit file and all, once it has exited: the
                # status is read as soon as the file is there (the fold starts a process).
                return self._await_exit_status(record.id)
            self._wait_exit(record.id, None)
        try:
            fresh = self.refresh(self.store.get_container(record.id))
        except NotFoundError:
            fresh = None
        if fresh is None:
            return 0
        code = fresh.state.get("exit_code")
        return int(code) if code is not None else 0

    def _await_exit_status(self, cid: str) -> int:
        d = self._dir(cid)
        mark = os.path.join(d, f"{_WAITING}{os.getpid()}")
        with contextlib.suppress(OSError):  # already gone: the loop below says so
            os.close(os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        try:
            return self._read_exit_status(cid, d)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(mark)

    def _read_exit_status(self, cid: str, d: str) -> int:
        while True:
            result = read_exit(d)
            if result is not None:
                return result.code
            if not os.path.exists(d):
                return 0  # removed before its status could be read
            if not self._wait_exit(cid, 0.0):
                time.sleep(0.005)
                continue
            result = read_exit(d)
            if result is not None:
                return result.code
            fresh = self.refresh(self.store.get_container(cid)) if self._exists(cid) else None
            code = fresh.state.get("exit_code") if fresh is not None else None
            return int(code) if code is not None else 0

    def restart(self, ref: str, timeout: int | None = None, signal: str | None = None) -> str:
        self.stop(ref, timeout, signal)
        _, started = self.start(ref)
        if started is not None:
            started.close()
        return ref

    # -- removal -----------------------------------------------------------------------

    def remove(self, ref: str, force: bool = False) -> str:
        """`docker rm`: with `force` a running container is killed first, and a missing one
        is not an error (the empty string: nothing to print for it)."""
        try:
            found = self.get(ref)
        except NotFoundError:
            if force:
                return ""
            raise
        record = self.refresh(found)
        if record is None:
            return ref
        if record.state["status"] == "running":
            if not force:
                raise ConflictError(
                    f"cannot remove container {ref}: container is running",
                    hint="stop the container before removing or use rm -f",
                )
            self._kill_runc(record.id, "KILL")
            self._wait_exit(record.id, 30.0)
            if self._supervised_elsewhere(record):
                self._await_removal(record.id, 30.0)
        self._remove_quietly(record.id)
        return ref

    def _await_removal(self, cid: str, timeout: float) -> None:
        """Until the command supervising `cid` has removed it (bounded: it may be stuck)."""
        deadline = time.monotonic() + timeout
        while self._exists(cid) and time.monotonic() < deadline:
            time.sleep(0.01)

    def prune(
        self, select: Callable[[ContainerRecord], bool] | None = None
    ) -> builtins.list[tuple[str, int]]:
        """Remove every container that is not running (`docker container prune`) and that
        `select` takes, when given: (ID, bytes of its read-write layer) of each."""
        gone = []
        for record in self.store.list_containers():
            fresh = self.refresh(record)
            if fresh is not None and fresh.state["status"] != "running" and (
                select is None or select(fresh)
            ):
                size = self.rw_size(fresh.id)
                self._destroy(fresh)
                gone.append((fresh.id, size))
        return gone

    # -- logs --------------------------------------------------------------------------

    def logs(
        self,
        ref: str,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: int | None = None,
        until: int | None = None,
    ) -> Iterator[LogLine]:
        """The container's output lines; `tail`: the last ones (a last line without its
        newline counts, as moby's json-file keeps it as a message of its own); `since`
        and `until` (nanoseconds since the epoch, both included, as moby's) keep the lines
        begun within them, after the tail is taken (moby's order)."""
        record = self.get(ref)
        path = os.path.join(self._dir(record.id), LOG_FILE)
        joiner = LineJoiner()
        if not os.path.exists(path):
            return
        with open(path, "rb") as f:
            lines: list[LogLine] = []
            for rec in read_records(f):
                line = joiner.feed(*rec)
                if line is not None:
                    lines.append(line)
            fresh = self.refresh(record) if follow else None
            finished = fresh is None or fresh.state["status"] != "running"
            if finished:  # nothing more comes: an unfinished last line is one too
                lines += joiner.rest()
            if tail is not None and tail >= 0:
                lines = lines[len(lines) - tail :] if tail else []
            if since is not None or until is not None:
                low, high = since or 0, until if until is not None else 1 << 80
                lines = [ln for ln in lines if low <= _log_time_ns(ln.time) <= high]
            yield from lines
            if finished or (until is not None and until <= time.time_ns()):
                return
            while True:
                got = False
                for rec in read_records(f):
                    got = True
                    line = joiner.feed(*rec)
                    if line is not None:
                        yield line
                if got:
                    continue
                fresh = self.refresh(self.store.get_container(record.id)) if self._exists(
                    record.id) else None  # fmt: skip
                if fresh is None or fresh.state["status"] != "running":
                    for rec in read_records(f):
                        line = joiner.feed(*rec)
                        if line is not None:
                            yield line
                    yield from joiner.rest()
                    return
                time.sleep(0.05)

    def _exists(self, cid: str) -> bool:
        try:
            self.store.get_container(cid)
        except NotFoundError:
            return False
        return True

    # -- exec --------------------------------------------------------------------------

    def exec(
        self,
        ref: str,
        command: Sequence[str],
        *,
        interactive: bool = False,
        tty: bool = False,
        user: str | None = None,
        env: Sequence[str] = (),
        workdir: str | None = None,
        detach: bool = False,
        host_env: dict[str, str] | None = None,
        env_files: Sequence[StrPath] = (),
    ) -> int:
        """Run another process in a running container; its exit code (127: not found).
        Its environment: the container's, then `env_files` in order, then `env` (moby's)."""
        if not command:
            raise InvalidInputError("exec needs a command")
        record = self.refresh(self.get(ref))
        if record is None or record.state["status"] != "running":
            raise ConflictError(f"container {ref} is not running")
        d = self._dir(record.id)
        spec = dict(record.state["spec"])
        if workdir is not None:
            if not workdir.startswith("/"):
                raise InvalidInputError(f"the working directory {workdir!r} is not absolute")
            spec["workdir"] = workdir
        if user is not None:
            from lamina.runtime import resolve_user_home

            resolved, home = resolve_user_home(os.path.join(d, "rootfs"), user)
            spec.update(uid=resolved.uid, gid=resolved.gid, groups=list(resolved.additional_gids),
                        home=home)  # fmt: skip
        host = host_env or dict(os.environ)
        spec["env"] = merge_env(spec["env"], *[read_env_file(f, host) for f in env_files],
                                parse_env_options(env, host))  # fmt: skip
        spec["tty"] = tty
        fake = ContainerRecord(record.id, record.name, record.image,
                               {**record.state, "spec": spec}, record.created)  # fmt: skip
        process = self._config(fake, exec_args=command)["process"]
        token = os.urandom(6).hex()
        process_file = os.path.join(d, f"exec-{token}.json")
        with open(process_file, "w") as f:
            f.write(dumps(process))
        log = os.path.join(d, f"exec-{token}.log")
        argv = [runc_binary(), "--root", str(self.state_dir), "--log", str(log),
                "--log-format", "json", "exec", "--process", str(process_file)]  # fmt: skip
        if tty:
            argv.append("--tty")
        if detach:
            argv.append("--detach")
        argv.append(record.id)
        import subprocess

        try:
            if tty and not detach and not any(os.isatty(fd) for fd in (0, 1, 2)):
                # No terminal here for runc to copy to: lamina holds the process' one.
                from lamina.runtime import run_with_console

                code = run_with_console(argv, d, stdin=0 if interactive else None, stdout=1)
            else:
                done = subprocess.run(argv, stdin=None if interactive else subprocess.DEVNULL,
                                      check=False)  # fmt: skip
                code = done.returncode
            if code != 0:
                failure = runc_failure(log)
                if failure is not None:
                    mapped = exit_code_for_runc_error(failure)
                    if mapped is None:
                        raise ContainerExit(f"runc: {failure}", EXIT_LAMINA_FAILED)
                    return mapped
            return code
        finally:
            for path in (process_file, log):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    # -- diff and commit ---------------------------------------------------------------

    @contextlib.contextmanager
    def _lower_view(self, record: ContainerRecord) -> Iterator[str]:
        """The image (and init layer) as mounted under the container's changes, read-only."""
        d = self._dir(record.id)
        view = os.path.join(d, "diff-view")
        with contextlib.suppress(LaminaError):
            unmount(view)
        with contextlib.suppress(FileExistsError):
            os.mkdir(view)
        image = self._image(record.image)
        lowers = [*self._init_lowers(record), *self._lowers(image)[::-1]]
        try:
            with mounted(overlay_mount(lowers), view, scratch=d):
                yield view
        finally:
            with contextlib.suppress(OSError):
                os.rmdir(view)

    def diff(self, ref: str) -> builtins.list[tuple[str, str]]:
        """Docker's `diff`: (kind, path) with kind A, C or D, a directory before its children."""
        from lamina.layers import ChangeKind, changes_from_overlay_upper

        record = self.get(ref)
        upper = os.path.join(self._dir(record.id), "upper")
        changes = changes_from_overlay_upper(upper)
        out: dict[str, str] = {}
        with self._lower_view(record) as view:
            for change in changes:
                path = "/" + change.path.strip("/")
                if change.kind is ChangeKind.DELETE:
                    out[path] = "D"
                elif change.kind is ChangeKind.ADD:
                    below = os.path.lexists(os.path.join(view, path.lstrip("/")))
                    out[path] = "C" if below else "A"
        return sorted(((k, p) for p, k in out.items()), key=lambda kp: kp[1].split("/"))

    def commit(
        self,
        ref: str,
        reference: str | None = None,
        *,
        message: str = "",
        author: str = "",
        changes: Sequence[str] = (),
        pause: bool = True,
    ) -> str:
        """`docker commit`: the read-write layer becomes one new layer over the image's;
        the config is the container's with `changes` applied. Returns the image ID."""
        from lamina.api._instructions import apply_changes, check_change_commands
        from lamina.api._lamina import normalize_tag
        from lamina.builder import layer_from_dir, timestamp
        from lamina.oci import History
        from lamina.store import write_image

        lam = self.lam.full()
        store = lam.store
        check_change_commands(changes)
        tags = [normalize_tag(reference)] if reference else []
        record = self.refresh(self.get(ref))
        if record is None:
            raise NotFoundError(f"No such container: {ref}")
        image = store.get_image(record.image)
        spec = record.state["spec"]
        base = lam.config(image)
        config = base.with_container_config(
            Env=spec["env"], Cmd=spec["cmd"] or None, Entrypoint=spec["entrypoint"] or None,
            User=spec["user"], WorkingDir=spec["workdir"] if spec["workdir"] != "/" or
            base.container_config.get("WorkingDir") else "",
        )  # fmt: skip
        config = apply_changes(config, changes)
        paused = False
        if pause and record.state["status"] == "running":
            # Recorded first: if this command dies, the next one resumes the container.
            self.store.set_container_state(
                record.id, {**record.state, "paused_by": list(current_owner())}
            )
            paused = self._runc("pause", record.id).returncode == 0
        try:
            from pathlib import Path

            with store.lease() as lease:
                layer = layer_from_dir(store, lease, Path(self._dir(record.id), "upper"),
                                       overlay_upper=True, source_date_epoch=None,
                                       keep_directory=True)  # fmt: skip
                now = timestamp(None, time.time())
                created_by = " ".join(spec["cmd"])  # moby's: the Cmd, not the Entrypoint
                config = config.with_layer(
                    layer.diff_id if layer else None,
                    History(now, created_by, message, author),
                ).with_fields(created=now, **({"author": author} if author else {}))
                layers = (*image.layers, layer) if layer else image.layers
                made = write_image(store, config, layers, lease=lease, tags=tags)
        finally:
            if paused:
                self._runc("resume", record.id)
            if pause and record.state["status"] == "running":
                self._clear_paused(record.id)
        return made.id


def describe_status(info: ContainerInfo, now: float | None = None) -> str:
    """Docker's STATUS column: `Up 3 seconds`, `Exited (0) 2 minutes ago`, `Created`."""
    from lamina.oci import human_duration as since

    now = time.time() if now is None else now
    if info.status == "running":
        return f"Up {since(now - (info.started_at or now))}"
    if info.status == "exited":
        return f"Exited ({info.exit_code}) {since(now - (info.finished_at or now))} ago"
    return "Created"
