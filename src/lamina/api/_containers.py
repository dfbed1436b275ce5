"""Containers: an image's snapshots plus one read-write layer, run by runc under a monitor.

A container is a row in the metadata db (`containers`: id, name, image, state JSON) plus
``containers/<id>/`` under the root::

    init/      its own part of Docker's "init layer": the mount-point stubs of its volume
               targets (and --init's binary) that the image lacks, made at create time, so
               they never land in the read-write layer (only when it has any)
    upper/ work/   the read-write layer (overlayfs upper and work dirs)
    rootfs/    where init + the image's init layer + its snapshots + upper are mounted
               while it runs
    config.json hosts resolv.conf hostname   runc's bundle is the directory itself
               (`lamina.runtime.bundle_config`, as a RUN step's)
    container.log, exit.json, monitor.json   written by the monitor (`lamina.runtime`)

The rest of the init layer, the stubs of /etc/hosts, /etc/resolv.conf, /etc/hostname,
/dev, /proc and /sys that every container of an image needs, is the image's:
``snapshots/init-<image digest hex>``, made by its first container and shared read-only
by all (`_shared_init`); it goes with the image. (A container made by an older lamina has
all its stubs in its own `init/` and a `bundle/` directory: both still work.)

Lifecycle: `create` (record + dirs) → `start` (mount, bundle, monitor; status "running")
→ the monitor reaps the process, unmounts, writes exit.json and folds it into the db
(status "exited", or "created" when runc could not start the process) → `start` again, or
`rm`. Any command folds an exit.json the monitor could not fold, and notices a monitor or a
starting command that died (`refresh`).

`run --rm` in the foreground without a terminal is the one start without a monitor process:
nothing of such a container outlives the command (its exit code is the command's, its
record and files are removed), so the command supervises it itself
(`lamina.runtime.supervise`: the same runc start, output pump and clean-up as the monitor's)
and its record names it as the owner (there is no monitor.json). The record is written
once, already "running", and removed once: a command killed at any moment leaves a running
record whose owner is dead and which has no monitor, which the next command stops and
removes (`refresh`), as --rm would have.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # (no stubs: `signal`'s C half)
import builtins
import os
import posixpath
import stat
import sys
import time

from lamina import _lightctx as contextlib
from lamina._paths import absolute
from lamina._rmtree import remove_tree
from lamina.api._container_opts import (
    check_container_name,
    merge_env,
    parse_env_options,
    parse_volume,
    process_args,
    process_env,
    read_env_file,
)
from lamina.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidInputError,
    LaminaError,
    NotFoundError,
)
from lamina.layers import resolve_in_root
from lamina.runtime import (
    EXIT_LAMINA_FAILED,
    MONITOR_FILE,
    BindMount,
    ExitStatus,
    MonitorSpec,
    Owner,
    alive,
    bundle_config,
    current_owner,
    parse_signal,
    read_exit,
    read_monitor,
    runc_binary,
    spawn_monitor,
    supervise,
    write_bundle,
)
from lamina.snapshots import (
    find_stubs,
    is_mountpoint,
    mount,
    mounted,
    overlay_mount,
    unmount,
)
from lamina.store import ContainerRecord

# `lamina run` loads this module: no dataclass, no `typing` at run time (milliseconds of
# every run; see `lamina.api._container_host`).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator, Sequence
    from typing import Any, NamedTuple

    from lamina._paths import StrPath
    from lamina.api._container_host import ContainerHost, ImageLike
else:
    from lamina._frozen import NamedTuple

TINI = "/usr/bin/tini-static"
INIT_TARGET = "/sbin/docker-init"
_STUB_FILES = ("/etc/hosts", "/etc/resolv.conf", "/etc/hostname")
_STUB_DIRS = ("/dev", "/proc", "/sys")
_ADJECTIVES = (
    "amazing",
    "brave",
    "calm",
    "eager",
    "festive",
    "gentle",
    "happy",
    "jolly",
    "keen",
    "lucid",
    "modest",
    "nifty",
    "quirky",
    "serene",
    "tender",
    "vibrant",
)
_SURNAMES = (
    "archimedes",
    "babbage",
    "curie",
    "darwin",
    "euler",
    "franklin",
    "galileo",
    "hopper",
    "lovelace",
    "meitner",
    "noether",
    "pascal",
    "ritchie",
    "turing",
)


def _pick(words: tuple[str, ...]) -> str:
    """A random word (for names; `secrets` would load `random`, `hmac` and `base64`)."""
    return words[int.from_bytes(os.urandom(2)) % len(words)]


class ContainerExit(LaminaError):
    """The container's process could not be started: `code` is Docker's (125, 126, 127)."""

    def __init__(self, message: str, code: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


class RunOptions:
    """Everything `lamina run` takes (see `lamina run --help`). (A plain class, not a
    dataclass: `lamina run` makes one, and the dataclass machinery costs it milliseconds.)"""

    def __init__(
        self,
        image: str,
        command: Sequence[str] = (),
        name: str | None = None,
        detach: bool = False,
        remove: bool = False,
        interactive: bool = False,
        tty: bool = False,
        env: Sequence[str] = (),
        env_files: Sequence[StrPath] = (),
        workdir: str | None = None,
        user: str | None = None,
        entrypoint: str | None = None,
        network: str | None = None,
        volumes: Sequence[str] = (),
        read_only: bool = False,
        hostname: str | None = None,
        init: bool = False,
        stop_signal: str | None = None,
        stop_timeout: int | None = None,
        security_opts: Sequence[str] = (),
        host_env: dict[str, str] | None = None,
    ) -> None:
        self.image = image
        self.command = command
        self.name = name
        self.detach = detach
        self.remove = remove
        self.interactive = interactive
        self.tty = tty
        self.env = env
        self.env_files = env_files
        self.workdir = workdir
        self.user = user
        self.entrypoint = entrypoint
        self.network = network
        self.volumes = volumes
        self.read_only = read_only
        self.hostname = hostname
        self.init = init
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        self.security_opts = security_opts
        self.host_env: dict[str, str] = dict(os.environ) if host_env is None else host_env

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"RunOptions({fields})"


class Attach(NamedTuple):
    """The command's own fds a started container talks to (None: not attached)."""

    stdin: int | None = None
    stdout: int | None = None
    stderr: int | None = None


_WAITING = "waiting."  # a `wait` of another command reads this container's exit file


def _pid_alive(text: str) -> bool:
    try:
        os.kill(int(text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


class ContainerRunner:
    """Containers made, started and run over one host (`Lamina`, or `RunHost` for `lamina run`:
    see `lamina.api._container_host`), and cleaned up after dead processes: all `lamina run`
    loads. The other commands (ps, stop, rm, logs, exec, diff, commit...) are `Containers`'
    (`lamina.api._container_commands`)."""

    def __init__(self, lam: ContainerHost) -> None:
        self.lam = lam
        self.store = lam.store
        # Absolute (the root is): runc and the monitor get these paths.
        self.dir = os.path.join(lam.root, "containers")
        self.state_dir = os.path.join(lam.root, "runc")
        self.messages: list[str] = []  # one line per thing cleaned up after a dead process
        self._images: dict[str, ImageLike] = {}  # read by this command already, by digest

    # -- finding -----------------------------------------------------------------------

    def _dir(self, cid: str) -> str:
        return os.path.join(self.dir, cid)

    def get(self, ref: str) -> ContainerRecord:
        """A container by full ID, name or unique ID prefix (as Docker selects them)."""
        if not ref.strip("/"):
            raise InvalidInputError("a container name or ID is empty")
        try:
            if ref.startswith("/"):
                # moby's names start with `/`: `/web` is only ever the container named web
                # (not an ID, nor a prefix of one).
                named = [c for c in self.store.list_containers() if c.name == ref[1:]]
                if not named:
                    raise NotFoundError(ref)
                return named[0]
            return self.store.get_container(ref)
        except NotFoundError as e:
            if "ambiguous" in e.message:
                raise InvalidInputError(f"multiple IDs found with provided prefix: {ref}",
                                        hint="give more digits, or the name") from None  # fmt: skip
            raise NotFoundError(f"No such container: {ref}",
                                hint="`lamina ps -a` lists containers") from None  # fmt: skip

    # -- create ------------------------------------------------------------------------

    def create(
        self, opts: RunOptions, *, running: bool = False, started_next: bool = True
    ) -> ContainerRecord:
        """Record the container and prepare its directories (nothing runs yet). `running`:
        recorded as running already (the caller starts it at once, supervising it itself).
        `started_next` False: no start follows in this command (`docker create`)."""
        image = self.lam.resolve(opts.image)
        config = self.lam.container_config(image)
        volumes = [parse_volume(v) for v in opts.volumes]
        if opts.network not in (None, "host", "none", "default", "bridge"):
            raise InvalidInputError(f"network {opts.network!r}: lamina supports host and none")
        no_new_privs = True
        for so in opts.security_opts:
            key, _, value = so.replace(":", "=", 1).partition("=")
            if key != "no-new-privileges" or value not in ("", "true", "false"):
                raise InvalidInputError(
                    f"--security-opt {so!r} is not supported",
                    hint="lamina takes no-new-privileges[=true|false]",
                )
            no_new_privs = value != "false"
        if opts.workdir and not opts.workdir.startswith("/"):  # "": the image's, as moby
            raise InvalidInputError(
                f"the working directory '{opts.workdir}' is invalid, it needs to be an "
                "absolute path"
            )
        stop_signal = opts.stop_signal or config.get("StopSignal") or "SIGTERM"
        parse_signal(str(stop_signal))
        env_config = merge_env(
            list(config.get("Env") or []),
            *[read_env_file(f, opts.host_env) for f in opts.env_files],
            parse_env_options(opts.env, opts.host_env),
        )
        entrypoint, cmd = process_args(
            config.get("Entrypoint"), config.get("Cmd"), opts.entrypoint, opts.command
        )
        cid = os.urandom(32).hex()
        network = "none" if opts.network == "none" else "host"
        self._images[image.digest] = image  # (mounting it needs its layers again)
        if opts.hostname:
            hostname = opts.hostname
        elif opts.network == "host":
            hostname = os.uname().nodename
        else:
            hostname = cid[:12]
        for v in volumes:
            # A missing host path becomes a directory (moby); an existing file is bound as
            # the file it is.
            if not os.path.exists(v.source):
                try:
                    os.makedirs(v.source, exist_ok=True)
                except OSError as e:
                    raise InvalidInputError(
                        f"volume {v.source}:{v.target}: cannot create the host directory "
                        f"{v.source}: {e.strerror}"
                    ) from None
        spec = {
            "image_ref": opts.image,
            "entrypoint": entrypoint,
            "cmd": cmd,
            "env": env_config,
            "workdir": "/" + posixpath.normpath(opts.workdir).lstrip("/") if opts.workdir
            else config.get("WorkingDir") or "/",  # given: cleaned, as Go's filepath.Clean
            "workdir_given": bool(opts.workdir),
            "user": opts.user if opts.user is not None else (config.get("User") or ""),
            "hostname": hostname,
            "network": network,
            "tty": opts.tty,
            "interactive": opts.interactive,
            "read_only": opts.read_only,
            "volumes": [[str(v.source), v.target, v.readonly] for v in volumes],
            "init": opts.init,
            "stop_signal": str(stop_signal),
            "stop_timeout": opts.stop_timeout,
            "autoremove": opts.remove,
            "no_new_privileges": no_new_privs,
        }
        state: dict[str, Any] = {"status": "created", "spec": spec,
                                 "owner": list(current_owner())}  # fmt: skip
        if running:
            state.update(status="running", started_at=time.time(), exit_code=None, error=None,
                         finished_at=None)  # fmt: skip
        # Supervised here (`run --rm` in the foreground), the record lives as long as this
        # command and is not synced to disk before runc starts: a killed command's record is
        # still there for the next command to clean up, and after a power cut (nothing runs
        # or stays mounted) the next command removes a container directory that no record
        # names (`recover`).
        record = self._add(opts.name, cid, image.digest, state, durable=not running)
        try:
            self._prepare(record, image)
        except BaseException:
            self._remove_files(record.id)
            with contextlib.suppress(LaminaError):
                self.store.remove_container(cid)
            raise
        if running or (opts.remove and started_next):
            # `run --rm` starts it next, and that write records the prepared spec with the
            # running state (one fsynced transaction less); were this command to die first,
            # the owner it names is dead and the next command removes the container, as
            # --rm would have. (Supervised here, it is not written again: the prepared spec
            # is this process' to use, the record is removed at the end.)
            return record
        state["owner"] = None
        self.store.set_container_state(cid, state)
        return self.store.get_container(cid)

    def _add(
        self, given: str | None, cid: str, image: str, state: dict[str, Any], durable: bool
    ) -> ContainerRecord:
        """Record the container under the name `given`, else under a random free one (tried
        by inserting it: the names' uniqueness is the table's, no listing of every
        container); ConflictError when the given name is taken."""
        if given:
            name = check_container_name(given)
        for attempt in range(100):
            if not given:
                name = f"{_pick(_ADJECTIVES)}_{_pick(_SURNAMES)}"
                if attempt >= 20:  # most of the 224 plain names are taken: a number too
                    name += str(int.from_bytes(os.urandom(2)) % 1000)
            try:
                return self.store.add_container(cid, name, image, state, durable=durable)
            except AlreadyExistsError:
                if not given and attempt < 99:
                    continue
                try:
                    holder = f' by container "{self.store.get_container(name).id}"'
                except NotFoundError:  # removed meanwhile
                    holder = ""
                raise ConflictError(
                    f'Conflict. The container name "/{name}" is already in use{holder}. You '
                    "have to remove (or rename) that container to be able to reuse that name."
                ) from None
        raise AssertionError("unreachable")

    def _lowers(self, image: ImageLike) -> builtins.list[StrPath]:
        """The image's snapshot dirs, bottom first (unpacked now if they are not yet)."""
        paths = [self.store.snapshot_path(x.diff_id) for x in image.layers]
        if all(os.path.isdir(p) for p in paths):
            return paths  # the container's record keeps them from prune: no lease needed
        # Lazy layers (a registry holds them) are fetched and unpacked by the full store.
        store = self.lam.full().store
        with store.lease() as lease:
            from lamina.snapshots import ensure_snapshots

            return [*ensure_snapshots(store, store.get_image(image.digest).layers, lease)]

    def _image(self, digest: str) -> ImageLike:
        image = self._images.get(digest)
        if image is None:
            image = self._images[digest] = self.store.get_image(digest)
        return image

    def _prepare(self, record: ContainerRecord, image: ImageLike) -> None:
        spec = record.state["spec"]
        d = self._dir(record.id)
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.dir, 0o700)
        os.mkdir(d, 0o700)
        for sub in ("upper", "work", "rootfs"):
            os.mkdir(os.path.join(d, sub))
        os.chmod(os.path.join(d, "upper"), 0o755)
        lowers = self._lowers(image)
        # The stubs every container of the image needs are the image's shared init layer;
        # the container's own (volume targets, the --init binary) its own `init/`.
        own: list[tuple[str, bool]] = [(v[1], os.path.isdir(v[0])) for v in spec["volumes"]]
        if spec["init"]:
            own.append((INIT_TARGET, False))
        spec["own_init"] = bool(own) or not lowers
        spec["shared_init"] = True
        if spec["own_init"]:
            os.mkdir(os.path.join(d, "init"))
            os.chmod(os.path.join(d, "init"), 0o755)
        with self._image_view(d, lowers) as view:
            self._shared_init(image.digest, view)
            if own:
                self._make_init_layer(view, os.path.join(d, "init"), own)
            workdir = resolve_in_root(view, spec["workdir"])
            where = os.path.join(view, workdir.path().lstrip("/"))
            if not workdir.missing and not stat.S_ISDIR(os.lstat(where).st_mode):
                raise InvalidInputError(
                    f"the working directory {spec['workdir']} is not a directory in the image"
                )
            from lamina.runtime import resolve_user_home

            user, spec["home"] = resolve_user_home(view, spec["user"])
            spec.update(uid=user.uid, gid=user.gid, groups=list(user.additional_gids))

    @staticmethod
    @contextlib.contextmanager
    def _image_view(d: str, lowers: builtins.list[StrPath]) -> Iterator[StrPath]:
        """The image's tree, read-only, to look into while preparing: one layer is its own
        snapshot (read only through the scoped resolver, which never writes), several are
        mounted merged on the container's rootfs dir."""
        if len(lowers) == 1:
            yield lowers[0]
            return
        view = os.path.join(d, "rootfs")
        with mounted(overlay_mount(lowers[::-1] or [os.path.join(d, "init")]), view):
            yield view

    def _shared_init_path(self, image_digest: str) -> str:
        from lamina.store import init_layer_path

        return init_layer_path(os.path.join(self.lam.root, "snapshots"), image_digest)

    def _shared_init(self, image_digest: str, view: StrPath) -> str:
        """The image's init layer (Docker's, shared by its containers: the stubs of
        /etc/hosts, /etc/resolv.conf, /etc/hostname, /dev, /proc and /sys that its tree
        lacks), made once from the image's tree `view`. Never written afterwards (it is a
        read-only lower of each container's overlay) and removed with the image (`Store`).

        Made in a scratch dir under `snapshots/` that names this process as its owner (the
        next command removes it if this one dies: `recover`), then renamed into place whole,
        so no container ever mounts a half-made one."""
        path = self._shared_init_path(image_digest)
        if os.path.isdir(path):
            return path
        from lamina.runtime import write_owner

        scratch = os.path.join(os.path.dirname(path), f".tmp-init-{os.urandom(8).hex()}")
        os.mkdir(scratch, 0o700)
        try:
            write_owner(scratch)
            layer = os.path.join(scratch, "layer")
            os.mkdir(layer)
            os.chmod(layer, 0o755)
            targets = [(t, False) for t in _STUB_FILES] + [(t, True) for t in _STUB_DIRS]
            self._make_init_layer(view, layer, targets)
            try:
                os.rename(layer, path)
            except OSError:
                if not os.path.isdir(path):
                    raise
                # Another command made it first (the same stubs, from the same image).
        finally:
            remove_tree(scratch)
        return path

    def _init_lowers(self, record: ContainerRecord) -> builtins.list[str]:
        """The init layers of the container's overlay, top first: its own `init/` (a
        container made before the shared layer existed has only that one), the image's."""
        spec = record.state["spec"]
        lowers = []
        if spec.get("own_init", True):
            lowers.append(os.path.join(self._dir(record.id), "init"))
        if spec.get("shared_init"):
            lowers.append(self._shared_init_path(record.image))
        return lowers

    @staticmethod
    def _make_init_layer(view: StrPath, init: str, targets: list[tuple[str, bool]]) -> None:
        """Create in `init` what runc would otherwise create in the read-write layer: each
        missing mount target (a file or a dir) and its missing parents; the directories on
        the way keep the image's mode and owner, so the merged tree looks as before."""
        for target, is_dir in targets:
            stubs = find_stubs(view, [target])
            if not stubs:
                continue
            leaf = stubs[-1]
            parts = leaf.strip("/").split("/")
            for i in range(1, len(parts) + 1):
                path = "/" + "/".join(parts[:i])
                here = os.path.join(init, *parts[:i])
                if os.path.lexists(here):
                    continue
                last = i == len(parts)
                if last and not is_dir:
                    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                    fd = os.open(here, flags, 0o644)
                    os.close(fd)
                    continue
                existing = resolve_in_root(view, path)
                if not existing.missing:
                    st = os.lstat(os.path.join(view, existing.path().lstrip("/")))
                    os.mkdir(here)
                    os.chmod(here, stat.S_IMODE(st.st_mode))
                    os.chown(here, st.st_uid, st.st_gid)
                else:
                    os.mkdir(here, 0o755)
                    os.chmod(here, 0o755)

    # -- start -------------------------------------------------------------------------

    def _config(
        self, record: ContainerRecord, exec_args: Sequence[str] | None = None
    ) -> dict[str, Any]:
        spec = record.state["spec"]
        d = self._dir(record.id)
        args = list(exec_args) if exec_args is not None else spec["entrypoint"] + spec["cmd"]
        binds = [BindMount(src, dst, ro) for src, dst, ro in spec["volumes"]]
        if spec["init"] and exec_args is None:
            binds.append(BindMount(TINI, INIT_TARGET, True))
            args = [INIT_TARGET, "--", *args]
        env = process_env(hostname=spec["hostname"], tty=spec["tty"], config_env=spec["env"],
                          home=spec.get("home", "/"))  # fmt: skip
        from lamina.runtime import User

        return bundle_config(
            args, bundle_dir=d, rootfs=os.path.join(d, "rootfs"),
            env=env, cwd=spec["workdir"],
            user=User(spec["uid"], spec["gid"], tuple(spec["groups"])),
            hostname=spec["hostname"], network=spec["network"],
            readonly_rootfs=spec["read_only"], binds=binds, terminal=spec["tty"],
            etc_files=_STUB_FILES, etc_files_readonly=spec["read_only"],
            no_new_privileges=spec["no_new_privileges"],
        )  # fmt: skip

    def _mount_rootfs(self, record: ContainerRecord, fresh: bool = False) -> None:
        """Mount the container's rootfs (`fresh`: just created, so certainly not mounted)."""
        d = self._dir(record.id)
        if not fresh and is_mountpoint(os.path.join(d, "rootfs")):
            return
        image = self._image(record.image)
        image_lowers = self._lowers(image)
        if (
            not fresh
            and record.state["spec"].get("shared_init")
            and not os.path.isdir(self._shared_init_path(record.image))
        ):
            # (It goes only with the image, which this container keeps: made again if lost.)
            with self._image_view(d, image_lowers) as view:
                self._shared_init(record.image, view)
        lowers = [*self._init_lowers(record), *image_lowers[::-1]]
        # nodev: a device node in the image or made in the container opens nothing.
        options = ["nodev"]
        if record.state["spec"].get("autoremove"):
            # The read-write layer of a --rm container is thrown away: overlayfs need not
            # sync it, and its unmount then does not wait for every dirty page of the
            # file system the store is on (a syncfs, seconds on a busy disk).
            options.append("volatile")
        m = overlay_mount(lowers, os.path.join(d, "upper"), os.path.join(d, "work"),
                          extra_options=options)  # fmt: skip
        mount(m, os.path.join(d, "rootfs"), scratch=d)

    def start(self, ref: str, attach: Attach | None = None) -> tuple[ContainerRecord, Any]:
        """Start a created or exited container; return it and the monitor's pipe
        (`Started`). ContainerExit when runc cannot start the process."""
        return self._start(self.get(ref), attach)

    def _start(self, found: ContainerRecord, attach: Attach | None) -> tuple[ContainerRecord, Any]:
        record = self.refresh(found)
        if record is None:
            raise NotFoundError(f"No such container: {found.id}")
        status = record.state["status"]
        if status == "running":
            return record, None
        d = self._dir(record.id)
        state = dict(record.state)
        state.update(status="running", owner=list(current_owner()), started_at=time.time(),
                     exit_code=None, error=None, finished_at=None)  # fmt: skip
        for name in ("exit.json", "monitor.json", "pid"):  # the last start's
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(d, name))
        self.store.set_container_state(record.id, state)
        try:
            self._mount_rootfs(record)
            write_bundle(d, os.path.join(d, "rootfs"),
                         self._config(record))  # fmt: skip
        except BaseException:
            with contextlib.suppress(BaseException):
                unmount(os.path.join(d, "rootfs"))
            state.update(status="created", owner=None, exit_code=EXIT_LAMINA_FAILED)
            self.store.set_container_state(record.id, state)
            raise
        attach = attach or Attach()
        spec = self._monitor_spec(record, attach)
        # The fold opens the root as `lamina run` does (light), else the whole API.
        fold = [sys.executable, "-c", "import sys, pathlib; from lamina.api import Lamina, "
                "RunHost; root = pathlib.Path(sys.argv[1]); "
                "(RunHost.open(root) or Lamina(root)).recover()",
                absolute(self.lam.root)]  # fmt: skip
        # Attached, the command folds the exit itself (and any later command would).
        started = spawn_monitor(spec, fold if attach.stdout is None else None)
        ok, code, error = started.wait_started()
        if not ok:
            started.close()
            self._fold_now(record.id)
            raise ContainerExit(
                error or "the container did not start",
                code if code is not None else EXIT_LAMINA_FAILED,
            )
        return self.store.get_container(record.id), started

    def _monitor_spec(self, record: ContainerRecord, attach: Attach) -> MonitorSpec:
        d = absolute(self._dir(record.id))
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.state_dir, 0o700)
        return MonitorSpec(
            container_dir=d, bundle_dir=d,
            state_dir=absolute(self.state_dir), runc_id=record.id,
            rootfs=os.path.join(d, "rootfs"), tty=record.state["spec"]["tty"],
            stdin=attach.stdin, stdout=attach.stdout, stderr=attach.stderr,
            durable_exit=not record.state["spec"].get("autoremove"),
        )  # fmt: skip

    def _fold_now(self, cid: str) -> None:
        with contextlib.suppress(NotFoundError):
            self.refresh(self.store.get_container(cid))

    # -- state -------------------------------------------------------------------------

    def fold(self, cid: str, result: ExitStatus) -> None:
        """Record how a start ended (the monitor calls this; so does `refresh`)."""
        try:
            record = self.store.get_container(cid)
        except NotFoundError:
            return
        if record.state.get("status") != "running":
            return
        state = dict(record.state)
        state.update(status="exited" if result.started else "created", owner=None,
                     exit_code=result.code, error=result.error,
                     finished_at=result.finished)  # fmt: skip
        if state["spec"].get("autoremove"):
            self._destroy(record)
            return
        self.store.set_container_state(cid, state)

    def refresh(self, record: ContainerRecord) -> ContainerRecord | None:
        """The container's true state: folds an exit the monitor left unrecorded, and stops
        and cleans up after a monitor (or a starting command) that died. None when that
        removed the container (--rm)."""
        if record.state.get("status") != "running":
            owner = record.state.get("owner")
            if owner and Owner(*owner) != current_owner() and not alive(Owner(*owner)):
                # A command died while creating it: whatever it made goes.
                self.messages.append(
                    f"removed container {record.id[:12]} that a dead lamina process "
                    f"(pid {owner[0]}) was creating"
                )
                self._destroy(record)
                return None
            return record
        d = self._dir(record.id)
        if self._supervised_elsewhere(record):
            return record  # its command records the end and removes it (`run --rm`)
        result = read_exit(d)
        if result is None and not os.path.exists(os.path.join(d, "pid")):
            starting = read_monitor(d)
            if starting is not None and alive(starting):
                # Its monitor is still starting it (runc creating the container; the command
                # that asked may be gone): what it is, is known once that is done.
                self._await_start(d, starting)
                result = read_exit(d)
        if result is None:
            monitor = read_monitor(d)
            if monitor is not None and alive(monitor):
                pauser = record.state.get("paused_by")
                if pauser and not alive(Owner(*pauser)):
                    self._runc("resume", record.id)
                    self._clear_paused(record.id)
                    self.messages.append(f"resumed container {record.id[:12]}, paused by a dead "
                                         f"lamina commit (pid {pauser[0]})")  # fmt: skip
                    return self.store.get_container(record.id)
                return record
            owner = record.state.get("owner")
            if monitor is None and owner and alive(Owner(*owner)):
                return record  # still starting
            # The monitor (or the command starting it) died: stop what may still run.
            self._kill_runc(record.id, "KILL")
            self._runc("delete", "--force", record.id)
            with contextlib.suppress(LaminaError):
                unmount(os.path.join(d, "rootfs"))
            who = f"monitor (pid {monitor.pid})" if monitor else "starting lamina process"
            self.messages.append(f"stopped container {record.id[:12]}: its {who} died")
            result = ExitStatus(137, time.time(), monitor is not None, f"its {who} died")
        self.fold(record.id, result)
        try:
            return self.store.get_container(record.id)
        except NotFoundError:
            return None

    def _supervised_elsewhere(self, record: ContainerRecord) -> bool:
        """A foreground `run --rm` of another, living command: that command is its monitor
        (no monitor.json), so only it may fold the exit and remove the container."""
        owner = record.state.get("owner")
        return bool(
            owner
            and not os.path.exists(os.path.join(self._dir(record.id), MONITOR_FILE))
            and Owner(*owner) != current_owner()
            and alive(Owner(*owner))
        )

    @staticmethod
    def _await_start(d: str, monitor: Owner, timeout: float = 30.0) -> None:
        """Wait until a start the monitor is making has an outcome: runc wrote the process'
        pid, the monitor wrote the exit, or it died (bounded: runc may hang)."""
        deadline = time.monotonic() + timeout
        delay = 0.005
        while not any(os.path.exists(os.path.join(d, n)) for n in ("pid", "exit.json")):
            if not alive(monitor) or time.monotonic() >= deadline:
                return
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def run(self, opts: RunOptions, attach: Attach | None = None) -> tuple[str, int | None]:
        """`docker run`: create and start; detached, return (id, None) once it runs;
        otherwise wait and return (id, exit code). ContainerExit (125/126/127) when it
        could not start; --rm removes it then too."""
        if opts.remove and not opts.detach and not opts.tty:
            return self._run_supervised(opts, attach or Attach())
        record = self.create(opts)
        proxy = _SignalProxy(self, record.id)
        with proxy if not opts.detach else contextlib.nullcontext():
            try:
                record, started = self._start(record, None if opts.detach else attach)
            except BaseException:
                if opts.remove:
                    self._remove_quietly(record.id)
                raise
            if opts.detach:
                started.close()
                return record.id, None
            try:
                proxy.started()
                _, code, _error = started.wait_exit()
            finally:
                started.close()
        self._fold_now(record.id)
        if code is None:
            final = self.refresh(self.store.get_container(record.id)) if not opts.remove else None
            code = final.state.get("exit_code") if final else EXIT_LAMINA_FAILED
        return record.id, int(code if code is not None else EXIT_LAMINA_FAILED)

    def _run_supervised(self, opts: RunOptions, attach: Attach) -> tuple[str, int]:
        """`run --rm` in the foreground, no terminal: this process is the monitor (see the
        module doc). Ctrl-C, SIGTERM and SIGHUP go to the container's process while it runs;
        whatever happens, the container, its mount, files and record are gone on return."""
        record = self.create(opts, running=True)
        d = self._dir(record.id)
        try:
            with _SignalProxy(self, record.id) as proxy:
                self._mount_rootfs(record, fresh=True)
                write_bundle(d, os.path.join(d, "rootfs"),
                             self._config(record))  # fmt: skip
                result = supervise(self._monitor_spec(record, attach), proxy.started,
                                   then=lambda: self._remove_exited(record.id))  # fmt: skip
        finally:
            self._destroy(record, mounted=False)  # (the record; the rest if not gone yet)
        if not result.started:
            raise ContainerExit(result.error or "the container did not start", result.code)
        return record.id, result.code

    def _remove_quietly(self, cid: str) -> None:
        with contextlib.suppress(NotFoundError):
            self._destroy(self.store.get_container(cid))

    # -- runc and removal ---------------------------------------------------------------

    def _runc(self, *args: str) -> subprocess.CompletedProcess[str]:
        import subprocess

        return subprocess.run([runc_binary(), "--root", str(self.state_dir), *args],
                              capture_output=True, text=True, check=False)  # fmt: skip

    def _kill_runc(self, cid: str, sig: str) -> bool:
        return self._runc("kill", cid, sig).returncode == 0

    def _destroy(self, record: ContainerRecord, mounted: bool = True) -> None:
        """Everything of the container goes: its runc state, mount, directory and record.
        (`mounted` False: its rootfs is known to be unmounted already.)"""
        if os.path.exists(os.path.join(self.state_dir, record.id)):
            self._runc("delete", "--force", record.id)
        self._let_waiters_read(record.id)
        self._remove_files(record.id, mounted)
        with contextlib.suppress(NotFoundError):
            self.store.remove_container(record.id)

    def _remove_exited(self, cid: str) -> None:
        """The files of a container whose process has exited and whose rootfs is unmounted
        (a `wait` of another command gets to read its exit file first)."""
        self._let_waiters_read(cid)
        self._remove_files(cid, mounted=False)

    def _let_waiters_read(self, cid: str, timeout: float = 2.0) -> None:
        """A `wait` of another command (its `waiting.<pid>` mark) gets to read the exit file
        of an exited `--rm` container before it goes (bounded: a waiter may be stuck)."""
        d = self._dir(cid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                names = os.listdir(d)
            except OSError:
                return
            if "exit.json" not in names or not any(
                n.startswith(_WAITING) and _pid_alive(n[len(_WAITING) :]) for n in names
            ):
                return
            time.sleep(0.005)

    def remove_orphan(self, cid: str) -> bool:
        """Remove what a container `cid` that no record names left: its runc state and its
        directory (a power cut can lose a `run --rm` record, which is not synced to disk,
        while its directory stays). False when nothing was there (removed meanwhile)."""
        found = False
        state = os.path.join(self.state_dir, cid)
        if os.path.exists(state):
            self._runc("delete", "--force", cid)
            if os.path.exists(state):  # runc could not read it: nothing of it runs any more
                remove_tree(state)
            found = True
        if os.path.exists(self._dir(cid)):
            self._remove_files(cid)
            found = True
        return found

    def _remove_files(self, cid: str, mounted: bool = True) -> None:
        d = self._dir(cid)
        for sub in ("rootfs", "diff-view") if mounted else ():
            with contextlib.suppress(LaminaError):
                unmount(os.path.join(d, sub))
        trash = os.path.join(self.dir, f".trash-{cid}-{os.urandom(4).hex()}")
        try:
            os.rename(d, trash)
        except FileNotFoundError:
            return  # another command removed it first
        remove_tree(trash)

    def _clear_paused(self, cid: str) -> None:
        with contextlib.suppress(NotFoundError):
            current = self.store.get_container(cid)
            if "paused_by" in current.state:
                state = dict(current.state)
                del state["paused_by"]
                self.store.set_container_state(cid, state)


class _SignalProxy:
    """While a command is attached, Ctrl-C, SIGTERM and SIGHUP sent to it go to the
    container's process (Docker's --sig-proxy); the command keeps waiting for the exit.
    Signals that arrive before the process runs are sent once it does.

    `started(pid)` (this process supervises the container, whose process is its child):
    signals go to that process through a pidfd, which names exactly it (never a process that
    later reuses the pid); `started()`: through `runc kill`."""

    _WANTED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP)

    def __init__(self, containers: ContainerRunner, cid: str) -> None:
        self._containers = containers
        self._cid = cid
        self._running = False
        self._pidfd: int | None = None
        self._pending: list[int] = []
        self._saved: dict[int, Any] = {}

    def _send(self, signum: int) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(OSError):
                _signal.pidfd_send_signal(self._pidfd, signum)
        else:
            self._containers._kill_runc(self._cid, str(signum))

    def _forward(self, signum: int, frame: object) -> None:
        if self._running:
            self._send(signum)
        else:
            self._pending.append(signum)

    def started(self, pid: int | None = None) -> None:
        if pid is not None:
            self._pidfd = os.pidfd_open(pid)
        self._running = True
        for signum in self._pending:
            self._send(signum)
        self._pending.clear()

    def __enter__(self) -> _SignalProxy:
        # (`_signal`, not `signal`, whose enums cost every `lamina run` milliseconds.)
        try:
            self._saved = {sig: _signal.signal(sig, self._forward) for sig in self._WANTED}
        except ValueError:  # not the main thread (the first call fails): not its to handle
            self._saved = {}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            _signal.signal(sig, handler)
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
