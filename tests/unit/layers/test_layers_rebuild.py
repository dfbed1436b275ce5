"""A layer's tar rebuilt with many reads in flight: streamed, or written at its offsets
into a file, it is the exact tar; a snapshot changed on disk is refused either way.

Written into a file by helper processes (``_rebuildprocs``): the diff_id is checked over
the bytes in the output file (not the helpers' buffers), a helper's error comes back as
itself, a helper that dies is an error, and no helper outlives the call (nor its parent,
killed)."""

from __future__ import annotations

import hashlib
import io
import os
import random
import signal
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
import zlib
from pathlib import Path

import pytest
from layer_snapshots import unpack_with_record

from lamina.errors import DigestMismatchError, InvalidInputError, LaminaError
from lamina.layers import RebuiltTar, SplitRecorder
from lamina.layers import _rebuild as rebuild
from lamina.layers import _rebuildprocs as rebuildprocs
from lamina.layers._tarsplit import FileOp, RawOp, read_record


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pieces of a few files and ranges of a few KiB, so a small tar makes many of each
    and the threads finish them out of order."""
    monkeypatch.setattr(rebuild, "_BATCH_BYTES", 6000)
    monkeypatch.setattr(rebuild, "_BATCH_FILES", 3)
    monkeypatch.setattr(rebuild, "_BIG", 10_000)
    monkeypatch.setattr(rebuild, "_RANGE", 7000)
    monkeypatch.setattr(rebuild, "_AHEAD_PIECES", 5)
    monkeypatch.setattr(rebuild, "_MAX_DIRS", 3)  # directory fds closed and opened again


@pytest.fixture(params=["helpers", "threads"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``write_at`` done by its helper processes, or (where there is no fork) by threads."""
    if request.param == "threads":
        monkeypatch.setattr(rebuildprocs, "HELPERS", 0)
    return str(request.param)


_TAMPERED = {"d2/flip": 3000, "d3/grow": 512, "d1/swap": 700, "d0/gone": 10_001}


def _layer(tmp_path: Path, sparse_size: int = 3 << 20) -> tuple[Path, Path, bytes, str]:
    """A layer of many files of many sizes (empty, small, several ranges, one with holes
    inside and at its ends), applied into a snapshot with its record."""
    rng = random.Random(7)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in range(4):
            info = tarfile.TarInfo(f"d{d}")
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
            for n in range(25):
                size = rng.choice([0, 1, 511, 512, 513, 3000, 9_999, 10_001, 33_333])
                info = tarfile.TarInfo(f"d{d}/f{n}")
                info.size = size
                tar.addfile(info, io.BytesIO(rng.randbytes(size)))
        for name, size in _TAMPERED.items():  # what the tampering tests change
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, io.BytesIO(rng.randbytes(size)))
        info = tarfile.TarInfo("d0/sparse")
        info.size = sparse_size
        body = bytes(1 << 20) + b"data" * 5000 + bytes(sparse_size - (1 << 20) - 20_000)
        tar.addfile(info, io.BytesIO(body))
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.linkname = "d1/f1"
        tar.addfile(info)
    data = buf.getvalue()
    snap, record = tmp_path / "snap", tmp_path / "record"
    diff_id = unpack_with_record(data, snap, record)
    assert diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    return snap, record, data, diff_id


def _write_into(out: Path, tar: RebuiltTar, offset: int = 0) -> int:
    """``tar.write_at`` into the file ``out`` (made if missing) at ``offset``."""
    fd = os.open(out, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        return tar.write_at(fd, offset)
    finally:
        os.close(fd)


def test_plan_covers_the_tar_once_in_order(tmp_path: Path, small_pieces: None) -> None:
    _snap, record, data, _ = _layer(tmp_path)
    with open(record, "rb") as f:
        ops = list(read_record(f))
    pieces = list(rebuild.plan(ops))
    assert len(pieces) > 20
    at = 0
    for piece in pieces:
        assert piece.start == at and piece.size > 0
        at += piece.size
        if piece.ranged:
            (op,) = piece.ops
            assert isinstance(op, FileOp) and op.size > 10_000
            assert piece.skip + piece.size <= op.size
        else:
            files = [op for op in piece.ops if isinstance(op, FileOp)]
            assert len(files) <= 3
            body = sum(len(op.data) if isinstance(op, RawOp) else op.size for op in piece.ops)
            assert body == piece.size
    assert at == len(data)


@pytest.mark.parametrize("fresh", [True, False], ids=["past-the-end", "over-old-bytes"])
def test_written_at_an_offset_is_the_exact_tar(
    tmp_path: Path, small_pieces: None, fresh: bool, way: str
) -> None:
    snap, record, data, diff_id = _layer(tmp_path)
    out = tmp_path / "out"
    before = b"H" * 1000
    old = os.urandom(len(data) + 5000) if not fresh else b""
    out.write_bytes(before + old)
    fd = os.open(out, os.O_RDWR)
    try:
        with RebuiltTar(snap, record, diff_id, len(data)) as tar:
            assert tar.write_at(fd, len(before)) == len(data)
    finally:
        os.close(fd)
    written = out.read_bytes()
    assert written[: len(before)] == before
    assert written[len(before) : len(before) + len(data)] == data
    assert written[len(before) + len(data) :] == old[len(data) :]
    with RebuiltTar(snap, record, diff_id, len(data)) as tar:
        assert tar.read() == data  # the stream, through the same pieces


def test_holes_stay_holes_in_a_fresh_output(tmp_path: Path, way: str) -> None:
    snap, record, data, diff_id = _layer(tmp_path, sparse_size=256 << 20)
    out = tmp_path / "out"
    with RebuiltTar(snap, record, diff_id, len(data)) as tar:
        _write_into(out, tar)
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert os.stat(out).st_blocks * 512 < 64 << 20, "the zeros of a hole were written"


def test_a_tar_ending_in_a_hole_has_its_whole_length(tmp_path: Path, way: str) -> None:
    """A record is bytes and files in order, whatever they make: one that ends in a file's
    hole (no trailer after it) still gives a file of the tar's whole length."""
    snap, record = tmp_path / "snap", tmp_path / "record"
    snap.mkdir()
    size = 12 << 20
    with open(snap / "f", "wb") as f:
        f.write(b"x" * 4096)
        f.truncate(size)
    head = b"H" * 512
    with open(record, "wb") as f:
        recorder = SplitRecorder(f)
        recorder.raw(head)
        recorder.file("f", size)
        recorder.close()
    data = head + b"x" * 4096 + bytes(size - 4096)
    diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
    out = tmp_path / "out"
    fd = os.open(out, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with RebuiltTar(snap, record, diff_id, len(data)) as tar:
            assert tar.write_at(fd, 0) == len(data)
    finally:
        os.close(fd)
    assert out.read_bytes() == data


def _tamper_flip(snap: Path) -> None:
    target = snap / "d2" / "flip"
    body = bytearray(target.read_bytes())
    body[-1] ^= 1
    target.write_bytes(bytes(body))


def _tamper_grow(snap: Path) -> None:
    with open(snap / "d3" / "grow", "ab") as f:
        f.write(b"!")


def _tamper_symlink(snap: Path) -> None:
    (snap / "d1" / "swap").unlink()
    (snap / "d1" / "swap").symlink_to("/etc/passwd")


def _tamper_fifo(snap: Path) -> None:
    """A FIFO where a file was: refused, not waited on (its open would wait for a writer)."""
    (snap / "d1" / "swap").unlink()
    os.mkfifo(snap / "d1" / "swap")


def _tamper_remove(snap: Path) -> None:
    (snap / "d0" / "gone").unlink()


def _tamper_sparse(snap: Path) -> None:
    with open(snap / "d0" / "sparse", "r+b") as f:
        f.seek(2 << 20)
        f.write(b"x")


@pytest.mark.parametrize(
    "tamper",
    [_tamper_flip, _tamper_grow, _tamper_symlink, _tamper_fifo, _tamper_remove, _tamper_sparse],
)
@pytest.mark.parametrize("how", ["write_at", "write_at-threads", "read"])
def test_a_changed_snapshot_is_refused(
    tmp_path: Path, small_pieces: None, tamper: object, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if how == "write_at-threads":
        monkeypatch.setattr(rebuildprocs, "HELPERS", 0)
    snap, record, data, diff_id = _layer(tmp_path)
    tamper(snap)  # type: ignore[operator]
    with pytest.raises(DigestMismatchError), RebuiltTar(snap, record, diff_id, len(data)) as tar:
        if how == "read":
            tar.read()
        else:
            fd = os.open(tmp_path / "out", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                tar.write_at(fd, 0)
            finally:
                os.close(fd)


def _record(tmp_path: Path, frames: list[tuple[str, bytes | int]]) -> Path:
    """A record of raw bytes (("R", data)) and files (("F", size), named f0, f1, …)."""
    path = tmp_path / "record"
    with open(path, "wb") as f:
        recorder = SplitRecorder(f)
        for n, (kind, value) in enumerate(frames):
            if kind == "R":
                assert isinstance(value, bytes)
                recorder.raw(value)
            else:
                assert isinstance(value, int)
                recorder.file(f"f{n}", value)
        recorder.close()
    return path


def test_a_record_is_read_a_piece_at_a_time_and_frames_cut_by_a_piece_join(
    tmp_path: Path,
) -> None:
    """Frames many MiB long in all, so the decoded record comes in several MiB pieces
    and frames straddle their edges; every frame comes back whole, in order."""
    rng = random.Random(3)
    frames: list[tuple[str, bytes | int]] = []
    for _ in range(9000):
        frames.append(("R", rng.randbytes(rng.choice([1, 100, 511, 700]))))
        frames.append(("F", rng.randrange(1, 1 << 40)))
    frames.append(("R", rng.randbytes(3 << 20)))  # one raw frame longer than a piece
    path = _record(tmp_path, frames)
    with open(path, "rb") as f:
        ops = list(read_record(f))
    expected: list[RawOp | FileOp] = []
    for n, (kind, value) in enumerate(frames):
        if kind == "R":
            assert isinstance(value, bytes)
            if value:
                for part in (value[i : i + (1 << 20)] for i in range(0, len(value), 1 << 20)):
                    expected.append(RawOp(part))  # the recorder flushes raw bytes per MiB
        else:
            assert isinstance(value, int)
            expected.append(FileOp(f"f{n}", value))
    joined: list[RawOp | FileOp] = []
    for op in ops:  # raw frames may be cut where the recorder flushed: compare bytes
        if isinstance(op, RawOp) and joined and isinstance(joined[-1], RawOp):
            joined[-1] = RawOp(joined[-1].data + op.data)
        else:
            joined.append(op)
    merged: list[RawOp | FileOp] = []
    for op in expected:
        if isinstance(op, RawOp) and merged and isinstance(merged[-1], RawOp):
            merged[-1] = RawOp(merged[-1].data + op.data)
        else:
            merged.append(op)
    assert joined == merged


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "bad-frame"])
def test_a_damaged_record_is_an_error_when_it_is_reached(tmp_path: Path, damage: str) -> None:
    path = _record(tmp_path, [("R", os.urandom(3 << 20)), ("F", 10)])
    data = path.read_bytes()
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "corrupt":
        data = data[:100] + bytes(b ^ 0xFF for b in data[100:200]) + data[200:]
    else:
        z = zlib.decompressobj()
        plain = z.decompress(data)
        data = zlib.compress(plain + b"X")  # a frame kind that does not exist
    path.write_bytes(data)
    with open(path, "rb") as f, pytest.raises(InvalidInputError):
        list(read_record(f))


def test_a_record_longer_than_the_size_writes_nothing_past_it(
    tmp_path: Path, small_pieces: None, way: str
) -> None:
    """The size the store knows bounds the region: a record that adds up to more is
    refused as its frames are read, before a piece past the size is written."""
    snap, record, data, diff_id = _layer(tmp_path)
    out = tmp_path / "out"
    short = len(data) // 2
    with pytest.raises(DigestMismatchError), RebuiltTar(snap, record, diff_id, short) as tar:
        _write_into(out, tar)
    assert os.path.getsize(out) <= short


def test_positional_pieces_reuse_their_buffers(
    tmp_path: Path, small_pieces: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written into a file, the pieces are read into buffers used again once hashed: far
    fewer are made than there are pieces (no new memory per piece). Counted in this
    process: by threads (the helpers use the same ``_Buffers``)."""
    monkeypatch.setattr(rebuildprocs, "HELPERS", 0)
    made: list[int] = []
    real = bytearray

    class Counting(real):  # type: ignore[misc,valid-type]
        def __init__(self, *args: object) -> None:
            made.append(1)
            super().__init__(*args)

    monkeypatch.setattr(rebuild, "bytearray", Counting, raising=False)
    snap, record, data, diff_id = _layer(tmp_path)
    with open(record, "rb") as f:
        pieces = len(list(rebuild.plan(read_record(f))))
    out = tmp_path / "out"
    with RebuiltTar(snap, record, diff_id, len(data)) as tar:
        _write_into(out, tar)
    assert out.read_bytes() == data
    assert pieces > 30
    assert 0 < len(made) <= rebuild._AHEAD_PIECES + 1


class _TreeChanged(DigestMismatchError):
    pass


def test_the_tree_check_refuses_a_stream_before_its_first_byte(tmp_path: Path) -> None:
    snap, record, data, diff_id = _layer(tmp_path)
    ran: list[str] = []

    def check() -> None:
        ran.append("check")
        raise _TreeChanged("snapshot", "a", "b")

    tar = RebuiltTar(snap, record, diff_id, len(data), check_tree=check)
    with tar, pytest.raises(_TreeChanged):
        tar.read(10)
    assert ran == ["check"]


def test_the_tree_check_runs_beside_write_at_and_refuses_before_it_returns(
    tmp_path: Path, small_pieces: None, way: str
) -> None:
    snap, record, data, diff_id = _layer(tmp_path)
    threads: list[str] = []

    def check() -> None:
        threads.append(threading.current_thread().name)
        raise _TreeChanged("snapshot", "a", "b")

    tar = RebuiltTar(snap, record, diff_id, len(data), check_tree=check)
    with tar, pytest.raises(_TreeChanged):
        _write_into(tmp_path / "out", tar)
    assert threads and threads[0] != threading.current_thread().name


def _children() -> set[int]:
    """This process's living children (a zombie counts: it was not reaped)."""
    found: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                found.update(int(pid) for pid in f.read().split())
        except FileNotFoundError:
            continue  # a thread that ended since the listing: it has no children now
    return found


@pytest.mark.parametrize("mode", [os.O_RDWR, os.O_WRONLY], ids=["read-write", "write-only"])
def test_the_pieces_are_written_by_other_processes(
    tmp_path: Path, small_pieces: None, monkeypatch: pytest.MonkeyPatch, mode: int
) -> None:
    """Also into an output opened only to write (``save -o``, ``> file``): it is read
    back through the same file opened again."""
    snap, record, data, diff_id = _layer(tmp_path)
    pids = tmp_path / "pids"
    real = rebuild._write_piece

    def noting(piece, *rest):  # type: ignore[no-untyped-def]
        with open(pids, "a") as f:
            f.write(f"{os.getpid()}\n")
        return real(piece, *rest)

    monkeypatch.setattr(rebuildprocs, "_write_piece", noting)
    before = _children()
    fd = os.open(tmp_path / "out", mode | os.O_CREAT, 0o600)
    try:
        with RebuiltTar(snap, record, diff_id, len(data)) as tar:
            assert tar.write_at(fd, 0) == len(data)
    finally:
        os.close(fd)
    assert (tmp_path / "out").read_bytes() == data
    writers = pids.read_text().split()
    assert len(writers) > 20 and len(set(writers)) == rebuildprocs.HELPERS
    assert str(os.getpid()) not in writers
    assert _children() == before  # every helper reaped


def test_the_digest_is_of_the_bytes_in_the_file_not_of_what_was_read(
    tmp_path: Path, small_pieces: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that put a wrong byte into the output (after the piece was read right) is
    found: the regions are hashed as read back from the file."""
    snap, record, data, diff_id = _layer(tmp_path)
    real = rebuild._write_piece

    def miswriting(piece, *rest):  # type: ignore[no-untyped-def]
        got = real(piece, *rest)
        out = rest[1]
        if piece.start <= 70_000 < piece.start + piece.size:
            at = out.base + 70_000
            os.pwrite(out.fd, bytes([os.pread(out.fd, 1, at)[0] ^ 1]), at)
        return got

    monkeypatch.setattr(rebuildprocs, "_write_piece", miswriting)
    with pytest.raises(DigestMismatchError), RebuiltTar(snap, record, diff_id, len(data)) as tar:
        _write_into(tmp_path / "out", tar)


def test_a_helpers_error_comes_back_as_itself(tmp_path: Path, small_pieces: None) -> None:
    snap, record, data, diff_id = _layer(tmp_path)
    os.truncate(snap / "d3" / "grow", 100)
    before = _children()
    with (
        pytest.raises(DigestMismatchError) as caught,
        RebuiltTar(snap, record, diff_id, len(data)) as tar,
    ):
        _write_into(tmp_path / "out", tar)
    assert "'d3/grow': size" in str(caught.value)
    assert (caught.value.expected, caught.value.actual) == ("512", "100")
    assert _children() == before


def test_an_error_that_is_not_laminas_comes_back_with_its_text() -> None:
    body = rebuildprocs._error_report(ValueError("odd"))
    kind, length, _ = rebuildprocs._REPORT.unpack(body[: rebuildprocs._REPORT.size])
    assert kind == rebuildprocs._ERROR
    exc = rebuildprocs._error_from(body[rebuildprocs._REPORT.size :][:length])
    assert isinstance(exc, LaminaError) and "ValueError('odd')" in str(exc)
    body = rebuildprocs._error_report(PermissionError(13, "Permission denied", "d0/f1"))
    exc = rebuildprocs._error_from(body[rebuildprocs._REPORT.size :])
    assert isinstance(exc, PermissionError) and exc.filename == "d0/f1"


def test_a_helper_that_dies_is_an_error_and_stops_the_others(
    tmp_path: Path, small_pieces: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap, record, data, diff_id = _layer(tmp_path)
    real = rebuild._write_piece

    def dying(piece, *rest):  # type: ignore[no-untyped-def]
        if piece.start > len(data) // 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(piece, *rest)

    monkeypatch.setattr(rebuildprocs, "_write_piece", dying)
    before = _children()
    with (
        pytest.raises(LaminaError, match="stopped without a word"),
        RebuiltTar(snap, record, diff_id, len(data)) as tar,
    ):
        _write_into(tmp_path / "out", tar)
    assert _children() == before


def test_the_helpers_stop_when_their_parent_is_killed(tmp_path: Path) -> None:
    """SIGKILL of the process that saves (a crash test's kill): its helpers see their
    pipes end and stop at their next piece, none is left writing."""
    snap, record, data, diff_id = _layer(tmp_path)
    pids = tmp_path / "pids"
    script = textwrap.dedent(f"""
        import os, sys, time
        from lamina.layers import RebuiltTar, _rebuild, _rebuildprocs
        _rebuild._BATCH_FILES = 1
        real = _rebuildprocs._write_piece
        def slow(piece, *rest):
            with open({str(pids)!r}, "a") as f:
                f.write(f"{{os.getpid()}}\\n")
            time.sleep(0.05)
            return real(piece, *rest)
        _rebuildprocs._write_piece = slow
        fd = os.open({str(tmp_path / "out")!r}, os.O_RDWR | os.O_CREAT, 0o600)
        with RebuiltTar({str(snap)!r}, {str(record)!r}, {diff_id!r}, {len(data)}) as tar:
            tar.write_at(fd, 0)
        print("finished")
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (
        not pids.exists() or len(set(pids.read_text().split())) < rebuildprocs.HELPERS
    ):
        time.sleep(0.01)
    parent.kill()
    out, _ = parent.communicate()
    assert out == b"", "the save finished before the kill: the test proved nothing"
    helpers = {int(pid) for pid in pids.read_text().split()}
    assert len(helpers) == rebuildprocs.HELPERS
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in helpers):
        time.sleep(0.02)
    assert not any(_alive(pid) for pid in helpers)
    size = os.path.getsize(tmp_path / "out")
    time.sleep(0.2)
    assert os.path.getsize(tmp_path / "out") == size
    assert hashlib.sha256(data).hexdigest() == diff_id.removeprefix("sha256:")


def _alive(pid: int) -> bool:
    """Running (a zombie, exited but not reaped by its new parent, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_no_process_to_be_had_falls_back_to_threads(
    tmp_path: Path, small_pieces: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap, record, data, diff_id = _layer(tmp_path)
    forks: list[int] = []

    def no_fork() -> int:
        forks.append(1)
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    before = _children()
    with RebuiltTar(snap, record, diff_id, len(data)) as tar:
        assert _write_into(tmp_path / "out", tar) == len(data)
    assert (tmp_path / "out").read_bytes() == data
    assert forks and _children() == before
