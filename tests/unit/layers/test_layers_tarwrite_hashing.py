"""The layer writer's hashing beside it: on a thread, or (an indexed layer of many
entries) in a child process reading the writer's buffers from a shared memfd. Either
way the diff_id is the sha256 of the tar's bytes and each file's index digest the
sha256 of its content, read once."""

from __future__ import annotations

import hashlib
import io
import os
import random
from pathlib import Path

import pytest

from lamina.errors import LaminaError
from lamina.layers import EntryCollector, _tarwrite, changes_from_dir, write_layer


def _tree(root: Path) -> dict[str, str]:
    """Files of many sizes (empty, sub-block, across several 1 MiB buffers), a hardlink
    and a symlink; the sha256 of each file's content by path."""
    root.mkdir()
    rng = random.Random(11)
    expected: dict[str, str] = {}
    for n in range(60):
        data = rng.randbytes(rng.choice([0, 1, 511, 512, 20_000, 70_000, 1_100_000, 2_500_000]))
        (root / f"f{n:02d}").write_bytes(data)
        expected[f"f{n:02d}"] = hashlib.sha256(data).hexdigest()
    os.link(root / "f07", root / "z-link")
    (root / "z-sym").symlink_to("f07")
    return expected


@pytest.mark.parametrize("process", [True, False], ids=["process", "thread"])
@pytest.mark.parametrize("sink", ["bytes", "none"])
def test_digests_beside_the_writer_equal_hashlib_of_each_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, process: bool, sink: str
) -> None:
    expected = _tree(tmp_path / "tree")
    monkeypatch.setattr(_tarwrite, "_PROCESS_MIN_ENTRIES", 1 if process else 1 << 40)
    started = _started(monkeypatch)
    changes = changes_from_dir(tmp_path / "tree")
    out = io.BytesIO()
    index = EntryCollector()
    stats = write_layer(changes, out if sink == "bytes" else None, collect=index)
    assert started == ([True] if process else [])
    assert stats.size > 2 * _tarwrite._PROCESS_BUFFERS * _tarwrite._BUF  # buffers went round
    plain = io.BytesIO()
    assert write_layer(changes, plain).diff_id == stats.diff_id  # no index: the thread
    assert stats.diff_id == "sha256:" + hashlib.sha256(plain.getvalue()).hexdigest()
    if sink == "bytes":
        assert out.getvalue() == plain.getvalue()
    got = {e.path: e for e in index.entries}
    assert {p: got[p].digest for p in expected} == expected
    assert (got["z-link"].kind, got["z-link"].digest, got["z-link"].link) == (
        "hardlink", expected["f07"], "f07")  # fmt: skip
    assert got["z-link"].size == (tmp_path / "tree" / "f07").stat().st_size
    assert (got["z-sym"].kind, got["z-sym"].digest, got["z-sym"].link) == ("symlink", None, "f07")
    assert [e.path for e in index.entries] == [c.path for c in changes]


def _started(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records each hashing process started."""
    started: list[bool] = []
    real = _tarwrite._ProcessHashing.__init__

    def spy(self: _tarwrite._ProcessHashing, stream: bool) -> None:
        started.append(True)
        real(self, stream)

    monkeypatch.setattr(_tarwrite._ProcessHashing, "__init__", spy)
    return started


def test_a_header_larger_than_a_buffer_goes_through_the_buffers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PAX header bigger than a buffer (a long xattr value) is split over buffers: the
    hashing process sees every byte in order."""
    monkeypatch.setattr(_tarwrite, "_PROCESS_MIN_ENTRIES", 1)
    out = _tarwrite._Output(io.BytesIO(), None, entries=1)
    sink = out.out
    assert isinstance(sink, io.BytesIO)
    data = random.Random(3).randbytes(3 * _tarwrite._BUF + 5)
    try:
        out.put(b"head")
        out.put(data)
        out.put(b"tail")
        out.finish()
    finally:
        out.close()
    assert sink.getvalue() == b"head" + data + b"tail"
    assert out.stream_digest == hashlib.sha256(sink.getvalue()).hexdigest()


def test_a_hashing_process_that_dies_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path / "tree")
    monkeypatch.setattr(_tarwrite, "_PROCESS_MIN_ENTRIES", 1)
    dying = tmp_path / "dying.py"
    dying.write_text("import sys; sys.exit(3)\n")
    monkeypatch.setattr(_tarwrite, "_WORKER", str(dying))
    with pytest.raises(LaminaError, match="hashing process ended early"):
        write_layer(changes_from_dir(tmp_path / "tree"), None, collect=EntryCollector())


def test_without_a_process_the_thread_hashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No memfd or no process (OSError): the writer falls back to its thread."""
    expected = _tree(tmp_path / "tree")
    monkeypatch.setattr(_tarwrite, "_PROCESS_MIN_ENTRIES", 1)

    def fail(name: str, flags: int = 0) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "memfd_create", fail)
    index = EntryCollector()
    write_layer(changes_from_dir(tmp_path / "tree"), None, collect=index)
    assert {e.path: e.digest for e in index.entries if e.path in expected} == expected


class _HashingSink:
    """A sink that hashes the tar itself (as a LayerBlobWriter does): the hashing
    process then hashes only the files."""

    def __init__(self) -> None:
        self.data = io.BytesIO()
        self._hash = hashlib.sha256()

    def write(self, data: bytes | memoryview, /) -> int:
        self._hash.update(data)
        return self.data.write(data)

    def uncompressed_digest(self) -> tuple[str, int]:
        return "sha256:" + self._hash.hexdigest(), self.data.tell()


def test_a_sink_that_hashes_the_tar_gets_the_file_digests_from_the_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _tree(tmp_path / "tree")
    monkeypatch.setattr(_tarwrite, "_PROCESS_MIN_ENTRIES", 1)
    started = _started(monkeypatch)
    sink = _HashingSink()
    index = EntryCollector()
    stats = write_layer(changes_from_dir(tmp_path / "tree"), sink, collect=index)
    assert started == [True]
    assert stats.diff_id == "sha256:" + hashlib.sha256(sink.data.getvalue()).hexdigest()
    got = {e.path: e.digest for e in index.entries}
    assert {p: got[p] for p in expected} == expected


@pytest.mark.parametrize("stream", [True, False], ids=["tar-and-files", "files"])
def test_the_process_refuses_file_numbers_out_of_order(
    monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    """A file's digest is taken when the next file's bytes arrive: a writer that went
    back to an earlier file is a bug, reported, never a wrong digest."""
    monkeypatch.setattr(_tarwrite, "_PROCESS_MIN_ENTRIES", 1)
    out = _tarwrite._Output(io.BytesIO() if stream else _HashingSink(), None, entries=1)
    assert isinstance(out.hashing, _tarwrite._ProcessHashing)
    try:
        first, second, _third = out.new_file(), out.new_file(), out.new_file()
        out.put(b"x" * 100)
        out.spans += (second, 0, 50, first, 50, 100)
        with pytest.raises(LaminaError, match="hashing process ended early"):
            out.finish()
    finally:
        out.close()


def test_the_writer_works_while_the_process_hashes_the_last_buffers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`finish(meanwhile)` runs `meanwhile` once, before the digests are read; empty
    files between others get the empty digest."""
    monkeypatch.setattr(_tarwrite, "_PROCESS_MIN_ENTRIES", 1)
    out = _tarwrite._Output(io.BytesIO(), None, entries=1)
    calls: list[int] = []
    try:
        numbers = [out.new_file() for _ in range(4)]  # 0 and 2 hold bytes, 1 and 3 none
        out.put(b"ab")
        out.spans += (numbers[0], 0, 1, numbers[2], 1, 2)
        out.finish(lambda: calls.append(len(out.file_digests)))
    finally:
        out.close()
    empty = hashlib.sha256().hexdigest()
    assert calls == [0]
    assert out.file_digests == [hashlib.sha256(b"a").hexdigest(), empty,
                                hashlib.sha256(b"b").hexdigest(), empty]  # fmt: skip
