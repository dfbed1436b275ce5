"""The copying process beside a COPY's layer writer (see `_WorkerFiles` in `_stagecopy`).

Run as a script (`python -I -S _copyworker.py DIR RING SIZE LIST AHEAD`), standard library
only, so it starts in a few milliseconds and imports nothing of lamina. DIR is the
snapshot directory being filled; RING a memfd of SIZE bytes into which the writer puts
each file's bytes as it reads them (-1: none, the process only reads ahead, for
`ReadAhead`); LIST a memfd listing the sources the writer will read, in order (`SOURCE`
records), which a thread here asks the kernel to read ahead (``posix_fadvise(WILLNEED)``)
at most AHEAD bytes beyond what the writer says it has taken. Working in a process
of its own, the creating and writing of thousands of small files and the read-ahead
never take the writer's GIL.

Stdin carries records, each a u32 length then its body (an opcode first):

- FILE: a whole file: path (relative to DIR), its bytes in the ring, mode, owner, mtime
  (whole seconds), xattrs. BEGIN / DATA / END: the same for a file whose bytes come in
  several pieces.
- LINK: a hardlink to a file made before. TAKEN: how many bytes the writer has read.

After each read from stdin, the worker answers the ring position (u64) through which it
is done with the ring, so the writer may reuse that space. On a failure it answers
`FAILED`, the errno, its kind (KIND_*), the message, and exits 1. End of stdin
ends the worker (every record handled).
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import signal
import struct
import sys
import threading

LENGTH = struct.Struct("<I")
FILE = struct.Struct("<BQQQIIIqII")  # op, end, offset, length, mode, uid, gid, mtime, path, xattrs
BEGIN = struct.Struct("<BI")  # op, path length
DATA = struct.Struct("<BQQQ")  # op, end, offset, length
END = struct.Struct("<BIIIqI")  # op, mode, uid, gid, mtime, xattrs length
LINK = struct.Struct("<BII")  # op, first's length, target's length
TAKEN = struct.Struct("<BQ")  # op, bytes the writer has read
SOURCE = struct.Struct("<QI")  # size, path length (then the path)
XATTR = struct.Struct("<II")  # name length, value length (then both)
ACK = struct.Struct("<Q")
FAIL = struct.Struct("<QiII")  # FAILED, errno, kind, message length
KIND_OS, KIND_XATTR, KIND_OTHER = range(3)
OP_FILE, OP_BEGIN, OP_DATA, OP_END, OP_LINK, OP_TAKEN = range(1, 7)
FAILED = (1 << 64) - 1
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NOATIME", 0)


def pack_xattrs(xattrs: dict[str, bytes]) -> bytes:
    parts = []
    for name, value in sorted(xattrs.items()):
        raw = os.fsencode(name)
        parts += [XATTR.pack(len(raw), len(value)), raw, value]
    return b"".join(parts)


def unpack_xattrs(data: bytes) -> list[tuple[str, bytes]]:
    out, pos = [], 0
    while pos < len(data):
        n, v = XATTR.unpack_from(data, pos)
        pos += XATTR.size
        out.append((os.fsdecode(data[pos : pos + n]), data[pos + n : pos + n + v]))
        pos += n + v
    return out


class XattrError(Exception):
    """Setting an xattr failed in a way the applier would report too."""


class Prefetch:
    """Asks the kernel to read the listed sources ahead, in a thread, at most `ahead`
    bytes beyond what the writer has taken (`take`). (The writer's process runs one
    itself when no process can start: `_stagecopy.ReadAhead`, `_LocalFiles`.)"""

    def __init__(self, sources: list[tuple[bytes, int]], ahead: int) -> None:
        self._sources = sources
        self._ahead = ahead
        self._taken = 0
        self._stop = False
        self._moved = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def take(self, taken: int) -> None:
        with self._moved:
            self._taken = taken
            self._moved.notify()

    def _run(self) -> None:
        asked = 0
        for path, size in self._sources:
            with self._moved:
                while asked - self._taken > self._ahead and not self._stop:
                    self._moved.wait()
                if self._stop:
                    return
            try:
                fd = os.open(path, _READ)
            except OSError:
                try:
                    fd = os.open(path, _READ & ~getattr(os, "O_NOATIME", 0))
                except OSError:
                    continue  # the writer reports it
            try:
                os.posix_fadvise(fd, 0, size, os.POSIX_FADV_WILLNEED)
            except OSError:
                pass
            finally:
                os.close(fd)
            asked += size

    def stop(self) -> None:
        with self._moved:
            self._stop = True
            self._moved.notify()
        self._thread.join()


def read_sources(fd: int) -> list[tuple[bytes, int]]:
    size = os.fstat(fd).st_size
    data = mmap.mmap(fd, size, prot=mmap.PROT_READ) if size else b""
    out, pos = [], 0
    while pos < size:
        length, n = SOURCE.unpack_from(data, pos)
        pos += SOURCE.size
        out.append((bytes(data[pos : pos + n]), length))
        pos += n
    return out


def write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


class Worker:
    def __init__(self, directory: bytes, ring: memoryview) -> None:
        self.dir = directory
        self.ring = ring
        self.released = 0
        self.file = -1  # the file BEGIN opened
        self.path = b""

    def create(self, rel: bytes) -> int:
        self.path = rel
        return os.open(os.path.join(self.dir, rel), _CREATE, 0o600)

    def finish(self, fd: int, mode: int, uid: int, gid: int, mtime: int, xattrs: bytes) -> None:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)  # after chown, which clears setuid/setgid
        if xattrs:
            for name, value in unpack_xattrs(xattrs):
                try:
                    os.setxattr(fd, name, value)
                except OSError as exc:
                    if exc.errno not in (errno.ENOTSUP, errno.EPERM):
                        raise XattrError(f"cannot set xattr {name!r}: {exc.strerror}") from exc
        os.utime(fd, ns=(mtime * 10**9, mtime * 10**9))

    def handle(self, rec: memoryview) -> None:
        op = rec[0]
        if op == OP_FILE:
            _, end, offset, length, mode, uid, gid, mtime, n, x = FILE.unpack_from(rec)
            pos = FILE.size
            fd = self.create(bytes(rec[pos : pos + n]))
            try:
                if length:
                    write_all(fd, self.ring[offset : offset + length])
                self.finish(fd, mode, uid, gid, mtime, bytes(rec[pos + n : pos + n + x]))
            finally:
                os.close(fd)
            self.released = end
        elif op == OP_DATA:
            _, end, offset, length = DATA.unpack_from(rec)
            write_all(self.file, self.ring[offset : offset + length])
            self.released = end
        elif op == OP_BEGIN:
            _, n = BEGIN.unpack_from(rec)
            self.file = self.create(bytes(rec[BEGIN.size : BEGIN.size + n]))
        elif op == OP_END:
            _, mode, uid, gid, mtime, x = END.unpack_from(rec)
            fd, self.file = self.file, -1
            try:
                self.finish(fd, mode, uid, gid, mtime, bytes(rec[END.size : END.size + x]))
            finally:
                os.close(fd)
        elif op == OP_LINK:
            _, n, m = LINK.unpack_from(rec)
            first = bytes(rec[LINK.size : LINK.size + n])
            self.path = bytes(rec[LINK.size + n : LINK.size + n + m])
            os.link(os.path.join(self.dir, first), os.path.join(self.dir, self.path),
                    follow_symlinks=False)  # fmt: skip
        else:
            raise ValueError(f"unknown record {op}")


def _fail(worker: Worker, code: int, kind: int, text: str) -> None:
    message = f"{os.fsdecode(worker.path)}: {text}".encode("utf-8", "backslashreplace")
    data = FAIL.pack(FAILED, code, kind, len(message)) + message
    with contextlib.suppress(OSError):  # the writer is gone: its own error is the one
        write_all(1, memoryview(data))
    sys.exit(1)


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the writer ends it; ^C is the writer's
    directory = os.fsencode(argv[1])
    ring_fd, size, list_fd, ahead = int(argv[2]), int(argv[3]), int(argv[4]), int(argv[5])
    ring = memoryview(b"")
    if ring_fd >= 0:  # else: read-ahead only (`ReadAhead`), TAKEN records alone
        ring = memoryview(mmap.mmap(ring_fd, size, prot=mmap.PROT_READ))
        os.close(ring_fd)
    sources = read_sources(list_fd)
    os.close(list_fd)
    prefetch = Prefetch(sources, ahead) if sources else None
    worker = Worker(directory, ring)
    pending = b""
    try:
        while data := os.read(0, 1 << 20):
            pending += data
            view = memoryview(pending)
            pos = 0
            while len(view) - pos >= LENGTH.size:
                (n,) = LENGTH.unpack_from(view, pos)
                if len(view) - pos - LENGTH.size < n:
                    break
                rec = view[pos + LENGTH.size : pos + LENGTH.size + n]
                if rec[0] == OP_TAKEN:
                    if prefetch is not None:
                        prefetch.take(TAKEN.unpack_from(rec)[1])
                else:
                    worker.handle(rec)
                pos += LENGTH.size + n
            pending = pending[pos:]
            write_all(1, memoryview(ACK.pack(worker.released)))
    except XattrError as exc:
        _fail(worker, 0, KIND_XATTR, str(exc))
    except OSError as exc:
        _fail(worker, exc.errno or 0, KIND_OS, exc.strerror or str(exc))
    except Exception as exc:  # a bug: said, not hidden
        _fail(worker, 0, KIND_OTHER, repr(exc))
    finally:
        if prefetch is not None:
            prefetch.stop()


if __name__ == "__main__":
    main(sys.argv)
