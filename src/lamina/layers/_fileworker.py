"""The file-writing process beside the layer applier (see `_FileWriter` in `_apply`).

Run as a script (`python -I -S _fileworker.py SOCKET_FD`), standard library only, so it
starts in a few milliseconds and imports nothing of lamina. It writes the new small
files of a fresh unpack target: create (``O_EXCL | O_NOFOLLOW``, in a directory the
applier resolved inside the target and sent as a descriptor), content, owner and mode
when they were not given at creation, mtime. Its own interpreter: the four syscalls per
file need no hand-over of the applier's GIL (a thread's cost the reading thread waited
for, once per syscall).

Protocol on a Unix stream socket. Each batch: a header ``BATCH`` (file count, payload
length) sent with the batch's directory descriptors attached (SCM_RIGHTS), then the
payload: per file a ``FILE`` record (directory number in the batch, whether owner and
mode were given at creation, mode, uid, gid, mtime, content size, name length), the
name, the content. Answer per batch: ``b"k"``, or after a failure ``b"e"`` with a
``FAIL`` (file number, errno, message length) and the message, then ``b"x"`` for every
batch after it (read, not written). EOF ends the worker.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import sys

BATCH = struct.Struct("<II")
FILE = struct.Struct("<HBIIIqIH")
FAIL = struct.Struct("<III")
MAX_DIRS = 64  # descriptors one batch may carry
FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    while view:
        got = sock.recv_into(view)
        if not got:
            sys.exit(3)  # the applier went away mid-batch
        view = view[got:]
    return bytes(buf)


def _write(dirs: list[int], payload: bytes, count: int) -> None:
    view = memoryview(payload)
    pos = 0
    for n in range(count):
        d, as_created, mode, uid, gid, mtime, size, name_len = FILE.unpack_from(payload, pos)
        pos += FILE.size
        name = payload[pos : pos + name_len]
        pos += name_len
        data = view[pos : pos + size]
        pos += size
        try:
            fd = os.open(name, FLAGS, mode if as_created else 0o600, dir_fd=dirs[d])
            try:
                while data:
                    data = data[os.write(fd, data) :]
                if not as_created:
                    os.fchown(fd, uid, gid)
                    os.fchmod(fd, mode)  # after chown, which clears setuid/setgid
                ns = mtime * 1_000_000_000
                os.utime(fd, ns=(ns, ns))
            finally:
                os.close(fd)
        except OSError as exc:
            raise _Failed(n, exc) from exc


class _Failed(Exception):
    def __init__(self, number: int, exc: OSError) -> None:
        super().__init__(number)
        self.number = number
        self.errno = exc.errno or 0
        self.message = (exc.strerror or str(exc)).encode("utf-8", "replace")


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the applier ends it; ^C is the applier's
    sock = socket.socket(fileno=int(argv[1]))
    failed = False
    while True:
        head, fds, _flags, _addr = socket.recv_fds(sock, BATCH.size, MAX_DIRS)
        if not head:
            return
        if len(head) < BATCH.size:
            head += _exact(sock, BATCH.size - len(head))
        count, length = BATCH.unpack(head)
        payload = _exact(sock, length)
        try:
            if failed:
                answer = b"x"
            else:
                _write(fds, payload, count)
                answer = b"k"
        except _Failed as exc:
            failed = True
            answer = b"e" + FAIL.pack(exc.number, exc.errno, len(exc.message)) + exc.message
        finally:
            for fd in fds:
                os.close(fd)
        sock.sendall(answer)


if __name__ == "__main__":
    main(sys.argv)
