"""``RebuiltTar.write_at``'s reads and writes done by helper processes, each one thread.

Reading a cold snapshot of 20,000 small files takes five system calls a file (open, fstat,
fadvise, read, close). Done by threads of one process, every call gives up the GIL and
takes it back, and the threads spend more time handing it over (futex calls, switches)
than in the calls. A few forked helpers, each single-threaded with a GIL of its own, make
the same calls with no hand-over at all; the kernel still has many reads in flight, as
each helper announces a piece's files together (``POSIX_FADV_WILLNEED``), and the next
piece's before it reads one.

- This process decodes the record and plans the pieces (``plan``) as before, on a thread
  of its own, and sends piece *i* to helper *i* mod N through a pipe.
- The helper opens, checks and reads the piece's files (``_write_piece``: the same code,
  holes and all) and writes the piece at its offset in the output, then says so.
- This process takes the helpers' reports in tar order and hashes each region read back
  from the output file: the diff_id is checked over the bytes that are in the archive.

A helper's error (a missing or changed file) comes back as the same error; a helper that
dies, or any error here, stops the others (SIGKILL) before the caller drops the output.
A helper whose parent dies stops at its next read or report (end of file, EPIPE).
"""

from __future__ import annotations

import contextlib
import fcntl
import marshal
import os
import signal
import struct
import threading
from collections.abc import Iterable, Iterator

from lamina import errors
from lamina.errors import LaminaError
from lamina.layers._copyworker import write_all
from lamina.layers._rebuild import (
    _Buffers,
    _Dirs,
    _is_zeros,
    _open_piece,
    _Output,
    _Piece,
    _write_piece,
    _zeros,
    plan,
)
from lamina.layers._tarsplit import FileOp, RawOp

# Processes. Cold rebuilds of 20,000 files on two cores, under load: medians of 4, 4
# helpers 1.16 s, 6 1.02 s, 8 0.97 s, 12 0.99 s; in another sitting (6 pairs of whole
# saves) 4 and 8 both 1.12 s, 8 with 1% more CPU. Each helper announces the next piece's
# files before it reads one.
HELPERS = 8
_LENGTH = struct.Struct("<I")  # a piece's message: its length, then marshal'd fields
_REPORT = struct.Struct("<BQQ")  # a helper's report: kind, two numbers
_DONE, _END, _ERROR, _HOLE = 0, 1, 2, 3  # _HOLE: done, nothing written (a fresh hole)
_PIPE_BYTES = 1 << 20
_READ_BACK = 4 << 20


def _read_back_fd(fd: int) -> int | None:
    """An fd this process may read the output through: ``fd`` itself if it was opened to
    read too, else the same file opened again to read (through /proc, which names the very
    file, even an unlinked one); None if neither can be."""
    if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDWR:
        return os.dup(fd)
    try:
        again = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    ours, theirs = os.fstat(again), os.fstat(fd)
    if (ours.st_dev, ours.st_ino) != (theirs.st_dev, theirs.st_ino):
        os.close(again)
        return None
    return again


def _encode(piece: _Piece) -> bytes:
    ops = tuple(op.data if isinstance(op, RawOp) else (op.name, op.size) for op in piece.ops)
    body = marshal.dumps((piece.start, piece.size, piece.ranged, piece.skip, ops))
    return _LENGTH.pack(len(body)) + body


def _decode(body: bytes) -> _Piece:
    start, size, ranged, skip, ops = marshal.loads(body)
    return _Piece(
        start, size,
        tuple(RawOp(op) if isinstance(op, bytes) else FileOp(*op) for op in ops),
        ranged, skip,
    )  # fmt: skip


def _error_report(exc: BaseException) -> bytes:
    """``exc`` as a helper reports it: lamina's errors and OSErrors come back as
    themselves (class, message, hint, fields), anything else as its repr."""
    if isinstance(exc, LaminaError) and getattr(errors, type(exc).__name__, None) is type(exc):
        fields = {k: v for k, v in vars(exc).items() if isinstance(v, str)}
        body = marshal.dumps(("lamina", type(exc).__name__, exc.message, exc.hint, fields))
    elif isinstance(exc, OSError):
        body = marshal.dumps(("os", exc.errno, exc.strerror, exc.filename))
    else:
        body = marshal.dumps(("other", repr(exc)))
    return _REPORT.pack(_ERROR, len(body), 0) + body


def _error_from(body: bytes) -> BaseException:
    what = marshal.loads(body)
    if what[0] == "lamina":
        _kind, name, message, hint, fields = what
        cls = getattr(errors, name)
        exc = cls.__new__(cls)
        LaminaError.__init__(exc, message, hint)
        vars(exc).update(fields)
        return exc  # type: ignore[no-any-return]
    if what[0] == "os":
        return OSError(what[1], what[2], what[3]) if what[3] else OSError(what[1], what[2])
    return LaminaError(f"a reader of the snapshot failed: {what[1]}")


def _helper(snapshot: str, pieces_fd: int, report_fd: int, out: _Output) -> None:
    """A helper's life: pieces from ``pieces_fd`` until the end mark (or end of file),
    each written into ``out`` and reported on ``report_fd``."""
    dirs: _Dirs | None = None
    buffers = _Buffers()
    source = os.fdopen(pieces_fd, "rb", buffering=_PIPE_BYTES)

    def take() -> tuple[_Piece, tuple[list[int], bool]] | None:
        """The next piece with its files opened and announced; None at the end mark."""
        head = source.read(_LENGTH.size)
        if not head or not (n := _LENGTH.unpack(head)[0]):
            return None
        piece = _decode(source.read(n))
        names = [op.name for op in piece.ops if isinstance(op, FileOp)]
        assert dirs is not None
        if dirs.full(len(names)):
            dirs.close_all()  # the piece being read has its files open already
        return piece, _open_piece(piece, tuple(dirs.parent(name) for name in names))

    try:
        dirs = _Dirs(snapshot)
        current = take()
        while current is not None:
            # The next piece's files are announced before this one's are read: the disk
            # has both in hand, no gap between them.
            following = take()
            piece, opened = current
            data = _write_piece(piece, (), out, buffers, opened)
            buffers.give(data)
            kind = _HOLE if out.fresh and _is_zeros(data) else _DONE  # as out.write saw it
            write_all(report_fd, memoryview(_REPORT.pack(kind, piece.start, piece.size)))
            current = following
        write_all(report_fd, memoryview(_REPORT.pack(_END, 0, 0)))
    except BrokenPipeError:
        pass  # the parent is gone
    except BaseException as exc:
        with contextlib.suppress(OSError):
            write_all(report_fd, memoryview(_error_report(exc)))
    finally:
        if dirs is not None:
            dirs.close()


class _Helper:
    def __init__(self, pid: int, pieces_fd: int, report_fd: int) -> None:
        self.pid = pid
        self.pieces_fd = pieces_fd
        self.reports = os.fdopen(report_fd, "rb")
        self.done = False

    def report(self) -> tuple[int, int, int]:
        head = self.reports.read(_REPORT.size)
        if len(head) < _REPORT.size:
            raise LaminaError(
                f"a reader of the snapshot (process {self.pid}) stopped without a word",
                hint="run the command again; if it keeps failing, `lamina fsck`",
            )
        kind, a, b = _REPORT.unpack(head)
        if kind == _ERROR:
            raise _error_from(self.reports.read(a))
        self.done = kind == _END
        return kind, a, b


class HelperWriters:
    """The helpers of one ``write_at``, forked by ``start`` (before the caller starts any
    thread of its own); ``regions`` hands the pieces out and yields each region of the
    output, read back, in tar order; ``close`` stops and reaps the helpers."""

    @classmethod
    def start(cls, snapshot: str, out: _Output) -> HelperWriters | None:
        """The helpers, at work; None where they cannot be (no fork, or an output this
        process cannot read back): the caller's threads do the work then."""
        if not hasattr(os, "fork") or HELPERS <= 0:
            return None
        read_fd = _read_back_fd(out.fd)
        if read_fd is None:
            return None
        try:
            return cls(snapshot, out, read_fd)
        except OSError:  # no process or pipe to be had (EAGAIN, EMFILE): threads then
            return None

    def __init__(self, snapshot: str, out: _Output, read_fd: int) -> None:
        self._snapshot = snapshot
        self._out = out
        self._read_fd = read_fd  # ours: closed by close()
        self._helpers: list[_Helper] = []
        self._sender: threading.Thread | None = None
        self._sender_error: BaseException | None = None
        try:
            for _ in range(HELPERS):
                self._fork()
        except BaseException:
            self.close()
            raise

    def _fork(self) -> None:
        pieces_r, pieces_w = os.pipe2(os.O_CLOEXEC)
        report_r, report_w = os.pipe2(os.O_CLOEXEC)
        with contextlib.suppress(OSError):  # room for a few pieces' headers ahead
            fcntl.fcntl(pieces_w, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        try:
            pid = os.fork()
        except OSError:
            for fd in (pieces_r, pieces_w, report_r, report_w):
                os.close(fd)
            raise
        if pid == 0:  # the helper: never returns into the caller's code
            code = 1
            try:
                os.close(pieces_w)
                os.close(report_r)
                os.close(self._read_fd)
                for other in self._helpers:
                    os.close(other.pieces_fd)
                    os.close(other.reports.fileno())
                with contextlib.suppress(ValueError):  # Ctrl-C stops it at once
                    signal.signal(signal.SIGINT, signal.SIG_DFL)
                _helper(self._snapshot, pieces_r, report_w, self._out)
                code = 0
            finally:
                os._exit(code)
        os.close(pieces_r)
        os.close(report_w)
        self._helpers.append(_Helper(pid, pieces_w, report_r))

    def _send(self, ops: Iterable[RawOp | FileOp]) -> None:
        try:
            for i, piece in enumerate(plan(ops)):
                write_all(
                    self._helpers[i % len(self._helpers)].pieces_fd, memoryview(_encode(piece))
                )
        except BrokenPipeError:
            pass  # a helper stopped: its report says why
        except BaseException as exc:  # a damaged or too long record: raised by regions()
            self._sender_error = exc
        finally:
            for helper in self._helpers:
                with contextlib.suppress(OSError):
                    write_all(helper.pieces_fd, memoryview(_LENGTH.pack(0)))

    def regions(self, ops: Iterable[RawOp | FileOp]) -> Iterator[memoryview]:
        """Each piece's region of the output once its helper wrote it, read back."""
        self._sender = threading.Thread(target=self._send, args=(ops,), name="tar-plan")
        self._sender.start()
        buffer = memoryview(bytearray(_READ_BACK))
        i = 0
        while True:
            kind, start, size = self._helpers[i % len(self._helpers)].report()
            if kind == _END:
                break
            at = self._out.base + start
            for k in range(0, size, _READ_BACK):
                n = min(_READ_BACK, size - k)
                if kind == _HOLE:  # a range of a sparse file, all hole, left a hole
                    yield _zeros(n)  # in a fresh file (the caller makes it this long)
                    continue
                got = 0
                while got < n and (more := os.preadv(self._read_fd, [buffer[got:n]], at + k + got)):
                    got += more
                # Past the file's end: holes of a fresh file, not written (the caller
                # makes the file this long): they read as zeros.
                buffer[got:n] = _zeros(n - got)
                yield buffer[:n]
            i += 1
        for helper in self._helpers:  # all pieces are done: the others end too
            if not helper.done and helper.report()[0] != _END:
                raise LaminaError("a reader of the snapshot wrote a piece it was not given")
        self._sender.join()
        if self._sender_error is not None:
            raise self._sender_error

    def close(self) -> None:
        """Stop the helpers that are still at work (an error or an early close) and reap
        them all; nothing writes into the output once this returns."""
        for helper in self._helpers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(helper.pid, signal.SIGKILL)
        for helper in self._helpers:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(helper.pid, 0)
        if self._sender is not None:
            self._sender.join()  # its writes fail once the helpers are gone
        for helper in self._helpers:
            with contextlib.suppress(OSError):
                os.close(helper.pieces_fd)
            helper.reports.close()
        self._helpers = []
        if self._read_fd >= 0:
            os.close(self._read_fd)
            self._read_fd = -1


__all__ = ["HELPERS", "HelperWriters"]
