"""runc's config.json with Docker's defaults, as a pure function."""

from __future__ import annotations

import os
import posixpath

from lamina.errors import InvalidInputError
from lamina.runtime._seccomp import seccomp_profile

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, Literal, NamedTuple

    from lamina._paths import StrPath
else:
    from lamina._frozen import NamedTuple

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_HOSTNAME = "lamina"
HOSTS_FILE = "hosts"
RESOLV_FILE = "resolv.conf"
HOSTNAME_FILE = "hostname"

# Docker's default set (moby oci/caps/defaults.go): enough for package managers, nothing that
# reaches the host (no SYS_ADMIN, NET_ADMIN, SYS_PTRACE, SYS_MODULE...).
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

# /proc and /sys entries that leak host information or reach host hardware.
MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

if TYPE_CHECKING:
    Network = Literal["host", "none"]
else:
    Network = str  # (an alias for annotations; no `typing` at run time)


class User(NamedTuple):
    """Who the process runs as: numeric ids only, as the kernel sees them."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()


ROOT = User(0, 0, ())


class BindMount(NamedTuple):
    """A host path bound into the container (RUN --mount=type=bind/cache/secret later)."""

    source: StrPath
    target: str
    readonly: bool = True


class TmpfsMount(NamedTuple):
    """A fresh tmpfs in the container; `size` in bytes, None for the kernel's default."""

    target: str
    size: int | None = None
    mode: int = 0o1777


def _container_path(path: str, what: str) -> str:
    if not path.startswith("/"):
        raise InvalidInputError(f"{what} {path!r} is not an absolute container path")
    clean = posixpath.normpath(path)
    if clean == "/":
        raise InvalidInputError(f"{what} {path!r} would cover the whole root file system")
    return clean


_ETC_FILES = {"/etc/hosts": HOSTS_FILE, "/etc/resolv.conf": RESOLV_FILE,
              "/etc/hostname": HOSTNAME_FILE}  # fmt: skip


def _standard_mounts() -> list[dict[str, Any]]:
    return [
        {
            "destination": "/proc",
            "type": "proc",
            "source": "proc",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["ro", "nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
    ]


def _bind(source: StrPath, target: str, readonly: bool) -> dict[str, Any]:
    options = ["rbind", "nosuid", "nodev", "rprivate"]
    if readonly:
        options.append("ro")
    return {"destination": target, "type": "bind", "source": os.fspath(source), "options": options}


def bundle_config(
    args: Sequence[str],
    *,
    bundle_dir: StrPath,
    rootfs: StrPath = "rootfs",
    env: Sequence[str] = (),
    cwd: str = "/",
    user: User = ROOT,
    hostname: str = DEFAULT_HOSTNAME,
    network: Network = "host",
    readonly_rootfs: bool = False,
    binds: Sequence[BindMount] = (),
    tmpfs: Sequence[TmpfsMount] = (),
    terminal: bool = False,
    etc_files: Sequence[str] = ("/etc/hosts", "/etc/resolv.conf"),
    etc_files_readonly: bool = True,
    no_new_privileges: bool = True,
) -> dict[str, Any]:
    """The config.json for runc: run `args` with Docker's default confinement.

    `etc_files` (`/etc/hosts`, `/etc/resolv.conf`, and for containers `/etc/hostname`) are
    bound from `bundle_dir` (write_bundle writes them), read-only unless
    `etc_files_readonly` is false. Docker's default seccomp profile applies (plus a refusal
    of block-device nodes, see `_seccomp`). `network="none"` gives the process its own
    network namespace with only `lo`; `"host"` shares the host's. PATH defaults to Docker's
    when `env` has none. No rlimits and no cgroup resources: runc fails on machines that
    cannot set them.
    """
    if not args:
        raise InvalidInputError("no command to run")
    if network not in ("host", "none"):
        raise InvalidInputError(f"network {network!r}: lamina supports 'host' and 'none'")
    if not cwd.startswith("/"):
        raise InvalidInputError(f"working directory {cwd!r} is not an absolute container path")
    env_list = list(env)
    if not any(e.startswith("PATH=") for e in env_list):
        env_list.insert(0, f"PATH={DEFAULT_PATH}")
    mounts = _standard_mounts()
    for target in etc_files:
        name = _ETC_FILES.get(target)
        if name is None:
            raise InvalidInputError(f"{target}: not a file lamina writes into a bundle")
        mounts.append(_bind(os.path.join(bundle_dir, name), target, etc_files_readonly))
    for b in binds:
        mounts.append(_bind(b.source, _container_path(b.target, "bind target"), b.readonly))
    for t in tmpfs:
        options = ["nosuid", "nodev", f"mode={t.mode:o}"]
        if t.size is not None:
            options.append(f"size={t.size}")
        mounts.append(
            {
                "destination": _container_path(t.target, "tmpfs target"),
                "type": "tmpfs",
                "source": "tmpfs",
                "options": options,
            }
        )
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if network == "none":
        namespaces.append({"type": "network"})
    caps = list(DEFAULT_CAPABILITIES)
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": terminal,
            "user": {
                "uid": user.uid,
                "gid": user.gid,
                "additionalGids": list(user.additional_gids),
            },
            "args": list(args),
            "env": env_list,
            "cwd": posixpath.normpath(cwd),
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": no_new_privileges,
        },
        "root": {"path": os.fspath(rootfs), "readonly": readonly_rootfs},
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
            "seccomp": seccomp_profile(),
        },
    }


# Mounted by runc inside its own /dev, /proc or /sys mounts: never created in the rootfs.
_INSIDE_RUNTIME_MOUNTS = ("/dev/", "/proc/", "/sys/")


def mount_targets(config: dict[str, Any]) -> list[str]:
    """The container paths runc will mount on for `config`: the stub candidates to pass to
    `lamina.snapshots.find_stubs` before the run."""
    return [
        m["destination"]
        for m in config.get("mounts", [])
        if not str(m["destination"]).startswith(_INSIDE_RUNTIME_MOUNTS)
    ]
