"""DirectCopy's files made by the copying process (many files) or right here (few): the
same snapshot and the same tar either way, through a ring far smaller than the copy, and
a failure of that process is the commit's, said clearly."""

from __future__ import annotations

import ctypes
import gc
import hashlib
import mmap
import os
import random
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from xattr_probe import xattrs_supported

from lamina.errors import InvalidInputError, LaminaError
from lamina.layers import (
    Change,
    DirectCopy,
    EntryCollector,
    SplitRecorder,
    _stagecopy,
    changes_from_dir,
    sort_changes,
    write_layer,
)

MTIME = 1_600_000_000_000_000_000


def _source(root: Path, files: int = 300) -> None:
    """Files of many sizes (empty, across ring ranges, several MiB), hardlinks (one set
    of empty files), a symlink, a sparse file, odd modes and owners, xattrs."""
    rng = random.Random(5)
    for n in range(files):
        d = root / f"d{n % 7}"
        d.mkdir(parents=True, exist_ok=True)
        size = rng.choice([0, 1, 511, 20_000, 300_000, 1 << 20, (1 << 20) + 1, 3_000_000])
        (d / f"f{n:04d}").write_bytes(rng.randbytes(size))
    os.link(root / "d1" / "f0001", root / "hard")
    (root / "empty-a").write_bytes(b"")
    os.link(root / "empty-a", root / "empty-b")
    (root / "sym").symlink_to("d1/f0001")
    with open(root / "sparse", "wb") as f:
        f.seek(8 << 20)
        f.write(b"end")
    os.chmod(root / "d2" / "f0002", 0o4751)
    os.chown(root / "d3" / "f0003", 1234, 5678)
    if xattrs_supported(root):
        os.setxattr(root / "d4" / "f0004", "user.mime", b"application/octet-stream")
    for top, dirs, names in os.walk(root):
        for name in dirs + names:
            os.utime(os.path.join(top, name), ns=(MTIME, MTIME), follow_symlinks=False)


def _small_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Change]:
    """A source of 40 files, its changes, and the copying process used for so few."""
    _source(tmp_path / "src", files=40)
    monkeypatch.setattr(_stagecopy, "_WORKER_MIN_FILES", 1)
    return sort_changes(changes_from_dir(tmp_path / "src"))


def _without_memfd(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(name: str, flags: int = 0) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "memfd_create", fail)


def _tree(root: Path) -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    inodes: dict[int, str] = {}
    for top, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = os.path.join(top, name)
            st = os.lstat(path)
            xattrs = sorted((n, os.getxattr(path, n, follow_symlinks=False))
                            for n in os.listxattr(path, follow_symlinks=False))  # fmt: skip
            body: str = ""
            group = os.path.relpath(path, root)
            if stat.S_ISREG(st.st_mode):
                body = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                group = inodes.setdefault(st.st_ino, group)
            elif stat.S_ISLNK(st.st_mode):
                body = os.readlink(path)
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_uid, st.st_gid,
                                                st.st_mtime_ns, st.st_size, body, group,
                                                tuple(xattrs))  # fmt: skip
    return out


def _copy(changes: list[Change], into: Path) -> tuple[str, bytes, list[Any], DirectCopy]:
    into.mkdir()
    record = into.parent / (into.name + ".record")
    index = EntryCollector()
    with open(record, "wb") as f, DirectCopy(str(into), changes, source_date_epoch=None) as copy:
        recorder = SplitRecorder(f)
        stats = write_layer(changes, None, record=recorder, collect=index, copier=copy)
        recorder.close()
    return stats.diff_id, record.read_bytes(), index.entries, copy


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    started: list[bool] = []
    real = _stagecopy._WorkerFiles.__init__

    def spy(self: Any, directory: str, ahead: list[tuple[str, int]]) -> None:
        real(self, directory, ahead)
        started.append(True)

    monkeypatch.setattr(_stagecopy._WorkerFiles, "__init__", spy)
    return started


def test_the_copying_process_makes_the_snapshot_the_local_copy_makes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _source(tmp_path / "src")
    changes = sort_changes(changes_from_dir(tmp_path / "src"))
    started = _spy(monkeypatch)
    monkeypatch.setattr(_stagecopy, "_WORKER_MIN_FILES", 1 << 40)
    monkeypatch.setattr(_stagecopy, "_WORKER_MIN_BYTES", 1 << 60)
    local = _copy(changes, tmp_path / "local")
    assert started == []
    # The ring far smaller than the copy (it goes round many times, and the writer waits
    # for the worker), and files bigger than a ring range sent in pieces.
    monkeypatch.setattr(_stagecopy, "_WORKER_MIN_FILES", 1)
    monkeypatch.setattr(_stagecopy, "_RING", 3 << 20)
    monkeypatch.setattr(_stagecopy, "_FLUSH_BYTES", 256 << 10)
    worker = _copy(changes, tmp_path / "worker")
    assert started == [True]
    assert worker[:3] == local[:3]  # diff_id, tar-split record, file index
    plain = write_layer(changes, None)
    assert worker[0] == plain.diff_id
    got = _tree(tmp_path / "worker")
    assert got == _tree(tmp_path / "local") == _tree(tmp_path / "src")
    assert got["d2/f0002"][0] & 0o7777 == 0o4751  # chown first, then the setuid mode
    assert got["d3/f0003"][1:3] == (1234, 5678)
    assert got["hard"][6] == got["d1/f0001"][6] and got["empty-b"][6] == got["empty-a"][6]
    assert os.lstat(tmp_path / "worker" / "sparse").st_blocks * 512 < 1 << 20


def test_a_file_the_copying_process_cannot_make_fails_the_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    changes = _small_source(tmp_path, monkeypatch)
    real_place = DirectCopy.place
    into = tmp_path / "into"

    def place(self: DirectCopy, change: Change, st: os.stat_result, xattrs: Any) -> Any:
        made = real_place(self, change, st, xattrs)
        if change.path == "d5":
            os.rmdir(into / "d5")  # the worker finds no directory for d5's files
        return made

    monkeypatch.setattr(DirectCopy, "place", place)
    with pytest.raises(FileNotFoundError, match="d5/f"):
        _copy(changes, into)


def test_a_copying_process_that_dies_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    changes = _small_source(tmp_path, monkeypatch)
    dying = tmp_path / "dying.py"
    dying.write_text("import sys; sys.exit(3)\n")
    monkeypatch.setattr(_stagecopy, "_WORKER", str(dying))
    with pytest.raises(LaminaError, match=r"copying process ended early \(exit status 3\)"):
        _copy(changes, tmp_path / "into")


def test_a_failure_the_copying_process_reports_is_raised_with_its_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An xattr the file system refuses is the applier's InvalidInputError; any other
    failure of the worker is a LaminaError that says so, never a silent exit."""
    changes = _small_source(tmp_path, monkeypatch)
    here = os.path.dirname(_stagecopy._WORKER)
    for kind, error, text in [
        ("KIND_XATTR", InvalidInputError, "cannot set xattr"),
        ("KIND_OTHER", LaminaError, "the copying process failed: .*boom"),
    ]:
        script = tmp_path / f"{kind}.py"
        script.write_text(
            "import os, sys\n"
            f"sys.path.insert(0, {here!r})\n"
            "import _copyworker as w\n"
            "os.read(0, 1)\n"
            f"w._fail(w.Worker(b'', memoryview(b'')), 0, w.{kind}, {text.replace('.*', '')!r})\n"
        )
        monkeypatch.setattr(_stagecopy, "_WORKER", str(script))
        with pytest.raises(error, match=text):
            _copy(changes, tmp_path / f"into-{kind}")


def test_without_a_process_the_files_are_made_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    changes = _small_source(tmp_path, monkeypatch)
    _without_memfd(monkeypatch)
    diff_id, _, _, _ = _copy(changes, tmp_path / "into")
    assert diff_id == write_layer(changes, None).diff_id
    assert _tree(tmp_path / "into") == _tree(tmp_path / "src")


def _resident_pages(path: Path) -> set[int]:
    """Which pages of a file the page cache holds (mincore(2) of a mapping of it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]  # fmt: skip
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = path.stat().st_size
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            vec = (ctypes.c_ubyte * pages)()
            assert libc.mincore(addr, size, vec) == 0, os.strerror(ctypes.get_errno())
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return {n for n, v in enumerate(vec) if v & 1}


def _resident(path: Path) -> int:
    """How many bytes of a file the page cache holds."""
    return len(_resident_pages(path)) * mmap.PAGESIZE


def _evict(path: Path) -> None:
    os.sync()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _cold_files(where: Path, count: int) -> list[Path]:
    files = []
    for n in range(count):
        path = where / f"cold{n}"
        path.write_bytes(os.urandom(1 << 20))
        files.append(path)
    for path in files:
        _evict(path)
    if max(_resident(p) for p in files):
        pytest.fail("pages stayed cached after POSIX_FADV_DONTNEED: cannot observe read-ahead")
    return files


def _wait_resident(path: Path, deadline: float) -> int:
    """How many bytes of `path` were seen in the page cache, each page at some poll until
    every one was or `deadline` passed. (This VM's DAMON pages out page cache left idle for
    about a second: under load a page the read-ahead brought in can go again before the
    last one arrives, and a single look would miss that it came.)"""
    pages = (path.stat().st_size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    seen: set[int] = set()
    while True:
        seen |= _resident_pages(path)
        if len(seen) >= pages or time.monotonic() >= deadline:
            return len(seen) * mmap.PAGESIZE
        time.sleep(0.02)


@pytest.mark.parametrize("process", [True, False], ids=["process", "thread"])
def test_read_ahead_brings_the_files_in_up_to_its_bound_and_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, process: bool
) -> None:
    """The listed files come into the page cache before anyone reads them, no further
    than the bound past what the reader has taken; closing (or dropping) it ends it."""
    monkeypatch.setattr(_stagecopy, "_READ_AHEAD", 1 << 20)
    monkeypatch.setattr(_stagecopy, "_TAKEN_STEP", 1)
    if not process:
        _without_memfd(monkeypatch)
    files = _cold_files(tmp_path, 6)
    listed = [(str(p), 1 << 20) for p in files]
    ahead = _stagecopy.ReadAhead(listed)
    deadline = time.monotonic() + 30
    try:
        if process:
            assert ahead._proc is not None and ahead._thread is None
        else:
            assert ahead._thread is not None and ahead._proc is None
        assert _wait_resident(files[0], deadline) == 1 << 20
        time.sleep(0.3)  # a bound of 1 MiB past nothing taken: the last is not asked for
        assert _resident(files[-1]) == 0
        ahead.taken(6 << 20)
        assert _wait_resident(files[-1], deadline) == 1 << 20
    finally:
        ahead.close()
    if process:
        dropped = _stagecopy.ReadAhead(listed)
        proc = dropped._proc
        assert proc is not None and proc.poll() is None
        del dropped
        gc.collect()
        assert proc.returncode is not None  # the finalizer ended it


def test_the_copys_progress_reaches_the_read_ahead_with_no_bytes_to_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files linked from an earlier snapshot put nothing in the ring, so no file records
    carry the reader's progress along: it is told all the same, and the read-ahead goes
    on past its bound instead of leaving the rest to be read cold."""
    monkeypatch.setattr(_stagecopy, "_READ_AHEAD", 1 << 20)
    monkeypatch.setattr(_stagecopy, "_TAKEN_STEP", 1)
    files = _cold_files(tmp_path, 6)
    (tmp_path / "into").mkdir()
    copy = _stagecopy._WorkerFiles(str(tmp_path / "into"), [(str(p), 1 << 20) for p in files])
    deadline = time.monotonic() + 30
    try:
        assert _wait_resident(files[0], deadline) == 1 << 20
        time.sleep(0.3)
        assert _resident(files[-1]) == 0
        copy.taken(6 << 20)
        assert _wait_resident(files[-1], deadline) == 1 << 20
        copy.finish()
    finally:
        copy.close()
