"""Who started something: a process identity (pid + kernel start time) that survives pid reuse.

Everything a lamina process leaves while it works (a build's runc state dir, a scratch dir
with mounts in it, a container's monitor) records its owner; a later command treats the
thing as abandoned once `alive(owner)` is false.
"""

from __future__ import annotations

import os

from lamina._lightjson import dumps, loads

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    from typing import NamedTuple

    from lamina._paths import StrPath
else:
    from lamina._frozen import NamedTuple

OWNER_FILE = "owner.json"


class Owner(NamedTuple):
    pid: int
    start: int  # clock ticks after boot (/proc/<pid>/stat field 22): tells a reused pid apart


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def current_owner(pid: int | None = None) -> Owner:
    """This process (or `pid`) as an Owner."""
    pid = os.getpid() if pid is None else pid
    return Owner(pid, _start_time(pid) or 0)


def alive(owner: Owner) -> bool:
    """Whether the process that `owner` names still runs (a zombie counts as gone)."""
    start = _start_time(owner.pid)
    if start is None or start != owner.start:
        return False
    try:
        with open(f"/proc/{owner.pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"State:"):
                    return b"Z" not in line.split()[1]
    except OSError:
        return False
    return True


def write_owner(directory: StrPath, owner: Owner | None = None) -> None:
    """Record `owner` (default: this process) in `directory`, atomically."""
    owner = owner or current_owner()
    tmp = os.path.join(directory, f".{OWNER_FILE}.{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(dumps({"pid": owner.pid, "start": owner.start}))
    os.rename(tmp, os.path.join(directory, OWNER_FILE))


def read_owner(directory: StrPath) -> Owner | None:
    """The owner recorded in `directory`, or None when there is none (yet)."""
    try:
        with open(os.path.join(directory, OWNER_FILE)) as f:
            doc = loads(f.read())
        return Owner(int(doc["pid"]), int(doc["start"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
