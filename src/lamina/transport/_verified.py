"""A blob read from an archive: bounded at its descriptor's size, checked against its digest."""

from __future__ import annotations

import hashlib
import io
import os

from lamina.errors import DigestMismatchError, InvalidInputError
from lamina.transport._members import Slice

_CHUNK = 1 << 20


class VerifiedBlob(io.RawIOBase):
    """Reads exactly `size` bytes of a slice; at EOF the sha256 must be `digest`.

    The check runs when the last byte has been read: a reader that stops early has
    not been given verified content and must discard what it read. A mismatch raises
    DigestMismatchError naming the blob and the archive member it came from.
    """

    def __init__(
        self, piece: Slice, digest: str, size: int, what: str, *, verify: bool = True
    ) -> None:
        super().__init__()
        if piece.size != size:
            if piece.owned:
                os.close(piece.fd)
            raise InvalidInputError(
                f"{what}: {piece.label} holds {piece.size} bytes, its descriptor says {size}"
            )
        self._piece = piece
        self._position = piece.offset
        self._remaining = size
        self._digest = digest
        # verify=False is for a caller that checks the same digest itself (the store's
        # writer given the expected digest): hashing twice would only cost time.
        self._hash = hashlib.sha256() if verify else None
        self._what = what
        self.verified = size == 0 and self._check()

    def _check(self) -> bool:
        if self._hash is None:
            return False
        actual = "sha256:" + self._hash.hexdigest()
        if actual != self._digest:
            raise DigestMismatchError(f"{self._what} ({self._piece.label})", self._digest, actual)
        return True

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if self._remaining == 0:
            return 0
        want = min(len(buffer), self._remaining, _CHUNK * 4)
        data = os.pread(self._piece.fd, want, self._position)
        if not data:
            raise InvalidInputError(
                f"{self._what}: {self._piece.label} ends {self._remaining} bytes early"
            )
        count = len(data)
        buffer[:count] = data
        if self._hash is not None:
            self._hash.update(data)
        self._position += count
        self._remaining -= count
        if self._remaining == 0:
            self.verified = self._check()
        return count

    def close(self) -> None:
        if not self.closed and self._piece.owned:
            os.close(self._piece.fd)
        super().close()
