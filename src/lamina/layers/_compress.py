"""Layer compression: a single-pass writer that yields both digests, and a bounded
decompressing reader that detects the format from magic bytes.

gzip goes through python-isal (several times faster than zlib) when it is installed.
"""

from __future__ import annotations

import hashlib
import io
import types
import zlib
from dataclasses import dataclass
from enum import Enum
from typing import Any, BinaryIO, Protocol, cast

from lamina.errors import InvalidInputError, LaminaError
from lamina.oci import media_types
from lamina.store import BlobInfo

_gzip_module: types.ModuleType
_zlib_module: types.ModuleType
try:
    from isal import igzip as _gzip_module
    from isal import isal_zlib as _zlib_module

    GZIP_LEVEL = 1  # isal's levels are 0-3; 1 compresses like zlib's 6, much faster
except ImportError:  # pragma: no cover - isal is a declared dependency
    import gzip as _gzip_module

    _zlib_module = zlib
    GZIP_LEVEL = 6


def _zstandard() -> types.ModuleType:
    """zstandard, imported when a zstd layer comes or goes: most layers are gzip, and its
    import was some 7% of a pull's start-up (`python -X importtime`)."""
    import zstandard as module

    return module


def _read_errors(compression: Compression) -> tuple[type[BaseException], ...]:
    """What the decompressor of `compression` raises for truncated or corrupt input."""
    if compression is Compression.ZSTD:
        return (_zstandard().ZstdError,)
    if compression is Compression.XZ:
        import lzma

        return (lzma.LZMAError,)
    return ()


class Compression(Enum):
    """How a layer blob is compressed."""

    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"
    BZIP2 = "bzip2"  # read only (ADD of a local archive)
    XZ = "xz"  # read only

    @property
    def media_type(self) -> str:
        """The OCI media type of a layer compressed this way."""
        if self is Compression.NONE:
            return media_types.OCI_LAYER
        if self is Compression.GZIP:
            return media_types.OCI_LAYER_GZIP
        if self is Compression.ZSTD:
            return media_types.OCI_LAYER_ZSTD
        raise InvalidInputError(f"no OCI layer media type for {self.value}")

    @classmethod
    def from_media_type(cls, media_type: str) -> Compression:
        """The compression an OCI or Docker layer media type declares."""
        if media_type in (media_types.OCI_LAYER_GZIP, media_types.DOCKER_LAYER_GZIP):
            return cls.GZIP
        if media_type == media_types.OCI_LAYER_ZSTD:
            return cls.ZSTD
        if media_type in (media_types.OCI_LAYER, media_types.DOCKER_LAYER):
            return cls.NONE
        raise InvalidInputError(f"unknown layer media type {media_type!r}")


@dataclass(frozen=True)
class LayerBlobInfo(BlobInfo):
    """A written layer blob: the store's ``BlobInfo`` (``digest``/``size`` as stored) and
    ``diff_id``/``uncompressed_size`` of the tar inside."""

    diff_id: str
    uncompressed_size: int
    media_type: str


_FEED = 1 << 20  # bytes per compressor call: fixed, so the output is too


class LayerBlobWriter:
    """Tar bytes in → sha256 (diff_id) → compressor → sha256 (digest) → ``out``.

    Write the uncompressed tar (``write_layer`` accepts this object as its output), then
    call :meth:`finish`. Nothing is buffered beyond the compressor's own window.
    """

    def __init__(self, out: BinaryIO, compression: Compression = Compression.GZIP,
                 level: int | None = None, *, digest: bool = True,
                 diff_id: bool = True) -> None:  # fmt: skip
        self._out = out
        self._compression = compression
        # diff_id=False when the tar is checked on its way in (a rebuilt tar checks its
        # own diff_id): ``finish()`` then says "" for it.
        self._diff = hashlib.sha256() if diff_id else None
        # digest=False when `out` hashes what it stores anyway (the content store's
        # writer): the blob's digest is then the one its commit returns.
        self._digest = hashlib.sha256() if digest else None
        self._raw_size = 0
        self._size = 0
        self._compressor: Any
        self._pending = bytearray()
        if compression is Compression.GZIP:
            lvl = GZIP_LEVEL if level is None else level
            self._compressor = _zlib_module.compressobj(lvl, zlib.DEFLATED, 31)
        elif compression is Compression.ZSTD:
            cctx = _zstandard().ZstdCompressor(level=3 if level is None else level)
            self._compressor = cctx.compressobj()
        elif compression is Compression.NONE:
            self._compressor = None
        else:
            raise InvalidInputError(f"lamina does not write {compression.value} layers")

    def write(self, data: Any, /) -> int:
        if self._diff is not None:
            self._diff.update(data)
        n = len(data)
        self._raw_size += n
        if self._compressor is None:
            self._emit(data)
            return n
        # The compressor is fed fixed-size pieces whatever the caller's chunks were: isal's
        # output depends on call boundaries, and the same layer must always give the same
        # blob (the same digest) however its tar was read.
        self._pending += data
        if len(self._pending) >= _FEED:
            view = memoryview(self._pending)
            cut = len(view) - len(view) % _FEED
            for start in range(0, cut, _FEED):
                self._emit(self._compressor.compress(view[start : start + _FEED]))
            view.release()
            del self._pending[:cut]
        return n

    def _emit(self, data: Any) -> None:
        if len(data):
            if self._digest is not None:
                self._digest.update(data)
            self._out.write(data)
            self._size += len(data)

    def uncompressed_digest(self) -> tuple[str, int]:
        """``sha256:<hex>`` ("" if not hashed) and size of the tar written so far."""
        digest = "" if self._diff is None else "sha256:" + self._diff.hexdigest()
        return digest, self._raw_size

    def finish(self) -> LayerBlobInfo:
        """Flush the compressor and describe the blob."""
        if self._compressor is not None:
            if self._pending:
                self._emit(self._compressor.compress(bytes(self._pending)))
                self._pending.clear()
            self._emit(self._compressor.flush())
        diff_id, raw = self.uncompressed_digest()
        digest = "" if self._digest is None else "sha256:" + self._digest.hexdigest()
        return LayerBlobInfo(digest, self._size, diff_id, raw, self._compression.media_type)


# The first bytes of each compressed format: the one table lamina sniffs with.
MAGIC = (
    (b"\x1f\x8b", Compression.GZIP),
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
    (b"BZh", Compression.BZIP2),
    (b"\xfd7zXZ\x00", Compression.XZ),
)


def sniff_compression(head: bytes) -> Compression:
    """The compression a stream starting with `head` (6 bytes suffice) uses; NONE if none."""
    return next((c for m, c in MAGIC if head.startswith(m)), Compression.NONE)


class _Readable(Protocol):
    """Anything with ``read(n)``: a file, a verified blob reader, a rebuilt tar."""

    def read(self, n: int = -1, /) -> bytes: ...


def read_into(stream: _Readable, buffer: Any) -> int:
    """`stream.readinto(buffer)` where the stream implements it, else `read` and a copy
    (an `io.RawIOBase` that defines only `read` has a `readinto` that raises)."""
    readinto = getattr(stream, "readinto", None)
    if readinto is not None:
        try:
            return int(readinto(buffer) or 0)
        except NotImplementedError:
            pass
    data = stream.read(len(buffer))
    buffer[: len(data)] = data
    return len(data)


class _Counting(io.RawIOBase):
    """The compressed input: a prefix already peeked, then the stream; hashed."""

    def __init__(self, head: bytes, stream: _Readable, digest: bool = True) -> None:
        self._head = head
        self._stream = stream
        self.hash = hashlib.sha256(head) if digest else None
        self.count = len(head)

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if self._head:
            n = min(len(buf), len(self._head))
            buf[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        # Straight into the decompressor's buffer where the stream can: no bytes object
        # between (a pull's compressed stream was copied once more here).
        n = read_into(self._stream, buf)
        if self.hash is not None:
            self.hash.update(memoryview(buf)[:n])
        self.count += n
        return n

    def read_plain(self, n: int) -> bytes:
        """Up to ``n`` bytes as they come (an uncompressed stream): no copy on the way."""
        if self._head:
            data, self._head = self._head[:n], self._head[n:]
            return data
        data = self._stream.read(n)
        if self.hash is not None:
            self.hash.update(data)
        self.count += len(data)
        return data


class LayerBlobReader(io.RawIOBase):
    """The uncompressed tar inside a layer blob, read forward only.

    Reading more than ``max_bytes`` of decompressed data raises InvalidInputError (a
    decompression bomb), as does truncated or corrupt input. Once read to the end,
    :meth:`digest` is the blob's own ``sha256:<hex>``.
    """

    def __init__(
        self, stream: _Readable, max_bytes: int, max_ratio: float | None = None,
        *, digest: bool = True, what: str = "layer blob",
    ) -> None:  # fmt: skip
        self._what = what  # what the errors call the input
        self._max_ratio = max_ratio
        head = b""
        while len(head) < 6:
            more = stream.read(6 - len(head))
            if not more:
                break
            head += more
        self.compression = sniff_compression(head)
        self._raw = _Counting(head, stream, digest)
        self._max = max_bytes
        self.count = 0
        inner: Any
        if self.compression is Compression.GZIP:
            inner = _gzip_module.GzipFile(fileobj=self._raw, mode="rb")
        elif self.compression is Compression.ZSTD:
            dctx = _zstandard().ZstdDecompressor()
            inner = dctx.stream_reader(cast(BinaryIO, self._raw), read_across_frames=True)
        elif self.compression is Compression.BZIP2:
            import bz2

            inner = bz2.BZ2File(self._raw)
        elif self.compression is Compression.XZ:
            import lzma

            inner = lzma.LZMAFile(cast(BinaryIO, self._raw))  # noqa: SIM115 - lives with self
        else:
            inner = self._raw
        self._inner = inner
        self._errors: tuple[type[BaseException], ...] = (
            EOFError, OSError, zlib.error, *_read_errors(self.compression),
        )  # fmt: skip

    @property
    def given(self) -> _Readable:
        """The input as given (its peeked head first), not decompressed nor bounded: for a
        caller that copies an uncompressed input whole."""
        return self._raw

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        data = self._decompressed(len(buf))
        buf[: len(data)] = data
        return len(data)

    def _decompressed(self, size: int) -> bytes:
        """Up to ``size`` bytes out of the decompressor, checked against the bounds."""
        want = min(size, self._max - self.count + 1)
        try:
            data = self._inner.read(want)
        except self._errors as exc:
            raise InvalidInputError(
                f"{self.compression.value} {self._what} is truncated or corrupt: {exc}"
            ) from exc
        except LaminaError:
            raise  # the stream below already said what is wrong (a digest mismatch, say)
        except Exception as exc:  # isal raises its own error types for corrupt streams
            raise InvalidInputError(
                f"{self.compression.value} {self._what} is corrupt: {exc}"
            ) from exc
        self.count += len(data)
        if self.count > self._max:
            raise self._too_big()
        if (
            self._max_ratio is not None
            and self.compression is not Compression.NONE
            and self.count > RATIO_FLOOR
            and self.count > self._max_ratio * self._raw.count
        ):
            raise InvalidInputError(
                f"{self.compression.value} {self._what} expands more than {self._max_ratio:g}"
                f" times ({self._raw.count} bytes gave {self.count} so far), the compression"
                " ratio limit (a decompression bomb?)",
                hint="raise it with --max-layer-ratio or LAMINA_MAX_LAYER_RATIO "
                "if the layer is genuine",
            )
        return cast(bytes, data)

    def read(self, size: int | None = -1, /) -> bytes:
        if size is None or size < 0:
            chunks = []
            while chunk := self.read(1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        if self.compression is Compression.NONE:
            try:
                data = self._raw.read_plain(min(size, self._max - self.count + 1))
            except OSError as exc:
                raise InvalidInputError(f"{self._what} cannot be read: {exc}") from exc
            self.count += len(data)
            if self.count > self._max:
                raise self._too_big()
            return data
        return self._decompressed(size)  # as the decompressor gave it: no copy

    def _too_big(self) -> InvalidInputError:
        return InvalidInputError(
            f"{self.compression.value} {self._what} decompresses to more than "
            f"{self._max} bytes, the layer size limit (a decompression bomb?)",
            hint="raise it with --max-layer-size or LAMINA_MAX_LAYER_SIZE if the layer is genuine",
        )

    def digest(self) -> str:
        """``sha256:<hex>`` of the compressed bytes consumed so far."""
        if self._raw.hash is None:
            raise InvalidInputError("this layer reader was opened with digest=False")
        return "sha256:" + self._raw.hash.hexdigest()


RATIO_FLOOR = 64 << 20
"""The compression ratio limit applies once this many bytes came out: small layers of
zeros (a few MiB) compress a thousandfold and are no threat."""


def open_layer_reader(
    stream: _Readable, max_bytes: int = 64 << 30, max_ratio: float | None = None,
    *, digest: bool = True, what: str = "layer blob",
) -> LayerBlobReader:  # fmt: skip
    """A bounded reader of the tar inside ``stream`` (gzip, zstd, bzip2, xz or plain):
    at most ``max_bytes`` out, and (past ``RATIO_FLOOR``) at most ``max_ratio`` bytes out
    per byte in. ``digest=False``: nobody asks ``digest()``, the input is not hashed."""
    return LayerBlobReader(stream, max_bytes, max_ratio, digest=digest, what=what)
