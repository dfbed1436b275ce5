"""Everything lamina knows about whiteouts, in one place.

Two encodings of "deleted" and "this directory replaces the one below" exist:

- in a layer tar (OCI image-spec): an entry ``dir/.wh.<name>`` deletes ``dir/<name>``
  from the layers below; an entry ``dir/.wh..wh..opq`` makes ``dir`` opaque (its lower
  contents are hidden, entries of the same layer stay);
- in an overlayfs directory (a snapshot or a container's upper dir): a 0:0 character
  device deletes, the xattr ``trusted.overlay.opaque=y`` (``user.overlay.opaque`` for
  unprivileged mounts) makes a directory opaque.
"""

from __future__ import annotations

import errno
import os
import stat

from lamina.errors import InvalidInputError

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    from typing import ClassVar

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
_OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")


class Marker:
    """What a tar entry's base name means: `Marker.NONE`, `.WHITEOUT` or `.OPAQUE`, compared
    with `is`. (Not an `enum`: `lamina run` loads this module, and `enum` costs it a
    millisecond and more.)"""

    __slots__ = ("value",)
    NONE: ClassVar[Marker]
    WHITEOUT: ClassVar[Marker]
    OPAQUE: ClassVar[Marker]

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Marker.{self.value.upper()}"


Marker.NONE = Marker("none")
Marker.WHITEOUT = Marker("whiteout")
Marker.OPAQUE = Marker("opaque")


def classify(basename: str) -> tuple[Marker, str]:
    """Return what ``basename`` is and, for a whiteout, the name it deletes.

    Raises InvalidInputError for a whiteout that names nothing, ``.``, ``..`` or another
    ``.wh.`` name: those can only be attempts to delete outside the directory.
    """
    if basename == OPAQUE_MARKER:
        return Marker.OPAQUE, ""
    if not basename.startswith(WHITEOUT_PREFIX):
        return Marker.NONE, basename
    victim = basename[len(WHITEOUT_PREFIX) :]
    if victim in ("", ".", "..") or "/" in victim or victim.startswith(WHITEOUT_PREFIX):
        raise InvalidInputError(f"whiteout {basename!r} does not name a deletable entry")
    return Marker.WHITEOUT, victim


def whiteout_name(name: str) -> str:
    """The tar base name that deletes ``name``."""
    return WHITEOUT_PREFIX + name


def is_overlay_whiteout(st: os.stat_result) -> bool:
    """True for overlayfs' deletion marker: a character device numbered 0:0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_overlay_opaque(xattrs: dict[str, bytes]) -> bool:
    """True when a directory's xattrs mark it opaque in overlayfs."""
    return any(xattrs.get(name) == b"y" for name in OVERLAY_OPAQUE_XATTRS)


def is_overlay_opaque_dir(dir_fd: int) -> bool:
    """True when the directory open as ``dir_fd`` is marked opaque for overlayfs."""
    for name in OVERLAY_OPAQUE_XATTRS:
        try:
            if os.getxattr(dir_fd, name) == b"y":
                return True
        except OSError as e:
            if e.errno not in (errno.ENODATA, errno.ENOTSUP):
                raise
    return False


def is_overlay_xattr(name: str) -> bool:
    """overlayfs' private xattrs: never carried in a layer, never accepted from one."""
    return name.startswith(_OVERLAY_XATTR_PREFIXES)


def make_overlay_whiteout(name: str, dir_fd: int) -> None:
    """Create overlayfs' deletion marker for ``name`` in the directory ``dir_fd``."""
    os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=dir_fd)


def make_overlay_opaque(dir_fd: int) -> None:
    """Mark the directory open as ``dir_fd`` opaque for overlayfs."""
    os.setxattr(f"/proc/self/fd/{dir_fd}", OVERLAY_OPAQUE_XATTRS[0], b"y")
