"""The hashing process beside the layer writer (see `_ProcessHashing` in `_tarwrite`).

Run as a script (`python -I -S _hashworker.py FD SIZE STREAM`), standard library only, so
it starts in a few milliseconds and imports nothing of lamina. FD is a memfd of SIZE bytes
holding the writer's buffers. Each message on stdin is a header (offset, length, count)
and `count` spans (file number, start, end), start and end counted from the offset; the
worker hashes each span into its file's digest and, with STREAM=1, the buffer range into
the tar's digest, then answers one byte. A header of length 2**64-1 ends the stream;
its count is the number of files. The answer is the tar's digest (or an empty line) and
one line per file.

File numbers come in order (a file's spans are contiguous, the next file's number is
higher): a file's digest is final once a later file's span arrives, so it is taken then
and its hash object dropped; numbers no span named (empty files) get the empty digest.
With STREAM=1 the two hashes of a buffer run on two threads, one after the other like a
pipeline (hashlib drops the GIL while it hashes): this thread hashes the files' spans
of buffer k+1 while the other hashes the tar's bytes of buffer k and answers for it.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import signal
import struct
import sys
import threading
from array import array
from queue import SimpleQueue

HEAD = struct.Struct("<QQI")
END = (1 << 64) - 1
EMPTY = hashlib.sha256().hexdigest()


def _read(n: int) -> bytes:
    parts = []
    while n:
        data = os.read(0, n)
        if not data:
            sys.exit(3)
        parts.append(data)
        n -= len(data)
    return b"".join(parts)


def _answer(data: bytes) -> None:
    while data:
        data = data[os.write(1, data) :]


def _stream(todo: SimpleQueue[memoryview | None], total: hashlib._Hash) -> None:
    """Hash each buffer into the tar's digest, in order, and answer for it."""
    while (buf := todo.get()) is not None:
        total.update(buf)
        buf.release()
        os.write(1, b"k")


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the writer ends it; ^C is the writer's
    fd, size, stream = int(argv[1]), int(argv[2]), argv[3] == "1"
    view = memoryview(mmap.mmap(fd, size, prot=mmap.PROT_READ))
    total = hashlib.sha256()
    todo: SimpleQueue[memoryview | None] = SimpleQueue()
    streamer = threading.Thread(target=_stream, args=(todo, total), daemon=True)
    if stream:
        streamer.start()
    digests: list[str] = []  # of files 0 .. current-1, final
    current, h = -1, None
    sha256 = hashlib.sha256
    while True:
        offset, length, count = HEAD.unpack(_read(HEAD.size))
        if length == END:
            break
        buf = view[offset : offset + length]
        if count:
            spans = iter(array("Q", _read(24 * count)))
            for number, start, end in zip(spans, spans, spans, strict=True):
                if number != current:
                    if number < current:
                        sys.exit(4)  # out of order: the writer's bug, it reports the exit
                    if h is not None:
                        digests.append(h.hexdigest())
                    digests += [EMPTY] * (number - len(digests))
                    current, h = number, sha256()
                assert h is not None
                h.update(buf[start:end])
        if stream:
            todo.put(buf)
        else:
            buf.release()
            os.write(1, b"k")
    if stream:
        todo.put(None)
        streamer.join()
    if h is not None:
        digests.append(h.hexdigest())
    if len(digests) > count:
        sys.exit(4)
    digests += [EMPTY] * (count - len(digests))
    _answer("\n".join([total.hexdigest() if stream else "", *digests]).encode())


if __name__ == "__main__":
    main(sys.argv)
