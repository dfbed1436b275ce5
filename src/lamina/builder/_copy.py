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
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamina._rmtree import remove_tree
from lamina.dockerfile import Chmod, ContextFile, Copy, IgnoreRules, select_parents, select_sources
from lamina.errors import InvalidInputError
from lamina.layers import Compression, resolve_in_root, sniff_compression

if TYPE_CHECKING:
    from lamina.layers import Change


@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int


@dataclass
class Selection:
    """What one COPY/ADD takes: per source word, its entries and what it matched.

    ``matched`` lists each path the word named or its wildcard matched, and whether it
    is a directory (then its contents are the entries, as Docker copies them).
    """

    root: Path
    words: list[tuple[str, list[ContextFile], list[tuple[str, bool]]]] = field(default_factory=list)
    # (name, file, Last-Modified as a timestamp or None)
    downloads: list[tuple[str, Path, float | None]] = field(default_factory=list)

    def files(self) -> list[ContextFile]:
        return [f for _, files, _ in self.words for f in files]


def is_url(source: str) -> bool:
    """An http(s) source ADD downloads (a git repository URL is not one)."""
    from ._git import is_git_source

    return source.startswith(("http://", "https://")) and not is_git_source(source)


def is_remote(source: str) -> bool:
    """Not taken from the context: a download or a git repository."""
    from ._git import is_git_source

    return is_url(source) or is_git_source(source)


def select(inst: Copy, root: Path, ignore: IgnoreRules | None) -> Selection:
    """Stat (never read) the entries each source word takes from `root`."""
    sel = Selection(root)
    for word in inst.sources:
        if word.startswith("<<") or (inst.is_add and is_remote(word)):
            continue
        if is_remote(word):  # BuildKit's dispatchCopy words
            what = "a URL" if is_url(word) else "a git ref"
            raise InvalidInputError(f"{inst.loc}: source can't be {what} for COPY")
        if inst.parents:
            files = select_parents(root, [word], ignore, inst.excludes)
            sel.words.append((word, files, [("", True)]))
            continue
        matched: list[tuple[str, bool]] = []
        try:
            files = select_sources(root, [word], ignore, inst.excludes, matched)
        except InvalidInputError as exc:
            if inst.is_add:  # the selector speaks of COPY
                exc.message = exc.message.replace("COPY source", "ADD source", 1)
                exc.args = (exc.message, *exc.args[1:])
            raise
        sel.words.append((word, files, matched))
    return sel


def _new_mode(f: ContextFile, chmod: Chmod | None) -> int:
    if chmod is None or f.kind == "symlink":
        return stat.S_IMODE(f.mode)
    return chmod.apply(f.mode, f.kind == "dir")


def summarise(
    sel: Selection,
    digests: dict[str, str],
    owner: Owner | None,
    chmod: Chmod | None,
    keep_owner: bool,
) -> list[tuple[str, str]]:
    """(path, what it becomes) per entry: the cache key's view of the sources (no mtimes)."""
    out: list[tuple[str, str]] = []
    for _word, files, _ in sel.words:
        for f in files:
            mode = _new_mode(f, chmod)
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
    """A tar, plain or compressed, as BuildKit's isArchivePath decides: the (decompressed)
    start must read as a tar header; a gzip file that holds no tar is copied as a file."""
    with open(path, "rb") as f:
        head = f.read(512)
        if sniff_compression(head) is not Compression.NONE:
            from lamina.layers import open_layer_reader

            f.seek(0)
            try:
                head = open_layer_reader(f).read(512)
            except Exception:
                return False
    return len(head) == 512 and (head[257:262] == b"ustar" or _v7_checksum_ok(head))


def _v7_checksum_ok(head: bytes) -> bool:
    try:
        recorded = int(head[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    return recorded == sum(head[:148]) + 8 * 32 + sum(head[156:]) and head[0] != 0


class Stager:
    """Fills a staging directory for one COPY/ADD."""

    def __init__(self, staging: Path, view: Path | None, owner: Owner | None,
                 chmod: Chmod | None, keep_owner: bool, direct: bool = False,
                 dir_mode: int = 0o755) -> None:  # fmt: skip
        self.staging = staging
        self._staging_prefix = os.path.join(staging, "")
        # Direct: entries are not copied, only described (layer path → Change of the source).
        self.direct: dict[str, Change] | None = {} if direct else None
        self.context_paths: dict[str, str] = {}  # direct: layer path → context path (files)
        self.view = view
        self.owner = owner
        self.chmod = chmod
        self.keep_owner = keep_owner
        # New directories above the destination: 0755, or an octal --chmod (BuildKit's
        # testCopyChmod: `COPY --chmod=777 foo /parent/foo` makes /parent 0777).
        self.dir_mode = chmod.octal if chmod is not None and chmod.octal is not None else dir_mode
        self._links: dict[tuple[int, int], str] = {}
        self._dirs: list[tuple[str, int, int]] = []
        self._in_view: dict[str, bool] = {}  # staging dir → is a directory in the image

    def _image_lstat(self, target: str) -> os.stat_result | None:
        """What the image holds at staging path `target` (not followed), or None. Only
        looked up when its parent is a directory in the image (one lstat per new dir)."""
        if self.view is None:
            return None
        parent = os.path.dirname(target)
        known = self._in_view.get(parent)
        if known is None:
            st = self._image_lstat(parent) if parent != str(self.staging) else None
            known = parent == str(self.staging) or (st is not None and stat.S_ISDIR(st.st_mode))
            self._in_view[parent] = known
        if not known:
            return None
        try:
            return os.lstat(os.path.join(self.view, _below(target, self._staging_prefix)))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _check_replace(self, target: str, is_dir: bool) -> None:
        """BuildKit's copier never swaps a directory and a non-directory of the image:
        a directory onto a file or symlink is "cannot copy to non-directory", a file onto a
        directory "cannot replace directory with file" (fsutil copyDirectoryOnly and
        ensureEmptyFileTarget). lamina used to replace them silently (a tree with `lib/`
        copied to / turned a merged-usr /lib symlink into an empty directory)."""
        st = self._image_lstat(target)
        if st is None or stat.S_ISDIR(st.st_mode) == is_dir:
            return
        where = "/" + _below(target, self._staging_prefix)
        if is_dir:
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "a file"
            raise InvalidInputError(
                f"cannot copy to non-directory: {where} is {kind} in the image",
                hint="copy to the path the symlink leads to, or remove it in an earlier step",
            )
        raise InvalidInputError(
            f"cannot replace directory {where} with a file",
            hint="remove the directory in an earlier step, or copy to another path",
        )

    def _image_path(self, path: str) -> tuple[str, bool]:
        """`path` resolved inside the image, and whether it is a directory there."""
        if self.view is None:
            return posixpath.normpath(path), False
        resolved = resolve_in_root(self.view, path)
        real = resolved.path()
        if resolved.missing:
            return real, False
        return real, os.path.isdir(os.path.join(self.view, real.lstrip("/")))

    def make_dirs(self, path: str, replace: bool = False) -> str:
        """Create `path` (absolute, in the image) and its parents in the staging dir, each
        with the image's own metadata if it exists there; return the staging path. A file
        of the image in the way is an error (BuildKit's MkdirAll fails: not a directory),
        unless `replace` (an archive's entries replace what is there, as Docker's untar)."""
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
            if image_st is not None and not stat.S_ISDIR(image_st.st_mode) and not replace:
                raise InvalidInputError(
                    f"not a directory: /{'/'.join(parts[: i + 1])} is a file in the image",
                    hint="copy to another path, or remove the file in an earlier step",
                )
            os.mkdir(current)
            if image_st is not None and stat.S_ISDIR(image_st.st_mode):
                os.chmod(current, stat.S_IMODE(image_st.st_mode))
                os.chown(current, image_st.st_uid, image_st.st_gid)
                self._dirs.append((current, image_st.st_mtime_ns, image_st.st_atime_ns))
            else:
                os.chmod(current, self.dir_mode)
                if self.owner is not None:
                    os.chown(current, self.owner.uid, self.owner.gid)
        return current

    def _owner_of(self, f: ContextFile) -> tuple[int, int]:
        if self.owner is not None:
            return self.owner.uid, self.owner.gid
        if self.keep_owner:
            return f.uid, f.gid
        return 0, 0

    def put_entry(self, root: Path, f: ContextFile, target: str) -> None:
        source = os.path.join(root, f.path)
        uid, gid = self._owner_of(f)
        mode = _new_mode(f, self.chmod)
        self._check_replace(target, f.kind == "dir")
        if stat.S_ISSOCK(f.mode):
            # BuildKit copies a socket as an empty regular file (testCopySocket).
            self.put_bytes_as(target, b"", uid, gid, mode)
            return
        if self.direct is not None:
            from lamina.layers import Change, ChangeKind

            if f.kind == "symlink":
                mode = stat.S_IMODE(f.mode)
            elif f.kind not in ("file", "dir"):
                return
            rel = _below(target, self._staging_prefix)
            st = _with_owner(f.st if f.st is not None else os.lstat(source), mode, uid, gid)
            self.direct[rel] = Change(rel, ChangeKind.ADD, source, st)
            if f.kind == "file":
                self.context_paths[rel] = f.path
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

    def put_bytes_as(self, target: str, data: bytes, uid: int, gid: int, mode: int) -> None:
        _remove(target)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, data)
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)

    def put_bytes(self, target: str, data: bytes, mode: int) -> None:
        self._check_replace(target, False)
        _remove(target)
        with open(target, "wb") as out:
            out.write(data)
        uid, gid = (self.owner.uid, self.owner.gid) if self.owner else (0, 0)
        os.chown(target, uid, gid)
        os.chmod(target, mode if self.chmod is None else self.chmod.apply(mode, False))

    def extract(self, archive: str, image_dir: str) -> None:
        """ADD of a local archive into `image_dir` (absolute, in the image), unpacked
        through the safe applier (plain mode). Entries whose parents are symlinks in the
        image land where those lead, inside the image, as BuildKit's chrooted untar puts
        them (testDockerfileAddArchiveThroughAbsoluteSymlink)."""
        from lamina.layers import Limits, apply_layer, open_layer_reader

        into = self.make_dirs(image_dir, replace=True)
        unpacked = into if self.view is None else tempfile.mkdtemp(
            prefix=".unpack-", dir=self.staging.parent
        )  # fmt: skip
        try:
            with open(archive, "rb") as f:
                apply_layer(open_layer_reader(f), unpacked, overlay=False, limits=Limits())
            if unpacked != into:
                self._place(unpacked, image_dir)
        finally:
            if unpacked != into:
                remove_tree(unpacked)
        if self.owner is not None:
            # --chown applies to what the archive holds too (testDockerfileAddChownArchive).
            for top, dirs, files in os.walk(into):
                for name in (*dirs, *files):
                    os.lchown(os.path.join(top, name), self.owner.uid, self.owner.gid)

    def _place(self, unpacked: str, image_dir: str) -> None:
        """Move an unpacked tree into the staging dir, each entry at its path as resolved
        in the image (one file system: entries are renamed, hard links stay links)."""
        for top, dirs, files in os.walk(unpacked):
            rel_top = os.path.relpath(top, unpacked)
            for name in (*dirs, *files):
                source = os.path.join(top, name)
                image_path = posixpath.normpath(posixpath.join(image_dir, rel_top, name))
                st = os.lstat(source)
                if stat.S_ISDIR(st.st_mode):
                    real, _ = self._image_path(image_path)
                    target = self.make_dirs(real, replace=True)
                    os.chown(target, st.st_uid, st.st_gid)
                    os.chmod(target, stat.S_IMODE(st.st_mode))
                    self._dirs.append((target, st.st_mtime_ns, st.st_atime_ns))
                    continue
                parent, _ = self._image_path(posixpath.dirname(image_path))
                target = os.path.join(self.make_dirs(parent, replace=True), name)
                _remove(target)
                os.rename(source, target)

    def finish(self) -> None:
        # Directory mtimes last: creating children moved them.
        for path, mtime, atime in reversed(self._dirs):
            os.utime(path, ns=(atime, mtime))


def _below(path: str, prefix: str) -> str:
    """`path` relative to the directory `prefix` (ending in a separator) it lies under."""
    if path.startswith(prefix):
        return posixpath.normpath(path[len(prefix) :])
    return os.path.relpath(path, prefix)


def _with_owner(st: os.stat_result, mode: int, uid: int, gid: int) -> os.stat_result:
    """`st` as the layer should record it: permission bits and owner replaced."""
    if st.st_uid == uid and st.st_gid == gid and stat.S_IMODE(st.st_mode) == mode:
        return st
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


def dest_is_dir_form(dest: str) -> bool:
    """A destination that names a directory by its spelling: a trailing ``/`` (or
    ``/.``), ``.`` or empty (BuildKit's pathRelativeToWorkingDir keeps that slash)."""
    return dest in ("", ".") or dest.endswith(("/", "/."))


def stage(
    inst: Copy,
    sel: Selection,
    stager: Stager,
    workdir: str,
    heredocs: Sequence[tuple[str, bytes]] = (),
    unpack: bool | None = None,
    trees: Sequence[tuple[Path, list[ContextFile]]] = (),
) -> None:
    """Put everything `inst` copies into the stager's staging directory.

    Docker's destination rules: a directory source (or wildcard match) copies its
    contents into the destination; a file lands *in* the destination when that ends
    with ``/`` or is a directory in the image (symlinks followed inside the image),
    else *as* it (an existing file or a symlink's target is replaced); a local tar
    (ADD, unless ``--unpack=false``) is unpacked into the destination, created if
    missing. Several sources (or matches) need a directory destination. `trees` (a
    git checkout and its entries) copy their contents into the destination.
    """
    absolute = posixpath.normpath(posixpath.join(workdir, inst.dest or "."))
    real, exists_as_dir = stager._image_path(absolute)
    into_dir = dest_is_dir_form(inst.dest) or exists_as_dir or absolute == "/"
    do_unpack = inst.is_add if unpack is None else unpack
    tops = [f for _, files, _ in sel.words for f in files if f.top and not inst.parents]
    # Archives unpack into <dest> as a directory (BuildKit testDockerfileAddArchiveWildcard:
    # `ADD *.tar /dest` unpacks each), so they never count as files landing *as* <dest>.
    archives = {f.path for f in tops if do_unpack and f.kind == "file"
                and _is_archive(os.path.join(sel.root, f.path))}  # fmt: skip
    dir_matches = sum(1 for _, _, matched in sel.words for _, is_dir in matched if is_dir)
    singles = len(tops) - len(archives) + len(sel.downloads) + len(heredocs)
    if not into_dir and singles and singles + dir_matches + len(archives) > 1:
        raise InvalidInputError(
            f"{inst.loc}: when copying more than one source, the destination "
            f"{inst.dest!r} must be a directory and end with a /"
        )

    def file_target(name: str) -> str:
        if into_dir:
            return os.path.join(stager.make_dirs(absolute), name)
        parent, base = posixpath.split(real)
        return os.path.join(stager.make_dirs(parent), base)

    for _word, files, matched in sel.words:
        into: str | None = None  # the destination dir in the staging dir, once made
        if any(is_dir for _, is_dir in matched):
            into = stager.make_dirs(absolute)
        for f in files:
            if f.top and not inst.parents:
                source = os.path.join(sel.root, f.path)
                if f.path in archives:
                    stager.extract(source, absolute)
                    into = None  # the archive may have put anything there
                    continue
                stager.put_entry(sel.root, f, file_target(f.dest))
                continue
            if into is None:
                into = stager.make_dirs(absolute)  # resolved in the image once, not per file
            target = os.path.join(into, f.dest)
            if inst.parents:
                os.makedirs(os.path.dirname(target), exist_ok=True)
            stager.put_entry(sel.root, f, target)
    for root, files in trees:
        into = stager.make_dirs(absolute)
        for f in files:
            stager.put_entry(root, f, os.path.join(into, f.dest))
    for base, path, mtime in sel.downloads:
        if unpack and _is_archive(str(path)):
            stager.extract(str(path), absolute)
            continue
        target = file_target(base)
        stager._check_replace(target, False)
        _remove(target)
        shutil.copyfile(path, target)
        uid, gid = (stager.owner.uid, stager.owner.gid) if stager.owner else (0, 0)
        os.chown(target, uid, gid)
        chmod = stager.chmod
        os.chmod(target, 0o600 if chmod is None else chmod.apply(0o600, False))
        if mtime is not None:  # the server's Last-Modified, as BuildKit sets it
            os.utime(target, (mtime, mtime))
    for doc_name, data in heredocs:
        stager.put_bytes(file_target(doc_name), data, 0o644)
    stager.finish()
