"""Cleaning up after lamina processes that died (SIGKILL, power loss) on this root.

What a lamina process starts records its owner (`lamina.runtime.write_owner`): a build's runc
state dir (`runc-builds/<token>/`), a step's scratch dir (`snapshots/.tmp-*`, where its
overlay mounts live), a container's monitor (`containers/<id>/monitor.json`). The next
command finds those whose owner is gone: it kills and deletes their runc containers,
unmounts what is mounted under them, removes the directories, and reports one line each.
"""

from __future__ import annotations

import os

from lamina import _lightctx as contextlib
from lamina._rmtree import remove_tree
from lamina.errors import LaminaError

TYPE_CHECKING = False  # not typing's: `lamina run` does without typing
if TYPE_CHECKING:
    from lamina._paths import StrPath
    from lamina.api._container_host import ContainerHost

# `lamina.runtime` and `lamina.snapshots` are imported only when something is left to
# clean up: every command runs `recover` first, and most find nothing.


def _dead(directory: StrPath) -> int | None:
    """The pid of `directory`'s owner when that process is gone; None otherwise."""
    from lamina.runtime import alive, read_owner

    owner = read_owner(directory)
    if owner is None or alive(owner):
        return None
    return owner.pid


def _unmount_under(directory: StrPath) -> int:
    from lamina.snapshots import mount_points, unmount

    prefix = os.path.realpath(directory) + "/"
    below = [m for m in mount_points() if m.startswith(prefix)]
    count = 0
    for target in sorted(set(below), key=lambda m: -m.count("/")):
        with contextlib.suppress(LaminaError):
            unmount(target)
            count += 1
    return count


def recover_builds(root: StrPath) -> list[str]:
    lines = []
    builds = os.path.join(root, "runc-builds")
    if os.path.isdir(builds):
        for entry in sorted(os.path.join(builds, name) for name in os.listdir(builds)):
            pid = _dead(entry)
            if pid is None:
                continue
            import subprocess

            from lamina.runtime import runc_binary

            runc = runc_binary()
            listed = subprocess.run([runc, "--root", entry, "list", "-q"],
                                    capture_output=True, text=True, check=False)  # fmt: skip
            killed = 0
            for cid in listed.stdout.split():
                subprocess.run([runc, "--root", entry, "kill", cid, "KILL"],
                               capture_output=True, check=False)  # fmt: skip
                subprocess.run([runc, "--root", entry, "delete", "--force", cid],
                               capture_output=True, check=False)  # fmt: skip
                killed += 1

            remove_tree(entry)
            lines.append(f"cleaned up after dead build (pid {pid}): {killed} RUN container(s) "
                         "killed")  # fmt: skip
    snapshots = os.path.join(root, "snapshots")
    if os.path.isdir(snapshots):
        for name in sorted(os.listdir(snapshots)):
            if not name.startswith(".tmp-"):
                continue
            entry = os.path.join(snapshots, name)
            pid = _dead(entry)
            if pid is None:
                continue
            mounts = _unmount_under(entry)
            remove_tree(entry)
            lines.append(f"removed scratch dir {name} of dead lamina process (pid {pid}), "
                         f"{mounts} mount(s)")  # fmt: skip
    return lines


def _container_ids(directory: str) -> list[str]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    from lamina.oci import is_digest

    return [n for n in names if is_digest(f"sha256:{n}")]


def recover(lam: ContainerHost) -> list[str]:
    """Clean up after dead lamina processes on `lam`'s root; one line per thing done."""
    lines = recover_builds(lam.root)
    if not os.path.isdir(os.path.join(lam.root, "containers")):
        return lines
    # The directories first, then the records: a container's record is written before its
    # directories and runc state and removed after them, so one listed here that no record
    # read afterwards names was lost in a crash (or is being removed right now).
    present = {*_container_ids(os.path.join(lam.root, "containers")),
               *_container_ids(os.path.join(lam.root, "runc"))}  # fmt: skip
    every = lam.store.list_containers()
    records = [record for record in every
               if record.state.get("status") == "running" or record.state.get("owner")]  # fmt: skip
    if records:  # only then the container code is loaded
        containers = lam.containers
        containers.messages.clear()
        for record in records:
            containers.refresh(record)
        lines += containers.messages
        containers.messages.clear()
    orphans = sorted(present - {record.id for record in every})
    for cid in orphans:
        if lam.containers.remove_orphan(cid):
            lines.append(f"removed container {cid[:12]}: no record names it (lost in a crash)")
    return lines
