"""Blob streams bounded at their descriptor's size and checked against their digest:
`VerifiedBlob` for a slice of an archive, `VerifyingStream` for any stream (a registry)."""

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
        self,
        piece: Slice,
        digest: str,
        size: int,
        what: str,
        *,
        verify: bool = True,
        offset: int = 0,
    ) -> None:
        super().__init__()
        if piece.size != size:
            if piece.owned:
                os.close(piece.fd)
            raise InvalidInputError(
                f"{what}: {piece.label} holds {piece.size} bytes, its descriptor says {size}"
            )
        if not 0 <= offset <= size:
            raise InvalidInputError(f"{what}: offset {offset} is outside its {size} bytes")
        self._piece = piece
        self._position = piece.offset + offset
        self._remaining = size - offset
        self._digest = digest
        # verify=False is for a caller that checks the same digest itself (the store's
        # writer given the expected digest): hashing twice would only cost time.
        # A stream that starts past 0 cannot check the digest: its caller does.
        self._hash = hashlib.sha256() if verify and offset == 0 else None
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


class VerifyingStream(io.RawIOBase):
    """Any raw stream read as exactly `size` bytes whose sha256 must be `digest`.

    More bytes than `size`, fewer, or other bytes raise (DigestMismatchError names
    `what`) at the point they are noticed, so nothing unverified is taken as whole.
    """

    def __init__(self, raw: io.RawIOBase, digest: str, size: int, what: str) -> None:
        super().__init__()
        self._raw = raw
        self._digest = digest
        self._remaining = size
        self._hash = hashlib.sha256()
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if self._remaining == 0:
            return 0
        view = memoryview(buffer)[: min(len(buffer), self._remaining)]
        count = self._raw.readinto(view)
        if not count:
            raise InvalidInputError(f"{self._what}: ends {self._remaining} bytes early")
        self._hash.update(view[:count])
        self._remaining -= count
        if self._remaining == 0:
            actual = "sha256:" + self._hash.hexdigest()
            if actual != self._digest:
                raise DigestMismatchError(self._what, self._digest, actual)
        return int(count)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()
