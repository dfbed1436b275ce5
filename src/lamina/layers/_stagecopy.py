"""Changes whose sources live elsewhere (a COPY from the build context) copied straight
into a layer's snapshot directory, one entry at a time, in layer order.

``DirectCopy(directory, changes)`` is the copier ``write_layer(..., copier=...)`` calls
for each entry as it writes the tar: it makes the entry under ``directory`` and, for a
regular file, opens the source, so the writer reads each body once into its buffer,
hashes it and hands the same bytes to the copy: the layer is never written as a tar and
parsed back, and no byte is read twice. Headers still come from each change's own
``st``, source xattrs and link target, so the tar (and its diff_id) is the one
``write_layer`` gives for the same changes read from their sources. The snapshot gets
what the applier would give from that tar: owner, mode, xattrs, and the tar's mtime
(whole seconds, clamped to ``source_date_epoch``). A sparse source is copied in the
kernel, holes kept, and its body read from the copy.

Directories, symlinks and sparse files are made here, at once. Regular files' copies
are made where they cannot slow the reader (``_Files``): a copy of many files (or many
bytes) starts a process of its own (``_copyworker.py``, ``_WorkerFiles``), which creates
and writes each file from a shared ring the reader copies the bytes into, and asks the
kernel to read the sources ahead of the reader (``posix_fadvise(WILLNEED)``), so a cold
context's reads overlap instead of waiting one file at a time. Being another process,
its tens of thousands of system calls never take the reader's GIL. A small copy (or one
where no process can start) writes each file right here (``_LocalFiles``).

``previous`` (layer path → that path in an earlier, committed snapshot of the same COPY,
whose content the caller knows to be the source's): such a file is hardlinked from there
instead of written again, when the old inode's type, size, mode, owner, mtime and xattrs
are exactly what this entry's header says; its body is then read from the link to be
hashed. No inode is made and no byte written; the tar (made from the change's own
``st``) is the one a fresh copy gives, and the two snapshots share an inode nothing ever
writes (overlayfs copies a lower file up before changing it).
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import select
import stat
import subprocess
import sys
import weakref
from collections.abc import Mapping, Sequence
from typing import Protocol

from lamina.errors import InvalidInputError, LaminaError
from lamina.layers import _copyworker as _w
from lamina.layers import _whiteout
from lamina.layers._changes import Change, ChangeKind

_NOATIME = getattr(os, "O_NOATIME", 0)
_BIG = 1 << 30
_READ_AHEAD = 128 << 20  # bytes the read-ahead may run ahead of the copy
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# A copy of at least this many files (or bytes) gets the copying process: below, its
# start (~20 ms) costs more than writing the files here.
_WORKER_MIN_FILES = 1000
_WORKER_MIN_BYTES = 64 << 20


def worth_a_process(files: int, size: int) -> bool:
    """Whether `files` files of `size` bytes in all are enough work for a helper process
    (copying or reading ahead) that takes ~20 ms to start."""
    return files >= _WORKER_MIN_FILES or size >= _WORKER_MIN_BYTES


_RING = 32 << 20  # the shared ring the reader copies file bytes into
_WHOLE = 1 << 20  # a file up to this size is one record (its bytes in one ring range)
_FLUSH_RECORDS = 64 << 10  # records are sent once this many bytes of them wait...
_FLUSH_BYTES = 1 << 20  # ...or once they stand for this many bytes of the ring
_TAKEN_STEP = 4 << 20  # how often the reader's progress is told to the read-ahead
# The copying process runs layers/_copyworker.py by path (its docstring has the
# protocol): only stdlib, no lamina import, so `python -I -S` starts in ~20 ms.
_WORKER = os.path.join(os.path.dirname(__file__), "_copyworker.py")


def header_mtime(st: os.stat_result, source_date_epoch: int | None) -> int:
    """The mtime a tar header records: whole seconds, clamped to ``source_date_epoch``."""
    mtime = st.st_mtime_ns // 1_000_000_000
    if source_date_epoch is not None and mtime > source_date_epoch:
        mtime = source_date_epoch
    return mtime


def _open_source(path: str) -> int:
    try:
        return os.open(path, _READ | _NOATIME)
    except PermissionError:
        return os.open(path, _READ)  # O_NOATIME needs ownership or CAP_FOWNER


class ReadAhead:
    """Asks the kernel to read ``files`` ((path, size), in the order a reader will read
    them) ahead of that reader, at most `_READ_AHEAD` bytes beyond what it has taken
    (``taken``): in a process of its own (the copying process's, reading ahead only),
    so the system calls never take the reader's GIL; in a thread if no process starts.
    The process also ends when this side goes away (its stdin closes)."""

    def __init__(self, files: Sequence[tuple[str, int]]) -> None:
        self._thread: _w.Prefetch | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._told = 0
        try:
            list_fd = _listing(files)
            try:
                self._proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", _WORKER, "/", "-1", "0", str(list_fd),
                     str(_READ_AHEAD)],
                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    pass_fds=(list_fd,),
                )  # fmt: skip
            finally:
                os.close(list_fd)
        except OSError:
            self._thread = _w.Prefetch(_encoded(files), _READ_AHEAD)
        # Dropped without close() (a step that failed): stopped all the same.
        self._end = weakref.finalize(self, _stop_reading, self._thread, self._proc)

    def taken(self, total: int) -> None:
        """The reader has read `total` bytes of the files."""
        if self._thread is not None:
            self._thread.take(total)
        elif self._proc is not None and self._proc.stdin and total - self._told >= _TAKEN_STEP:
            self._told = total
            record = _w.TAKEN.pack(_w.OP_TAKEN, total)
            with contextlib.suppress(OSError):  # it ended: nothing more is read ahead
                os.write(self._proc.stdin.fileno(), _w.LENGTH.pack(len(record)) + record)

    def close(self) -> None:
        self._end()
        self._thread = self._proc = None

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _encoded(files: Sequence[tuple[str, int]]) -> list[tuple[bytes, int]]:
    return [(os.fsencode(path), size) for path, size in files]


def _stop_reading(thread: _w.Prefetch | None, proc: subprocess.Popen[bytes] | None) -> None:
    if thread is not None:
        thread.stop()
    if proc is not None:
        if proc.stdin is not None:
            proc.stdin.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _listing(files: Sequence[tuple[str, int]]) -> int:
    """A memfd listing `files` as the copying process reads them (`SOURCE` records)."""
    fd = os.memfd_create("lamina-copy-sources", os.MFD_CLOEXEC)
    try:
        data = b"".join(_w.SOURCE.pack(size, len(raw)) + raw for raw, size in _encoded(files))
        _write_all(fd, memoryview(data))
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


class _Files(Protocol):
    """Where regular files' copies are made, in the order they are given: a file is
    ``begin``, its bytes ``write`` (exactly the size given), then ``end``."""

    def begin(self, rel: str, size: int) -> None: ...

    def write(self, data: memoryview) -> None: ...

    def end(self, st: os.stat_result, xattrs: dict[str, bytes], mtime: int, name: str) -> None: ...

    def link(self, first: str, rel: str) -> None:
        """``rel`` made a hardlink of ``first`` (a file given before)."""
        ...

    def taken(self, total: int) -> None:
        """The reader has read `total` bytes of the sources listed at the start."""
        ...

    def finish(self) -> None:
        """Every file given is made (or the first failure raised)."""
        ...

    def close(self) -> None: ...


class _LocalFiles:
    """Each file made right here, as its bytes come (a small copy; or no process)."""

    def __init__(self, directory: str, ahead: list[tuple[str, int]]) -> None:
        self._dir = directory
        self._fd = -1
        big = sum(s for _, s in ahead) > _READ_AHEAD
        self._prefetch = _w.Prefetch(_encoded(ahead), _READ_AHEAD) if big else None

    def begin(self, rel: str, size: int) -> None:
        self._fd = os.open(os.path.join(self._dir, rel), _CREATE, 0o600)

    def write(self, data: memoryview) -> None:
        _write_all(self._fd, data)

    def end(self, st: os.stat_result, xattrs: dict[str, bytes], mtime: int, name: str) -> None:
        fd, self._fd = self._fd, -1
        try:
            _set_metadata(fd, st, xattrs, mtime, name)
        finally:
            os.close(fd)

    def link(self, first: str, rel: str) -> None:
        os.link(os.path.join(self._dir, first), os.path.join(self._dir, rel),
                follow_symlinks=False)  # fmt: skip

    def taken(self, total: int) -> None:
        if self._prefetch is not None:
            self._prefetch.take(total)

    def finish(self) -> None:
        self.close()

    def close(self) -> None:
        if self._prefetch is not None:
            self._prefetch.stop()
            self._prefetch = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _WorkerFiles:
    """Each file made by the copying process (``_copyworker.py``; its docstring has the
    protocol), from the bytes this side copies into a shared ring. Records are sent in
    batches; the worker answers how far it is done with the ring, and this side waits
    for that only when the ring is full. Raises OSError if the process cannot start."""

    def __init__(self, directory: str, ahead: list[tuple[str, int]]) -> None:
        ring_fd = os.memfd_create("lamina-copy-ring", os.MFD_CLOEXEC)
        list_fd = -1
        try:
            os.ftruncate(ring_fd, _RING)
            self._map = mmap.mmap(ring_fd, _RING)
            list_fd = _listing(ahead)
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", _WORKER, directory, str(ring_fd), str(_RING),
                 str(list_fd), str(_READ_AHEAD)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                pass_fds=(ring_fd, list_fd),
            )  # fmt: skip
        except BaseException:
            with contextlib.suppress(AttributeError):
                self._map.close()
            raise
        finally:
            os.close(ring_fd)
            if list_fd >= 0:
                os.close(list_fd)
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._to, self._from = self._proc.stdin.fileno(), self._proc.stdout.fileno()
        os.set_blocking(self._from, False)
        self._ring = memoryview(self._map)
        self._head = 0  # ring bytes handed out (a running total; the offset is mod _RING)
        self._released = 0  # the running total through which the worker is done
        self._acks = bytearray()
        self._records = bytearray()
        self._unsent = 0  # ring bytes the waiting records stand for
        self._told = 0  # the reader's progress last told to the read-ahead
        self._whole: tuple[str, int, int] | None = None  # (rel, offset, end) of a FILE
        self._filled = 0  # bytes of it copied into the ring so far

    # -- records and the ring ------------------------------------------------------

    def _record(self, data: bytes) -> None:
        self._records += _w.LENGTH.pack(len(data))
        self._records += data
        if len(self._records) >= _FLUSH_RECORDS or self._unsent >= _FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._records:
            return
        self._drain(block=False)
        view = memoryview(self._records)
        try:
            while view:
                view = view[os.write(self._to, view) :]
        except BrokenPipeError:
            while self._drain(block=True):  # its failure, or that it ended early
                pass
            self._ended()
        finally:
            view.release()
        self._records.clear()
        self._unsent = 0

    def _reserve(self, n: int) -> tuple[int, int]:
        """(offset, end) of `n` contiguous ring bytes free to fill; `end` is the running
        total the worker answers once it is done with them."""
        offset = self._head % _RING
        if offset + n > _RING:  # never across the end: skip to the start
            self._head += _RING - offset
            offset = 0
        while self._head + n - self._released > _RING:
            self._flush()
            if not self._drain(block=True):
                self._ended()
        self._head += n
        self._unsent += n
        return offset, self._head

    def _drain(self, block: bool) -> bool:
        """Read the worker's answers (waiting for one if `block`); False at their end."""
        while True:
            if block:
                select.select([self._from], [], [])
            try:
                data = os.read(self._from, 1 << 16)
            except BlockingIOError:
                return True
            if not data:
                return False
            self._acks += data
            while len(self._acks) >= _w.ACK.size:
                (value,) = _w.ACK.unpack_from(self._acks)
                if value == _w.FAILED:
                    self._failed()
                self._released = max(self._released, value)
                del self._acks[: _w.ACK.size]
            if block:
                return True

    def _failed(self) -> None:
        os.set_blocking(self._from, True)
        while len(self._acks) < _w.FAIL.size:
            more = os.read(self._from, 1 << 16)
            if not more:
                self._ended()
            self._acks += more
        _, code, kind, n = _w.FAIL.unpack_from(self._acks)
        while len(self._acks) < _w.FAIL.size + n:
            more = os.read(self._from, 1 << 16)
            if not more:
                break
            self._acks += more
        text = self._acks[_w.FAIL.size : _w.FAIL.size + n].decode("utf-8", "replace")
        if kind == _w.KIND_XATTR:
            raise InvalidInputError(text)
        if kind == _w.KIND_OS:
            raise OSError(code, text)
        raise LaminaError(f"the copying process failed: {text}", hint="this is a bug in lamina")

    def _ended(self) -> None:
        raise LaminaError(
            f"the copying process ended early (exit status {self._proc.wait()})",
            hint="this is a bug in lamina or the machine ran out of memory; try again",
        )

    # -- files ---------------------------------------------------------------------

    def begin(self, rel: str, size: int) -> None:
        raw = os.fsencode(rel)
        if size <= _WHOLE:
            offset, end = self._reserve(size)
            self._whole = (rel, offset, end)
            self._filled = 0
            return
        self._whole = None
        self._record(_w.BEGIN.pack(_w.OP_BEGIN, len(raw)) + raw)

    def write(self, data: memoryview) -> None:
        n = len(data)
        if self._whole is not None:
            start = self._whole[1] + self._filled
            self._ring[start : start + n] = data
            self._filled += n
            return
        offset, end = self._reserve(n)
        self._ring[offset : offset + n] = data
        self._record(_w.DATA.pack(_w.OP_DATA, end, offset, n))

    def end(self, st: os.stat_result, xattrs: dict[str, bytes], mtime: int, name: str) -> None:
        packed = _w.pack_xattrs(_kept(xattrs)) if xattrs else b""
        mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
        if self._whole is not None:
            rel, offset, end = self._whole
            self._whole = None
            raw = os.fsencode(rel)
            self._record(
                _w.FILE.pack(_w.OP_FILE, end, offset, self._filled, mode, uid, gid, mtime,
                             len(raw), len(packed)) + raw + packed
            )  # fmt: skip
            return
        self._record(_w.END.pack(_w.OP_END, mode, uid, gid, mtime, len(packed)) + packed)

    def link(self, first: str, rel: str) -> None:
        a, b = os.fsencode(first), os.fsencode(rel)
        self._record(_w.LINK.pack(_w.OP_LINK, len(a), len(b)) + a + b)

    def taken(self, total: int) -> None:
        if total - self._told >= _TAKEN_STEP:
            self._told = total
            self._record(_w.TAKEN.pack(_w.OP_TAKEN, total))
            self._flush()  # now: files linked from an earlier snapshot fill no ring

    def finish(self) -> None:
        self._flush()
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        while self._drain(block=True):  # every answer, to the end of its output
            pass
        if self._proc.wait() != 0:
            self._ended()

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                pipe.close()
        self._ring.release()
        with contextlib.suppress(BufferError):  # a view still held (a traceback's): GC
            self._map.close()


class DirectCopy:
    """Makes each ADD change (file, dir, symlink; in layer order) at ``directory/path``
    as ``write_layer`` passes it (see the module docstring). Entries whose source already
    is that path only get their metadata. ``done()`` (``write_layer`` calls it after the
    last entry) waits for every file's copy and sets directory mtimes (children change
    them); ``close()`` stops whatever still runs: use it as a context manager."""

    def __init__(
        self,
        directory: str,
        changes: Sequence[Change],
        *,
        source_date_epoch: int | None,
        previous: Mapping[str, str] | None = None,
    ) -> None:
        self.directory = directory
        self._previous = previous or {}
        self.reused = 0  # files hardlinked from `previous`
        self._root = os.path.abspath(directory)
        self.source_date_epoch = source_date_epoch
        self._links: dict[tuple[int, int], str] = {}  # (dev, ino) → the first's layer path
        self._dir_times: list[tuple[str, int]] = []
        self._taken = 0
        ahead = [
            (self._previous.get(c.path, c.source), c.st.st_size) for c in changes
            if c.st is not None and stat.S_ISREG(c.st.st_mode) and c.st.st_size
            and not self._in_place(c)
        ]  # fmt: skip
        files = sum(1 for c in changes if c.st is not None and stat.S_ISREG(c.st.st_mode))
        self._files: _Files | None = None
        if worth_a_process(files, sum(s for _, s in ahead)):
            try:
                self._files = _WorkerFiles(directory, ahead)
            except OSError:
                self._files = None  # no memfd, no process: made here
        if self._files is None:
            self._files = _LocalFiles(directory, ahead)

    def _target(self, change: Change) -> str:
        return os.path.join(self.directory, change.path)

    def _in_place(self, change: Change) -> bool:
        source = change.source
        if not source.startswith(self._root) and os.path.isabs(source):
            return False  # a context file: not under the directory (the common case)
        return os.path.abspath(source) == os.path.abspath(self._target(change))

    def place(
        self, change: Change, st: os.stat_result, xattrs: dict[str, bytes]
    ) -> tuple[int, bool] | None:
        if change.kind is not ChangeKind.ADD:
            raise InvalidInputError(f"{change.path}: only additions can be copied into a layer")
        files = self._files
        assert files is not None, "DirectCopy used after close()"
        target = self._target(change)
        fmt = stat.S_IFMT(st.st_mode)
        mode = stat.S_IMODE(st.st_mode)
        mtime = header_mtime(st, self.source_date_epoch)
        in_place = self._in_place(change)
        if fmt == stat.S_IFDIR:
            if not in_place:
                try:
                    os.mkdir(target, 0o700)
                except FileExistsError:
                    if not stat.S_ISDIR(os.lstat(target).st_mode):
                        raise
            os.chown(target, st.st_uid, st.st_gid, follow_symlinks=False)
            os.chmod(target, mode)
            if not in_place:
                _set_xattrs(target, xattrs, change.path)
            self._dir_times.append((target, mtime))
            return None
        if fmt == stat.S_IFLNK:
            if not in_place:
                os.symlink(os.readlink(change.source), target)
                _set_xattrs(target, xattrs, change.path)
            os.chown(target, st.st_uid, st.st_gid, follow_symlinks=False)
            os.utime(target, ns=(mtime * 10**9,) * 2, follow_symlinks=False)
            return None
        if fmt != stat.S_IFREG:
            raise InvalidInputError(
                f"{change.path}: only files, directories and symlinks are copied this way"
            )
        key = (st.st_dev, st.st_ino)
        first = self._links.get(key) if st.st_nlink > 1 else None
        if first is not None:  # the tar says: hardlink (once the first is written)
            files.link(first, change.path)
            return None
        if in_place:
            return (_open_source(target), False) if st.st_size else None
        if st.st_nlink > 1:
            self._links[key] = change.path
        if st.st_size:
            self._taken += st.st_size
            files.taken(self._taken)
        old = self._previous.get(change.path) if st.st_nlink == 1 else None
        if old is not None and self._reuse(old, target, st, xattrs, mtime):
            return (_open_source(target), False) if st.st_size else None
        if not st.st_size:
            files.begin(change.path, 0)
            files.end(st, xattrs, mtime, change.path)
            return None
        src = _open_source(change.source)
        if st.st_blocks * 512 >= st.st_size:
            files.begin(change.path, st.st_size)
            return src, True  # write_layer hands the body to `write`, then `finish_file`
        try:  # sparse: copied in the kernel, holes kept; the body is read back
            dst = os.open(target, _CREATE, 0o600)
            try:
                copy_range(src, dst, st.st_size, change.source)
                _set_metadata(dst, st, xattrs, mtime, change.path)
            finally:
                os.close(dst)
        finally:
            os.close(src)
        return _open_source(target), False

    def _reuse(
        self, old: str, target: str, st: os.stat_result, xattrs: dict[str, bytes], mtime: int
    ) -> bool:
        """Hardlink `old` (a committed snapshot's file) as `target` if it is exactly the file
        this entry's header describes; False (nothing done) if not, or if the link fails."""
        try:
            was = os.lstat(old)
            if not (
                stat.S_ISREG(was.st_mode)
                and was.st_size == st.st_size
                and was.st_mode == st.st_mode
                and was.st_uid == st.st_uid
                and was.st_gid == st.st_gid
                and was.st_mtime_ns == mtime * 10**9
                and _xattrs_of(old) == _kept(xattrs)
            ):
                return False
            # Missing (pruned meanwhile), too many links, another file system: copy instead.
            os.link(old, target, follow_symlinks=False)
        except OSError:
            return False
        self.reused += 1
        return True

    def write(self, data: memoryview) -> None:
        assert self._files is not None
        self._files.write(data)

    def finish_file(self, change: Change, st: os.stat_result, xattrs: dict[str, bytes]) -> None:
        assert self._files is not None
        self._files.end(st, xattrs, header_mtime(st, self.source_date_epoch), change.path)

    def done(self) -> None:
        if self._files is not None:
            files, self._files = self._files, None
            try:
                files.finish()
            finally:
                files.close()
        for path, mtime in sorted(self._dir_times, key=lambda item: -len(item[0])):
            os.utime(path, ns=(mtime * 10**9,) * 2, follow_symlinks=False)
        self._dir_times.clear()

    def close(self) -> None:
        if self._files is not None:
            files, self._files = self._files, None
            files.close()

    def __enter__(self) -> DirectCopy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kept(xattrs: dict[str, bytes]) -> dict[str, bytes]:
    """The xattrs a copy gets (overlay's own are never set on a snapshot's file)."""
    return {k: v for k, v in xattrs.items() if not _whiteout.is_overlay_xattr(k)}


def _xattrs_of(path: str) -> dict[str, bytes]:
    names = os.listxattr(path, follow_symlinks=False)
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in names}


def _set_metadata(
    fd: int, st: os.stat_result, xattrs: dict[str, bytes], mtime: int, name: str
) -> None:
    os.fchown(fd, st.st_uid, st.st_gid)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))  # after chown, which clears setuid/setgid
    _set_xattrs(fd, xattrs, name)
    os.utime(fd, ns=(mtime * 10**9,) * 2)


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


def copy_range(src: int, dst: int, size: int, name: str) -> None:
    """Exactly ``size`` bytes of ``src`` into ``dst``, in the kernel (copy_file_range,
    else sendfile); holes of a sparse source stay holes."""
    st = os.fstat(src)
    if st.st_blocks * 512 < st.st_size:  # sparse: copy its data extents only
        offset = 0
        while offset < size:
            try:
                start = os.lseek(src, offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                break  # only a hole remains
            if start >= size:
                break
            end = min(os.lseek(src, start, os.SEEK_HOLE), size)
            os.lseek(src, start, os.SEEK_SET)
            os.lseek(dst, start, os.SEEK_SET)
            _copy_run(src, dst, end - start, name)
            offset = end
        os.ftruncate(dst, size)
        return
    _copy_run(src, dst, size, name)


def _copy_run(src: int, dst: int, count: int, name: str) -> None:
    in_kernel = True
    while count > 0:
        if in_kernel:
            try:
                n = os.copy_file_range(src, dst, min(count, _BIG))
            except OSError as exc:
                # Across file systems older kernels refuse.
                if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
                in_kernel = False
                continue
        else:
            n = os.sendfile(dst, src, None, min(count, _BIG))
        if n == 0:
            raise LaminaError(
                f"{name}: file shrank while it was copied into a layer",
                hint="do not modify the build context while lamina builds from it",
            )
        count -= n


def _set_xattrs(target: str | int, xattrs: dict[str, bytes], name: str) -> None:
    """The source's xattrs (those a tar carries) on the copy (a path, not followed, or a
    descriptor); as the applier does, a file system or kernel refusing one (ENOTSUP,
    EPERM) is not an error."""
    for xname, value in sorted(xattrs.items()):
        if _whiteout.is_overlay_xattr(xname):
            continue
        try:
            os.setxattr(target, xname, value, follow_symlinks=isinstance(target, int))
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EPERM):
                raise InvalidInputError(
                    f"{name}: cannot set xattr {xname!r}: {exc.strerror}"
                ) from exc
