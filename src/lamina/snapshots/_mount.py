"""Mounts as values (`Mount`), and the two functions that act on them."""

from __future__ import annotations

import errno
import os

from lamina import _libc as libc
from lamina._lightctx import contextmanager
from lamina._rmtree import remove_tree
from lamina.errors import InvalidInputError, ToolError

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from typing import NamedTuple

    from lamina._paths import P, StrPath
else:
    from lamina._frozen import NamedTuple

# mount(2) copies at most one page of option data; leave room for the kernel's own additions.
_MAX_DATA = 4000
# overlayfs' OVL_MAX_STACK.
MAX_LOWERDIRS = 500
_MNT_DETACH = 2


class Mount(NamedTuple):
    """A mount described, not performed: what `mount -t type -o options source target` would do.

    `target` is optional because most descriptions are made before the place they go is known.
    """

    type: str
    source: str
    options: tuple[str, ...] = ()
    target: str | None = None

    def lowerdirs(self) -> list[str]:
        """The lowerdir paths of an overlay mount, top first (empty for other types)."""
        for option in self.options:
            if option.startswith("lowerdir="):
                return option[len("lowerdir=") :].split(":")
        return []


def _check_option_path(path: StrPath, what: str) -> str:
    text = os.fspath(path)
    if not os.path.isabs(text):
        raise InvalidInputError(f"{what} {text!r} is not an absolute path")
    # Overlay's option parser splits on ',' and ':'; lamina's own paths never hold them.
    if any(c in text for c in ",:\n\\"):
        raise InvalidInputError(
            f"{what} {text!r} holds ',', ':' or '\\', which mount options cannot carry"
        )
    return text


def overlay_mount(
    lowerdirs: Sequence[StrPath],
    upper: StrPath | None = None,
    work: StrPath | None = None,
    *,
    extra_options: Sequence[str] = (),
) -> Mount:
    """Describe the overlay of `lowerdirs` (top first); read-write with `upper` and `work`.

    A read-only stack of one layer is a read-only bind mount, since overlayfs wants two lowers
    when it has no upper dir. `index=off` lets one lower dir serve many mounts at once.

    A layer that appears twice (`COPY sub sub` twice makes the same diff_id: BuildKit's
    testCopyOverrideFiles) is kept only where it is topmost: overlayfs refuses a lower dir
    given twice (ELOOP), and the lower copy adds nothing, since everything it holds,
    whiteouts and opaque markers included, the upper copy holds and applies to more.
    """
    lowerdirs = list(dict.fromkeys(lowerdirs))  # keeps the first (topmost) of each
    if not lowerdirs:
        raise InvalidInputError("an overlay mount needs at least one lower dir")
    if len(lowerdirs) > MAX_LOWERDIRS:
        raise InvalidInputError(
            f"{len(lowerdirs)} layers exceed overlayfs' limit of {MAX_LOWERDIRS} lower dirs",
            hint="squash the image into fewer layers",
        )
    lowers = [_check_option_path(p, "lower dir") for p in lowerdirs]
    if (upper is None) != (work is None):
        raise InvalidInputError("an overlay mount needs both an upper and a work dir, or neither")
    if upper is None or work is None:
        if len(lowers) == 1:
            return Mount("bind", lowers[0], ("rbind", "ro"))
        return Mount(
            "overlay",
            "overlay",
            ("index=off", "lowerdir=" + ":".join(lowers), "ro", *extra_options),
        )
    options = (
        "index=off",
        "lowerdir=" + ":".join(lowers),
        "upperdir=" + _check_option_path(upper, "upper dir"),
        "workdir=" + _check_option_path(work, "work dir"),
        *extra_options,
    )
    return Mount("overlay", "overlay", options)


def _compact(m: Mount, linkdir: StrPath) -> Mount:
    """Replace long lowerdir paths by short names relative to `linkdir` (the mount's cwd).

    The kernel reads at most a page of options, which absolute snapshot paths fill at about 50
    layers; symlinks named 0, 1, 2… make the limit the kernel's layer limit instead.
    """
    short = []
    for i, lower in enumerate(m.lowerdirs()):
        os.symlink(lower, os.path.join(linkdir, str(i)))
        short.append(str(i))
    options = tuple(
        "lowerdir=" + ":".join(short) if o.startswith("lowerdir=") else o for o in m.options
    )
    return Mount(m.type, m.source, options, m.target)


def mount(m: Mount, target: StrPath, *, scratch: StrPath | None = None) -> None:
    """Perform `m` on `target` (an existing directory). Raises ToolError when mount(8) fails.

    A deep overlay needs a short-lived directory of short symlink names: it is made in
    `scratch` (the store's own, so nothing is written elsewhere), else beside `target`.
    """
    data = ",".join(m.options)
    linkdir: str | None = None
    try:
        if m.type == "overlay" and len(data) > _MAX_DATA:
            parent = scratch if scratch is not None else os.path.dirname(os.fspath(target))
            os.makedirs(parent, exist_ok=True)
            import tempfile  # only for a stack too long for one mount call

            linkdir = tempfile.mkdtemp(prefix=".lower-", dir=parent)
            m = _compact(m, linkdir)
            data = ",".join(m.options)
        if linkdir is None:
            # The common case: mount(2) itself, no mount(8) process to start.
            _mount_syscall(m, target)
            return
        if m.type == "bind" or "bind" in m.options or "rbind" in m.options:
            if not {"bind", "rbind"} & set(m.options):
                data = ",".join(("rbind", *m.options))
            argv = ["mount", "-o", data, m.source, os.fspath(target)]
        else:
            argv = ["mount", "-t", m.type, "-o", data, m.source, os.fspath(target)]
        # The kernel resolves relative lowerdirs against the caller's cwd: mount(8) gets the
        # link dir as its own, which leaves this process' cwd (shared by all threads) alone.
        import subprocess

        done = subprocess.run(argv, cwd=linkdir, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ToolError(
                f"mount {m.type} on {target} failed: {done.stderr.strip() or done.returncode}",
                hint="check that the kernel supports overlayfs and that lamina runs as root",
            )
    finally:
        # Overlayfs resolved the links while mounting; they are no longer needed.
        if linkdir is not None:

            remove_tree(linkdir)


# mount(2) flags for the options mount(8) would turn into flags rather than pass on.
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC = 32, 4096, 16384
_FLAG_OPTIONS = {"ro": _MS_RDONLY, "nosuid": _MS_NOSUID, "nodev": _MS_NODEV,
                 "noexec": _MS_NOEXEC, "sync": 16, "dirsync": 128, "noatime": 1024,
                 "nodiratime": 2048, "relatime": 1 << 21, "strictatime": 1 << 24,
                 "bind": _MS_BIND, "rbind": _MS_BIND | _MS_REC}  # fmt: skip


def _sys_mount(source: str | None, target: StrPath, fstype: str | None, flags: int,
               data: str | None) -> int:  # fmt: skip
    enc = os.fsencode
    return libc.mount(
        enc(source) if source is not None else None,
        enc(target),
        enc(fstype) if fstype is not None else None,
        flags,
        enc(data) if data else None,
    )


def _mount_syscall(m: Mount, target: StrPath) -> None:
    """What mount(8) does for `m`: flag options become flags, the rest the fs' data; a
    read-only bind is a bind, then a read-only remount of it."""
    flags = 0
    data = []
    for option in m.options:
        if option in _FLAG_OPTIONS:
            flags |= _FLAG_OPTIONS[option]
        elif option != "rw":
            data.append(option)
    bind = m.type == "bind" or bool(flags & _MS_BIND)
    if bind:
        flags |= _MS_BIND | (0 if "bind" in m.options else _MS_REC)
        err = _sys_mount(m.source, target, None, flags & (_MS_BIND | _MS_REC), None)
        if err == 0 and flags & ~(_MS_BIND | _MS_REC):
            err = _sys_mount(None, target, None, flags | _MS_REMOUNT, None)
            if err:
                unmount(target)
    else:
        err = _sys_mount(m.source, target, m.type, flags, ",".join(data))
    if err:
        raise ToolError(
            f"mount {m.type} on {target} failed: {os.strerror(err)}",
            hint="check that the kernel supports overlayfs and that lamina runs as root",
        )


def unmount(target: StrPath) -> None:
    """Unmount `target`; detach it lazily when it is busy. Not mounted is not an error."""
    path = os.fsencode(target)
    err = libc.umount2(path, 0)
    if err == 0:
        return
    if err == errno.EBUSY:
        err = libc.umount2(path, _MNT_DETACH)
        if err == 0:
            return
    if err == errno.EINVAL and not is_mountpoint(target):
        return
    if err == errno.ENOENT:
        return
    raise ToolError(f"unmount {target} failed: {os.strerror(err)}")


@contextmanager
def mounted(m: Mount, target: P, *, scratch: StrPath | None = None) -> Iterator[P]:
    """Mount `m` on `target` for the duration of the block; always unmount afterwards."""
    mount(m, target, scratch=scratch)
    try:
        yield target
    finally:
        unmount(target)


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo octal escapes.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points() -> list[str]:
    """The mount points this process sees, from /proc/self/mountinfo."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return [_unescape(line.split(" ")[4]) for line in f if line.strip()]


def is_mountpoint(path: StrPath) -> bool:
    """Whether something is mounted on `path` (compared after resolving symlinks)."""
    real = os.path.realpath(path)
    return real in mount_points()
