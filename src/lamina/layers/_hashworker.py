"""The hashing process beside the layer writer (see `_ProcessHashing` in `_tarwrite`).

Run as a script (`python -I -S _hashworker.py FD SIZE STREAM`), standard library only, so
it starts in a few milliseconds and imports nothing of lamina. FD is a memfd of SIZE bytes
holding the writer's buffers. Each message on stdin is a header (offset, length, count)
and `count` spans (file number, start, end), start and end counted from the offset; the
worker hashes each span into its file's digest and, with STREAM=1, the buffer range into
the tar's digest, then answers one byte. A header of length 2**64-1 ends the stream;
its count is the number of files. The answer is the tar's digest (or an empty line) and
one line per file.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import signal
import struct
import sys
from array import array

HEAD = struct.Struct("<QQI")
END = (1 << 64) - 1


def _read(n: int) -> bytes:
    parts = []
    while n:
        data = os.read(0, n)
        if not data:
            sys.exit(3)
        parts.append(data)
        n -= len(data)
    return b"".join(parts)


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the writer ends it; ^C is the writer's
    fd, size, stream = int(argv[1]), int(argv[2]), argv[3] == "1"
    view = memoryview(mmap.mmap(fd, size, prot=mmap.PROT_READ))
    total = hashlib.sha256() if stream else None
    files: dict[int, hashlib._Hash] = {}
    while True:
        offset, length, count = HEAD.unpack(_read(HEAD.size))
        if length == END:
            break
        buf = view[offset : offset + length]
        if count:
            spans = iter(array("Q", _read(24 * count)))
            for number, start, end in zip(spans, spans, spans, strict=True):
                h = files.get(number)
                if h is None:
                    h = files[number] = hashlib.sha256()
                h.update(buf[start:end])
        if total is not None:
            total.update(buf)
        buf.release()
        os.write(1, b"k")
    empty = hashlib.sha256().hexdigest()
    lines = [total.hexdigest() if total is not None else ""]
    lines += [files[f].hexdigest() if f in files else empty for f in range(count)]
    data = "\n".join(lines).encode()
    while data:
        data = data[os.write(1, data) :]


if __name__ == "__main__":
    main(sys.argv)
