"""Runtime: run a process in a container with runc, from a generated OCI bundle.

Terms
-----
rootfs
    The directory the process sees as ``/``: normally an overlay mount of an image's snapshots
    plus an upper dir (``lamina.snapshots``); any directory works.
bundle dir
    runc's working directory for one run: ``config.json``, plus the ``hosts`` and
    ``resolv.conf`` files bound read-only onto ``/etc/hosts`` and ``/etc/resolv.conf``.
state dir
    runc's ``--root``: lamina's own (e.g. ``$LAMINA_ROOT/runc``), never runc's default, so
    ``runc --root <state dir> list`` shows exactly lamina's live containers.
config
    The dict ``bundle_config`` returns: Docker's defaults (its capability set,
    no-new-privileges, masked and read-only /proc paths, own mount/pid/ipc/uts namespaces,
    network ``host`` or ``none``). Never rlimits or cgroup resources: runc fails where the
    machine cannot set them.

Running a container (or a RUN step)
-----------------------------------
1. ``user = resolve_user(rootfs, "app:staff")`` — ids from the image's own /etc/passwd and
   /etc/group, read inside the rootfs; a missing user by name is a NotFoundError naming it.
2. ``config = bundle_config(["sh", "-c", cmd], bundle_dir=b, env=[...], cwd="/src",
   user=user, network="none", binds=[BindMount(src, "/cache", readonly=False)])`` — pure.
3. Before the run, ``lamina.snapshots.find_stubs(rootfs, mount_targets(config))`` lists the
   mount points runc is about to create, for ``clean_upper`` afterwards.
4. ``code = run(b, rootfs, config, state_dir=s, stdout=sink, stderr=sink, timeout=600)`` —
   returns the process' exit code (127 command not found, 126 not invokable, as Docker);
   Ctrl-C, SIGTERM or the timeout kill and delete the container before the exception goes on;
   the container is always gone when ``run`` returns or raises. The process is started as
   a container's is (``runc run --detach``, the calling process its subreaper while it runs)
   and writes to the given fds itself: with ``stderr=subprocess.STDOUT`` both streams are one
   pipe, so the sink sees the lines in the order they were written (foreground ``runc run``
   would copy each stream with a goroutine of its own and could swap them).

A container (``lamina run``) uses the same config and overlay mount, but its process is
supervised by a monitor that outlives the command (``spawn_monitor``, see ``_monitor``;
``supervise`` does the same in the calling process, for a foreground ``run --rm``):
it writes the output to ``container.log`` (CRI format, ``_logs``) and the exit status to
``exit.json``. Once a process is reaped, ``delete_stopped`` removes its runc state and
cgroups without starting runc again (``runc delete --force`` when anything is left).
Whatever a dead lamina process left (a monitor, a build's runc state dir, a scratch dir)
records its ``Owner`` (pid + start time), so the next command can tell.
"""

from lamina._lazy import lazy_names

TYPE_CHECKING = False  # not typing's: `lamina run` does without typing
if TYPE_CHECKING:
    from lamina.runtime._console import run_with_console
    from lamina.runtime._logs import LOG_FILE, LineJoiner, LogLine, LogWriter, read_records
    from lamina.runtime._monitor import (
        EXIT_FILE,
        EXIT_LAMINA_FAILED,
        MONITOR_FILE,
        ExitStatus,
        MonitorSpec,
        Started,
        read_exit,
        read_monitor,
        spawn_monitor,
        supervise,
    )
    from lamina.runtime._owner import Owner, alive, current_owner, read_owner, write_owner
    from lamina.runtime._runc import (
        EXIT_NOT_FOUND,
        EXIT_NOT_INVOKABLE,
        Output,
        exit_code_for_runc_error,
        hosts_file,
        run,
        runc_binary,
        runc_failure,
        sigterm_raises,
        write_bundle,
    )
    from lamina.runtime._seccomp import BLOCKED_SYSCALLS, seccomp_profile
    from lamina.runtime._signals import parse_signal, signal_name
    from lamina.runtime._spec import (
        DEFAULT_CAPABILITIES,
        DEFAULT_HOSTNAME,
        DEFAULT_PATH,
        MASKED_PATHS,
        READONLY_PATHS,
        ROOT,
        BindMount,
        Network,
        TmpfsMount,
        User,
        bundle_config,
        mount_targets,
    )
    from lamina.runtime._user import home_dir, resolve_user, resolve_user_home

# Each name loads its module on first use: `lamina run` loads the monitor and the bundle
# code, not the log reader or the seccomp tables of `exec` until it needs them.
_LAZY = {
    "run_with_console": "lamina.runtime._console",
    "LOG_FILE": "lamina.runtime._logs",
    "LineJoiner": "lamina.runtime._logs",
    "LogLine": "lamina.runtime._logs",
    "LogWriter": "lamina.runtime._logs",
    "read_records": "lamina.runtime._logs",
    "EXIT_FILE": "lamina.runtime._monitor",
    "EXIT_LAMINA_FAILED": "lamina.runtime._monitor",
    "MONITOR_FILE": "lamina.runtime._monitor",
    "ExitStatus": "lamina.runtime._monitor",
    "MonitorSpec": "lamina.runtime._monitor",
    "Started": "lamina.runtime._monitor",
    "read_exit": "lamina.runtime._monitor",
    "read_monitor": "lamina.runtime._monitor",
    "spawn_monitor": "lamina.runtime._monitor",
    "supervise": "lamina.runtime._monitor",
    "Owner": "lamina.runtime._owner",
    "alive": "lamina.runtime._owner",
    "current_owner": "lamina.runtime._owner",
    "read_owner": "lamina.runtime._owner",
    "write_owner": "lamina.runtime._owner",
    "EXIT_NOT_FOUND": "lamina.runtime._runc",
    "EXIT_NOT_INVOKABLE": "lamina.runtime._runc",
    "Output": "lamina.runtime._runc",
    "exit_code_for_runc_error": "lamina.runtime._runc",
    "hosts_file": "lamina.runtime._runc",
    "run": "lamina.runtime._runc",
    "runc_binary": "lamina.runtime._runc",
    "runc_failure": "lamina.runtime._runc",
    "sigterm_raises": "lamina.runtime._runc",
    "write_bundle": "lamina.runtime._runc",
    "BLOCKED_SYSCALLS": "lamina.runtime._seccomp",
    "seccomp_profile": "lamina.runtime._seccomp",
    "parse_signal": "lamina.runtime._signals",
    "signal_name": "lamina.runtime._signals",
    "DEFAULT_CAPABILITIES": "lamina.runtime._spec",
    "DEFAULT_HOSTNAME": "lamina.runtime._spec",
    "DEFAULT_PATH": "lamina.runtime._spec",
    "MASKED_PATHS": "lamina.runtime._spec",
    "READONLY_PATHS": "lamina.runtime._spec",
    "ROOT": "lamina.runtime._spec",
    "BindMount": "lamina.runtime._spec",
    "Network": "lamina.runtime._spec",
    "TmpfsMount": "lamina.runtime._spec",
    "User": "lamina.runtime._spec",
    "bundle_config": "lamina.runtime._spec",
    "mount_targets": "lamina.runtime._spec",
    "home_dir": "lamina.runtime._user",
    "resolve_user": "lamina.runtime._user",
    "resolve_user_home": "lamina.runtime._user",
}

__all__ = [
    "run_with_console",
    "BLOCKED_SYSCALLS",
    "EXIT_FILE",
    "EXIT_LAMINA_FAILED",
    "LOG_FILE",
    "MONITOR_FILE",
    "ExitStatus",
    "LineJoiner",
    "LogLine",
    "LogWriter",
    "MonitorSpec",
    "Owner",
    "Started",
    "alive",
    "current_owner",
    "home_dir",
    "hosts_file",
    "parse_signal",
    "read_exit",
    "read_monitor",
    "read_owner",
    "read_records",
    "runc_failure",
    "seccomp_profile",
    "signal_name",
    "spawn_monitor",
    "supervise",
    "write_owner",
    "DEFAULT_CAPABILITIES",
    "DEFAULT_HOSTNAME",
    "DEFAULT_PATH",
    "EXIT_NOT_FOUND",
    "EXIT_NOT_INVOKABLE",
    "MASKED_PATHS",
    "READONLY_PATHS",
    "ROOT",
    "BindMount",
    "Network",
    "Output",
    "TmpfsMount",
    "User",
    "bundle_config",
    "exit_code_for_runc_error",
    "mount_targets",
    "resolve_user",
    "resolve_user_home",
    "run",
    "runc_binary",
    "sigterm_raises",
    "write_bundle",
]

__getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__, globals())
