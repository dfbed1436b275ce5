"""Mount-point stubs: files and directories runc creates only to mount something over them.

They are not a step's changes. `find_stubs` lists them before the run (on the merged view),
`clean_upper` removes those still empty from the upper dir afterwards, as BuildKit does.
"""

from __future__ import annotations

import os
import posixpath
import stat

from lamina.layers import (
    is_overlay_opaque_dir,
    is_overlay_whiteout,
    open_dir_nofollow,
    resolve_in_root,
)

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from lamina._paths import StrPath


def find_stubs(rootfs: StrPath, targets: Iterable[str]) -> list[str]:
    """The paths runc will create in `rootfs` to mount on `targets` (container paths): each
    target that does not exist and its missing parents, symlinks resolved inside the rootfs.
    Call it on the mounted rootfs before the run."""
    stubs: list[str] = []
    for target in targets:
        resolved = resolve_in_root(rootfs, posixpath.normpath("/" + target.lstrip("/")))
        for i in range(1, len(resolved.missing) + 1):
            path = "/" + "/".join(resolved.existing + resolved.missing[:i])
            if path not in stubs:
                stubs.append(path)
    return stubs


def _lower_stat(lowerdirs: Sequence[StrPath], parts: list[str]) -> os.stat_result | None:
    """What the lower stack (top first) shows at `parts`, whiteouts and opaque dirs honoured."""
    for lower in lowerdirs:
        fd = os.open(lower, os.O_RDONLY | os.O_DIRECTORY)
        hidden_below = False
        try:
            for i, name in enumerate(parts):
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    break
                if is_overlay_whiteout(st):
                    return None
                if i == len(parts) - 1:
                    return st
                if not stat.S_ISDIR(st.st_mode):
                    return None
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = child
                hidden_below = hidden_below or is_overlay_opaque_dir(fd)
        finally:
            os.close(fd)
        if hidden_below:
            return None
    return None


def _remove_if_empty(dir_fd: int, name: str, st: os.stat_result) -> bool:
    if stat.S_ISREG(st.st_mode) and st.st_size == 0:
        os.unlink(name, dir_fd=dir_fd)
        return True
    if stat.S_ISDIR(st.st_mode):
        child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
        try:
            if os.listdir(child) or is_overlay_opaque_dir(child):
                return False
        finally:
            os.close(child)
        os.rmdir(name, dir_fd=dir_fd)
        return True
    return False


def _same_dir(a: os.stat_result, b: os.stat_result | None) -> bool:
    return (
        b is not None
        and stat.S_ISDIR(b.st_mode)
        and a.st_mode == b.st_mode
        and a.st_uid == b.st_uid
        and a.st_gid == b.st_gid
    )


def clean_upper(
    upper: StrPath, stubs: Iterable[str], lowerdirs: Sequence[StrPath] = ()
) -> list[str]:
    """Remove from `upper` the `stubs` (container paths) that are still empty, deepest first,
    and return the paths removed.

    A stub is removed only if it is an empty regular file or an empty, non-opaque directory:
    anything the step wrote there stays. With `lowerdirs` (top first), a parent of a removed
    stub is removed too when it became empty and the lower stack has the same directory (same
    mode and owner): overlayfs copied it up only to hold the stub. No symlink is followed.
    """
    removed: list[str] = []
    wanted = {posixpath.normpath("/" + s.lstrip("/")) for s in stubs} - {"/"}
    root_fd = os.open(upper, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for path in sorted(wanted, key=lambda p: (-p.count("/"), p)):
            parts = path.strip("/").split("/")
            while parts:
                dir_fd = open_dir_nofollow(root_fd, parts[:-1])
                if dir_fd is None:
                    break
                try:
                    try:
                        st = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
                    except FileNotFoundError:
                        break
                    current = "/" + "/".join(parts)
                    if current not in wanted and not _same_dir(st, _lower_stat(lowerdirs, parts)):
                        break
                    if not _remove_if_empty(dir_fd, parts[-1], st):
                        break
                    removed.append(current)
                finally:
                    os.close(dir_fd)
                parts = parts[:-1]
    finally:
        os.close(root_fd)
    return removed
