"""Compression pipeline and the bounded, magic-detecting reader."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
from pathlib import Path
from typing import Any

import pytest
import zstandard

from lamina.errors import InvalidInputError
from lamina.layers import (
    Compression,
    LayerBlobWriter,
    TarReader,
    changes_from_dir,
    read_into,
    write_layer,
    write_layer_blob,
)
from lamina.layers import open_layer_reader as _open
from lamina.oci import media_types


def _layer(tmp_path: Path) -> tuple[bytes, str]:
    root = tmp_path / "root"
    root.mkdir()
    for i in range(30):
        (root / f"f{i}").write_bytes(os.urandom(1000) + b"a" * 50_000)
    out = io.BytesIO()
    stats = write_layer(changes_from_dir(root), out)
    return out.getvalue(), stats.diff_id


@pytest.mark.parametrize("compression", [Compression.GZIP, Compression.ZSTD, Compression.NONE])
def test_pipeline_round_trip(tmp_path: Path, compression: Compression) -> None:
    tar, diff_id = _layer(tmp_path)
    out = io.BytesIO()
    info = write_layer_blob(changes_from_dir(tmp_path / "root"), out, compression)
    blob = out.getvalue()
    assert info.diff_id == diff_id and info.uncompressed_size == len(tar)
    assert info.size == len(blob) and info.media_type == compression.media_type
    reader = _open(io.BytesIO(blob), 1 << 30)
    assert reader.compression is compression
    tar_reader = TarReader(io.BufferedReader(reader))
    assert sum(1 for _ in tar_reader.entries()) == 30
    assert tar_reader.diff_id == diff_id
    assert reader.digest() == info.digest
    if compression is not Compression.NONE:
        assert info.size < len(tar)
    # Independent decoders read the same blob.
    if compression is Compression.GZIP:
        assert gzip.decompress(blob) == tar
    elif compression is Compression.ZSTD:
        assert zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob)).read() == tar


def test_writer_accepts_any_tar_bytes(tmp_path: Path) -> None:
    tar, diff_id = _layer(tmp_path)
    writer = LayerBlobWriter(io.BytesIO(), Compression.GZIP)
    writer.write(tar)
    assert writer.finish().diff_id == diff_id


@pytest.mark.parametrize("compress", [bz2.compress, lzma.compress])
def test_reads_bzip2_and_xz(tmp_path: Path, compress: object) -> None:
    tar, _ = _layer(tmp_path)
    reader = _open(io.BytesIO(compress(tar)), 1 << 30)  # type: ignore[operator]
    assert reader.read() == tar


def test_media_types() -> None:
    assert Compression.from_media_type(media_types.DOCKER_LAYER_GZIP) is Compression.GZIP
    assert Compression.from_media_type(media_types.OCI_LAYER_GZIP) is Compression.GZIP
    assert Compression.from_media_type(media_types.OCI_LAYER_ZSTD) is Compression.ZSTD
    with pytest.raises(InvalidInputError, match="unknown layer media type"):
        Compression.from_media_type("text/plain")


def test_zstd_bomb_refused() -> None:
    blob = zstandard.ZstdCompressor().compress(bytes(32 << 20))
    with pytest.raises(InvalidInputError, match="bomb"):
        _open(io.BytesIO(blob), 1 << 20).read()


def test_corrupt_gzip_refused(tmp_path: Path) -> None:
    tar, _ = _layer(tmp_path)
    out = io.BytesIO()
    writer = LayerBlobWriter(out, Compression.GZIP)
    writer.write(tar)
    writer.finish()
    blob = bytearray(out.getvalue())
    blob[len(blob) // 2] ^= 0xFF
    blob[len(blob) // 2 + 1] ^= 0xFF
    with pytest.raises(InvalidInputError, match=r"corrupt|truncated"):
        _open(io.BytesIO(bytes(blob)), 1 << 30).read()


def test_blob_writer_without_digest_leaves_it_to_the_sink() -> None:
    import hashlib
    import io

    from lamina.layers import Compression, LayerBlobWriter

    out = io.BytesIO()
    writer = LayerBlobWriter(out, Compression.GZIP, digest=False)
    writer.write(b"x" * 10_000)
    info = writer.finish()
    assert info.digest == ""
    assert info.size == len(out.getvalue())
    assert info.diff_id == "sha256:" + hashlib.sha256(b"x" * 10_000).hexdigest()


class _ReadOnly(io.RawIOBase):
    """A raw stream that defines only `read`: its inherited `readinto` raises."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.readintos = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1, /) -> bytes:
        return self._data.read(n)


class _Into(_ReadOnly):
    def readinto(self, buffer: Any) -> int:
        self.readintos += 1
        return self._data.readinto(buffer)


@pytest.mark.parametrize("kind", [_ReadOnly, _Into])
def test_a_gzip_blob_reads_the_same_through_read_or_readinto(kind: type[_ReadOnly]) -> None:
    """The compressed input goes straight into the decompressor's buffer where the stream
    has `readinto`, and through `read` where its `readinto` is io's raising default."""
    plain = os.urandom(3 << 20) + b"lamina " * 100_000
    blob = gzip.compress(plain, compresslevel=1)
    stream = kind(blob)
    reader = _open(stream)
    assert reader.read() == plain
    assert reader.digest() == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert (stream.readintos > 0) is (kind is _Into)


def test_read_into_fills_the_buffer_either_way() -> None:
    for stream in (_ReadOnly(b"abcdef"), _Into(b"abcdef")):
        buffer = bytearray(4)
        assert read_into(stream, buffer) == 4 and buffer == b"abcd"
        assert read_into(stream, buffer) == 2 and buffer[:2] == b"ef"
        assert read_into(stream, buffer) == 0
