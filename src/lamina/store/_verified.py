"""The one verified blob reader: hashes what it returns and checks the digest at the end.

The content store opens its blobs with it (to the end of the file), the archive readers
open an archive's blobs with it (exactly the descriptor's size at an offset of a file).
"""

from __future__ import annotations

import hashlib
import io
import os

from lamina.errors import DigestMismatchError, InvalidInputError

_MAX_READ = 4 << 20


class VerifiedBlob(io.RawIOBase):
    """Reads a blob from `fd` at `offset`; at its end the sha256 must be `digest`.

    `size` None reads to the end of the file (a store blob: a truncated or grown file
    fails the digest); an int reads exactly that many bytes and a file that ends early
    is an InvalidInputError. The check runs when the last byte has been read: a reader
    that stops early has not been given verified content and must discard what it read.
    A mismatch raises DigestMismatchError naming `what` and `label` (where it came from).
    `owned`: close `fd` with the reader. `verify=False` is for a caller that checks the
    same digest itself (the store's writer given the expected digest).
    """

    def __init__(
        self, fd: int, offset: int, size: int | None, digest: str, what: str, label: str,
        *, owned: bool = True, verify: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        self._fd = fd
        self._owned = owned
        self._position = offset
        self._remaining = size
        self._digest = digest
        self._hash = hashlib.sha256() if verify else None
        self._what = what
        self._label = label
        self.verified = size == 0 and self._check()

    def _check(self) -> bool:
        if self._hash is None:
            return False
        actual = "sha256:" + self._hash.hexdigest()
        if actual != self._digest:
            raise DigestMismatchError(f"{self._what} ({self._label})", self._digest, actual)
        return True

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if self._remaining == 0 or (self._remaining is None and self.verified):
            return 0
        want = min(len(buffer), _MAX_READ)
        if self._remaining is not None:
            want = min(want, self._remaining)
        data = os.pread(self._fd, want, self._position)
        if not data:
            if self._remaining is not None:
                raise InvalidInputError(
                    f"{self._what}: {self._label} ends {self._remaining} bytes early"
                )
            self.verified = self._check()
            return 0
        count = len(data)
        buffer[:count] = data
        if self._hash is not None:
            self._hash.update(data)
        self._position += count
        if self._remaining is not None:
            self._remaining -= count
            if self._remaining == 0:
                self.verified = self._check()
        return count

    def close(self) -> None:
        if not self.closed and self._owned:
            os.close(self._fd)
        super().close()
