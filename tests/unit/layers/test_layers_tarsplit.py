"""tar-split: a layer applied into a snapshot plus its record gives back the exact tar."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest
from layer_snapshots import unpack_with_record

from lamina.errors import DigestMismatchError
from lamina.layers import (
    RebuiltTar,
    SplitRecorder,
    changes_from_dir,
    read_entries,
    record_entries,
    snapshot_extras,
    sort_changes,
    write_layer,
)


def _tar(fmt: int, trailing: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:

        def add(name: str, kind: bytes, data: bytes = b"", **kw: object) -> None:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.size = len(data)
            info.mtime = 1_600_000_000
            info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            for k, v in kw.items():
                setattr(info, k, v)
            tar.addfile(info, io.BytesIO(data) if data else None)

        add("etc/", tarfile.DIRTYPE)
        add("etc/passwd", tarfile.REGTYPE, b"root:x:0:0::/root:/bin/sh\n")
        add("etc/" + "long-name-" * 20, tarfile.REGTYPE, b"long\n")
        add("etc/link", tarfile.LNKTYPE, linkname="etc/passwd")
        add("etc/sym", tarfile.SYMTYPE, linkname="passwd")
        add("etc/.wh.gone", tarfile.REGTYPE)
        add("opt/.wh..wh..opq", tarfile.REGTYPE)
        add("zeros", tarfile.REGTYPE, bytes(3 << 16) + b"tail" + bytes(70_000))
        add("empty", tarfile.REGTYPE)
        add("odd", tarfile.REGTYPE, b"x" * 777, uid=70_000_000, uname="someone")
    return buf.getvalue() + trailing


@pytest.mark.parametrize(
    ("fmt", "trailing"),
    [
        (tarfile.GNU_FORMAT, b""),
        (tarfile.GNU_FORMAT, bytes(10240)),
        (tarfile.PAX_FORMAT, b""),
    ],
)
def test_apply_with_record_rebuilds_the_exact_tar(
    tmp_path: Path, fmt: int, trailing: bytes
) -> None:
    data = _tar(fmt, trailing)
    diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
    snap, record = tmp_path / "snap", tmp_path / "record"
    assert unpack_with_record(data, snap, record) == diff_id
    # the record is small: no file content in it
    assert record.stat().st_size < 2048
    with RebuiltTar(snap, record, diff_id, len(data)) as tar:
        assert tar.read() == data
    assert snapshot_extras(snap, record) == []
    # a per-layer index can read every header back from the record alone
    original = [(e.name, e.type, e.size) for e, _ in read_entries(io.BytesIO(data))]
    assert [(e.name, e.type, e.size) for e in record_entries(record)] == original


def test_holes_for_zero_blocks_and_zeros_back(tmp_path: Path) -> None:
    size = 64 << 20
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("sparse")
        info.size = size
        tar.addfile(info, io.BytesIO(b"head" + bytes(size - 4)))
    data = buf.getvalue()
    snap, record = tmp_path / "snap", tmp_path / "record"
    diff_id = unpack_with_record(data, snap, record)
    st = os.stat(snap / "sparse")
    assert st.st_size == size
    assert st.st_blocks * 512 < 1 << 20, "zero blocks must be holes"
    with RebuiltTar(snap, record, diff_id, len(data)) as tar:
        assert hashlib.sha256(tar.read()).hexdigest() == hashlib.sha256(data).hexdigest()


def _snapshot(tmp_path: Path) -> tuple[Path, Path, str, int]:
    snap, record = tmp_path / "snap", tmp_path / "record"
    (snap / "d").mkdir(parents=True)
    (snap / "d" / "f").write_bytes(b"content" * 100)
    (snap / "g").write_bytes(b"g")
    with open(record, "wb") as f:
        recorder = SplitRecorder(f)
        stats = write_layer(sort_changes(changes_from_dir(snap)), None, record=recorder)
        recorder.close()
    return snap, record, stats.diff_id, stats.size


def test_written_layer_rebuilds_and_a_flipped_byte_is_found(tmp_path: Path) -> None:
    snap, record, diff_id, size = _snapshot(tmp_path)
    with RebuiltTar(snap, record, diff_id, size) as tar:
        assert len(tar.read()) == size
    data = bytearray((snap / "d" / "f").read_bytes())
    data[5] ^= 1
    (snap / "d" / "f").write_bytes(bytes(data))
    with pytest.raises(DigestMismatchError), RebuiltTar(snap, record, diff_id, size) as tar:
        tar.read()


def test_a_reader_stopping_at_the_size_still_gets_the_check(tmp_path: Path) -> None:
    snap, record, diff_id, size = _snapshot(tmp_path)
    (snap / "g").write_bytes(b"h")
    with pytest.raises(DigestMismatchError), RebuiltTar(snap, record, diff_id, size) as tar:
        got = 0
        while got < size:
            got += len(tar.read(min(4096, size - got)))


def test_added_file_is_an_extra(tmp_path: Path) -> None:
    snap, record, _, _ = _snapshot(tmp_path)
    (snap / "d" / "planted").write_bytes(b"!")
    assert snapshot_extras(snap, record) == ["d/planted"]


def test_compression_does_not_depend_on_how_the_tar_was_chunked() -> None:
    from lamina.layers import Compression, LayerBlobWriter

    data = os.urandom(1 << 20) + bytes(3 << 20) + os.urandom(12345)
    for compression in (Compression.GZIP, Compression.ZSTD):
        digests = set()
        for step in (4096, 65536, 1 << 20, 3_000_001):
            out = io.BytesIO()
            writer = LayerBlobWriter(out, compression)
            for start in range(0, len(data), step):
                writer.write(data[start : start + step])
            digests.add(writer.finish().digest)
        assert len(digests) == 1, compression
