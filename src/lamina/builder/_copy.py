"""COPY and ADD: select sources, summarise them for the cache key, stage them as a layer.

The staging directory receives exactly what the step adds: the copied entries and the
directories above the destination (with the metadata they have in the image, or new
ones). It is then written as a layer and renamed into place as that layer's snapshot.
"""

from __future__ import annotations

import errno
import os
import posixpath
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamina.dockerfile import ContextFile, Copy, IgnoreRules, select_sources
from lamina.errors import InvalidInputError
from lamina.layers import Compression, resolve_in_root, sniff_compression

if TYPE_CHECKING:
    from lamina.layers import Change

_WILDCARD = ("*", "?", "[")


@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int


@dataclass
class Selection:
    """What one COPY/ADD takes: per source word, its entries and whether it named a dir."""

    root: Path
    words: list[tuple[str, list[ContextFile], bool]] = field(default_factory=list)
    downloads: list[tuple[str, Path]] = field(default_factory=list)  # (name, file)

    def files(self) -> list[ContextFile]:
        return [f for _, files, _ in self.words for f in files]


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _is_dir_source(root: Path, word: str) -> bool:
    if any(c in word for c in _WILDCARD):
        return True
    resolved = resolve_in_root(root, word)
    return not resolved.missing and os.path.isdir(resolved.host_path(root))


def select(inst: Copy, root: Path, ignore: IgnoreRules | None) -> Selection:
    """Stat (never read) the entries each source word takes from `root`."""
    sel = Selection(root)
    for word in inst.sources:
        if word.startswith("<<") or (inst.is_add and is_url(word)):
            continue
        files = select_sources(root, [word], ignore, inst.excludes)
        sel.words.append((word, files, _is_dir_source(root, word)))
    return sel


def parse_chmod(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        mode = int(text, 8)
    except ValueError:
        raise InvalidInputError(f"--chmod={text}: lamina takes an octal mode") from None
    if not 0 <= mode <= 0o7777:
        raise InvalidInputError(f"--chmod={text}: out of range")
    return mode


def summarise(
    sel: Selection,
    digests: dict[str, str],
    owner: Owner | None,
    chmod: int | None,
    keep_owner: bool,
) -> list[tuple[str, str]]:
    """(path, what it becomes) per entry: the cache key's view of the sources (no mtimes)."""
    out: list[tuple[str, str]] = []
    for _word, files, _ in sel.words:
        for f in files:
            mode = stat.S_IMODE(f.mode) if chmod is None else chmod
            if owner is not None:
                uid, gid = owner.uid, owner.gid
            elif keep_owner:
                uid, gid = f.uid, f.gid
            else:
                uid, gid = 0, 0
            content = digests.get(f.path) or f.link_target or ""
            out.append((f.path, f"{f.kind}:{mode:o}:{uid}:{gid}:{f.dest}:{content}"))
    return out


def _is_archive(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(512)
    if sniff_compression(head) is not Compression.NONE:
        return True
    return len(head) == 512 and head[257:262] == b"ustar"


class Stager:
    """Fills a staging directory for one COPY/ADD."""

    def __init__(self, staging: Path, view: Path | None, owner: Owner | None,
                 chmod: int | None, keep_owner: bool, direct: bool = False) -> None:  # fmt: skip
        self.staging = staging
        # Direct: entries are not copied, only described (layer path → Change of the source).
        self.direct: dict[str, Change] | None = {} if direct else None
        self.view = view
        self.owner = owner
        self.chmod = chmod
        self.keep_owner = keep_owner
        self._links: dict[tuple[int, int], str] = {}
        self._dirs: list[tuple[str, int, int]] = []

    def _image_path(self, path: str) -> tuple[str, bool]:
        """`path` resolved inside the image, and whether it is a directory there."""
        if self.view is None:
            return posixpath.normpath(path), False
        resolved = resolve_in_root(self.view, path)
        real = resolved.path()
        if resolved.missing:
            return real, False
        return real, os.path.isdir(os.path.join(self.view, real.lstrip("/")))

    def make_dirs(self, path: str) -> str:
        """Create `path` (absolute, in the image) and its parents in the staging dir, each
        with the image's own metadata if it exists there; return the staging path."""
        real, _ = self._image_path(path)
        parts = [p for p in real.split("/") if p]
        current = str(self.staging)
        for i, name in enumerate(parts):
            current = os.path.join(current, name)
            if os.path.isdir(current) and not os.path.islink(current):
                continue
            image_st = None
            if self.view is not None:
                try:
                    image_st = os.stat(os.path.join(self.view, *parts[: i + 1]),
                                       follow_symlinks=False)  # fmt: skip
                except FileNotFoundError:
                    image_st = None
            os.mkdir(current)
            if image_st is not None and stat.S_ISDIR(image_st.st_mode):
                os.chmod(current, stat.S_IMODE(image_st.st_mode))
                os.chown(current, image_st.st_uid, image_st.st_gid)
                self._dirs.append((current, image_st.st_mtime_ns, image_st.st_atime_ns))
            else:
                os.chmod(current, 0o755)
                if self.owner is not None:
                    os.chown(current, self.owner.uid, self.owner.gid)
        return current

    def destination(self, dest: str, workdir: str, single_file: bool) -> tuple[str, str | None]:
        """(staging dir to copy into, file name for a single file or None)."""
        absolute = posixpath.normpath(posixpath.join(workdir, dest))
        if dest.endswith("/") or not single_file:
            return self.make_dirs(absolute), None
        _, is_dir = self._image_path(absolute)
        if is_dir or absolute == "/":
            return self.make_dirs(absolute), None
        parent, name = posixpath.split(absolute)
        return self.make_dirs(parent), name

    def _owner_of(self, f: ContextFile) -> tuple[int, int]:
        if self.owner is not None:
            return self.owner.uid, self.owner.gid
        if self.keep_owner:
            return f.uid, f.gid
        return 0, 0

    def put_entry(self, root: Path, f: ContextFile, target: str) -> None:
        source = os.path.join(root, f.path)
        uid, gid = self._owner_of(f)
        mode = stat.S_IMODE(f.mode) if self.chmod is None else self.chmod
        if self.direct is not None:
            from lamina.layers import Change, ChangeKind

            if f.kind == "symlink":
                mode = stat.S_IMODE(f.mode)
            elif f.kind not in ("file", "dir"):
                return
            rel = os.path.relpath(target, self.staging)
            st = _with_owner(os.lstat(source), mode, uid, gid)
            self.direct[rel] = Change(rel, ChangeKind.ADD, source, st)
            return
        if f.kind == "dir":
            if not os.path.isdir(target) or os.path.islink(target):
                _remove(target)
                os.makedirs(target)
            os.chown(target, uid, gid)
            os.chmod(target, mode)
            self._dirs.append((target, f.mtime_ns, f.mtime_ns))
            return
        if f.kind == "symlink":
            _remove(target)
            os.symlink(f.link_target or "", target)
            os.lchown(target, uid, gid)
            os.utime(target, ns=(f.mtime_ns, f.mtime_ns), follow_symlinks=False)
            return
        if f.kind == "file":
            self._copy_file(source, target, uid, gid, mode, f.mtime_ns)
        elif stat.S_ISFIFO(f.mode):
            _remove(target)
            os.mkfifo(target)
            os.chown(target, uid, gid)
            os.chmod(target, mode)
        # Devices and sockets are not copied from a build context.

    def _copy_file(self, source: str, target: str, uid: int, gid: int, mode: int,
                   mtime_ns: int) -> None:  # fmt: skip
        src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            st = os.fstat(src)
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self._links:
                _remove(target)
                os.link(self._links[key], target)
                return
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                dst = os.open(target, flags, 0o600)
            except FileExistsError:
                _remove(target)
                dst = os.open(target, flags, 0o600)
            try:
                _copy_data(src, dst, st.st_size)
                os.fchown(dst, uid, gid)
                os.fchmod(dst, mode)
                os.utime(dst, ns=(mtime_ns, mtime_ns))
            finally:
                os.close(dst)
            if st.st_nlink > 1:
                self._links[key] = target
        finally:
            os.close(src)

    def put_bytes(self, target: str, data: bytes, mode: int) -> None:
        _remove(target)
        with open(target, "wb") as out:
            out.write(data)
        uid, gid = (self.owner.uid, self.owner.gid) if self.owner else (0, 0)
        os.chown(target, uid, gid)
        os.chmod(target, mode if self.chmod is None else self.chmod)

    def extract(self, archive: str, target_dir: str) -> None:
        """ADD of a local archive: unpacked through the safe applier (plain mode)."""
        from lamina.layers import Limits, apply_layer, open_layer_reader

        with open(archive, "rb") as f:
            apply_layer(open_layer_reader(f), target_dir, overlay=False, limits=Limits())

    def finish(self) -> None:
        # Directory mtimes last: creating children moved them.
        for path, mtime, atime in reversed(self._dirs):
            os.utime(path, ns=(atime, mtime))


def _with_owner(st: os.stat_result, mode: int, uid: int, gid: int) -> os.stat_result:
    """`st` as the layer should record it: permission bits and owner replaced."""
    reduced: Any = st.__reduce__()
    fields, hidden = reduced[1]
    values = list(fields)
    values[0] = stat.S_IFMT(st.st_mode) | mode
    values[4], values[5] = uid, gid
    return os.stat_result(values, hidden)


def _copy_data(src: int, dst: int, size: int) -> None:
    remaining = size
    in_kernel = True
    while remaining > 0:
        if in_kernel:
            try:
                n = os.copy_file_range(src, dst, min(remaining, 1 << 30))
            except OSError as exc:
                # Across file systems (an overlay view → the store) older kernels refuse.
                if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
                in_kernel = False
                continue
        else:
            n = os.sendfile(dst, src, None, min(remaining, 1 << 30))
        if n == 0:
            break
        remaining -= n


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def stage(
    inst: Copy,
    sel: Selection,
    stager: Stager,
    workdir: str,
    heredocs: Sequence[tuple[str, bytes]] = (),
) -> None:
    """Put everything `inst` copies into the stager's staging directory."""
    entries = len(sel.words) + len(sel.downloads) + len(heredocs)
    single = entries == 1 and (
        (len(sel.words) == 1 and not sel.words[0][2]) or bool(sel.downloads) or bool(heredocs)
    )
    if entries > 1 and not inst.dest.endswith("/"):
        raise InvalidInputError(
            f"{inst.loc}: when copying more than one source, the destination "
            f"{inst.dest!r} must be a directory and end with a /"
        )
    into, name = stager.destination(inst.dest, workdir, single)
    for _word, files, is_dir in sel.words:
        if not is_dir and len(files) == 1:
            f = files[0]
            target = os.path.join(into, name or f.dest)
            if inst.is_add and f.kind == "file" and _is_archive(os.path.join(sel.root, f.path)):
                stager.extract(os.path.join(sel.root, f.path), into)
                continue
            stager.put_entry(sel.root, f, target)
            continue
        for f in files:
            stager.put_entry(sel.root, f, os.path.join(into, f.dest))
    for base, path in sel.downloads:
        target = os.path.join(into, name or base)
        _remove(target)
        shutil.copyfile(path, target)
        uid, gid = (stager.owner.uid, stager.owner.gid) if stager.owner else (0, 0)
        os.chown(target, uid, gid)
        os.chmod(target, 0o600 if stager.chmod is None else stager.chmod)
    for doc_name, data in heredocs:
        stager.put_bytes(os.path.join(into, name or doc_name), data, 0o644)
    stager.finish()
