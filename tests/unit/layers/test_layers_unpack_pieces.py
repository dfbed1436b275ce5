"""A file's content is written in the pieces the tar reader holds (no join of two of its
buffers), yet every block of zeros still becomes a hole, wherever those pieces end."""

from __future__ import annotations

import io
import os
import random
import tarfile
from pathlib import Path

import pytest
from layer_snapshots import unpack_with_record

from lamina.layers import RebuiltTar

BLOCK = 4096


def _content(seed: int, size: int) -> bytes:
    """Runs of zeros and of data of many lengths, at offsets of every alignment."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        length = rng.choice([1, 100, 255, 256, 511, 4095, 4096, 4097, 9000, 70_000, 1 << 20])
        out += bytes(length) if rng.random() < 0.5 else rng.randbytes(length)
    return bytes(out[:size])


def _data_blocks(path: Path) -> set[int]:
    """The blocks of a file that hold data (SEEK_DATA / SEEK_HOLE)."""
    blocks: set[int] = set()
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break  # only a hole is left
            end = os.lseek(fd, start, os.SEEK_HOLE)
            blocks.update(range(start // BLOCK, (end + BLOCK - 1) // BLOCK))
            pos = end
    finally:
        os.close(fd)
    return blocks


@pytest.mark.parametrize("lead", [0, 1, 511, 700_001])
def test_every_block_of_zeros_is_a_hole_wherever_the_pieces_end(tmp_path: Path, lead: int) -> None:
    # `lead`: a first file of that size moves the second's content to another offset in
    # the tar reader's buffers, so its pieces end at other places in the file.
    content = _content(lead, (6 << 20) + 1234)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        first = tarfile.TarInfo("lead")
        first.size = lead
        tar.addfile(first, io.BytesIO(b"x" * lead))
        info = tarfile.TarInfo("f")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    data = buf.getvalue()
    snap, record = tmp_path / "snap", tmp_path / "record"
    diff_id = unpack_with_record(data, snap, record)
    assert (snap / "f").read_bytes() == content
    whole = len(content) // BLOCK
    zero = {b for b in range(whole) if content[b * BLOCK : (b + 1) * BLOCK] == bytes(BLOCK)}
    written = _data_blocks(snap / "f")
    assert zero, "the content must hold blocks of zeros"
    assert not (zero & written), "a block of zeros was written, not left a hole"
    assert written >= set(range(whole)) - zero  # every other block holds its data
    with RebuiltTar(snap, record, diff_id, len(data)) as rebuilt:
        assert rebuilt.read() == data
