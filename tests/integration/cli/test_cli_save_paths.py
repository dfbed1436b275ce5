"""`lamina save -o PATH` where PATH is odd: a missing directory, a directory, a device,
a symlink, a FIFO, a full disk, an unwritable place. Each failure is one line (Docker's
words where docker save has them) and exit 1, with no file left behind and nothing
replaced; a file that exists is replaced whole, and a device is never replaced."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _lamina(root: Path, *args: str, stdout: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lamina", "--root", str(root), *args],
        stdout=subprocess.PIPE if stdout is None else stdout, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("savepaths")
    tree = base / "tree"
    tree.mkdir()
    (tree / "hello").write_text("hi\n")
    done = _lamina(base / "root", "import", str(tree), "t/paths:1")
    assert done.returncode == 0, done.stderr
    return base / "root"


def _refused(done: subprocess.CompletedProcess[str], message: str) -> None:
    assert done.returncode == 1, done.stderr
    first, *rest = done.stderr.strip().splitlines()  # one error line, and a hint maybe
    assert first.startswith("Error: ") and all(r.startswith("hint: ") for r in rest), done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_directory(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "nodir" / "x.tar"
    done = _lamina(root, "save", "-o", str(out), "t/paths:1")
    _refused(done, f'invalid output path: directory "{out.parent}" does not exist')
    assert done.stderr.startswith("Error: failed to save image: ")
    assert os.listdir(tmp_path) == []


def test_a_directory(root: Path, tmp_path: Path) -> None:
    _refused(_lamina(root, "save", "-o", str(tmp_path), "t/paths:1"),
             f'failed to save image: invalid output path: "{tmp_path}" is a directory')  # fmt: skip
    assert os.listdir(tmp_path) == []


def test_a_device_is_never_replaced(root: Path, tmp_path: Path) -> None:
    device = tmp_path / "null"
    os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    _refused(_lamina(root, "save", "-o", str(device), "t/paths:1"), "got a device")
    assert stat.S_ISCHR(os.lstat(device).st_mode)
    assert os.listdir(tmp_path) == ["null"]


def test_a_symlink_to_a_device_is_never_replaced(root: Path, tmp_path: Path) -> None:
    device = tmp_path / "null"
    os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    link = tmp_path / "link"
    link.symlink_to(device)
    _refused(_lamina(root, "save", "-o", str(link), "t/paths:1"), "got a device")
    assert link.is_symlink() and stat.S_ISCHR(os.lstat(device).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["link", "null"]


def test_a_full_disk_is_one_line(root: Path) -> None:
    with open("/dev/full", "wb") as full:
        done = _lamina(root, "save", "t/paths:1", stdout=full.fileno())
    _refused(done, "No space left on device")


def test_an_unwritable_place(root: Path, tmp_path: Path) -> None:
    _refused(_lamina(root, "save", "-o", "/proc/x.tar", "t/paths:1"),
             "failed to save image: ")  # fmt: skip


def test_an_existing_file_is_replaced_whole(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.tar"
    out.write_bytes(b"old")
    other = tmp_path / "other-name"
    os.link(out, other)
    done = _lamina(root, "save", "-o", str(out), "t/paths:1")
    assert done.returncode == 0, done.stderr
    assert other.read_bytes() == b"old"  # a new file took the name: the old inode is intact
    assert out.stat().st_size > 1024
    assert sorted(os.listdir(tmp_path)) == ["other-name", "x.tar"]
    missing = _lamina(root, "save", "-o", str(out), "t/nope:1")
    _refused(missing, "such image: t/nope:1")
    assert out.stat().st_size > 1024


def test_a_symlink_to_a_file_is_written_through(root: Path, tmp_path: Path) -> None:
    target = tmp_path / "real.tar"
    target.write_bytes(b"old")
    link = tmp_path / "link.tar"
    link.symlink_to(target)
    done = _lamina(root, "save", "-o", str(link), "t/paths:1")
    assert done.returncode == 0, done.stderr
    assert link.is_symlink()
    assert target.stat().st_size > 1024
    assert sorted(os.listdir(tmp_path)) == ["link.tar", "real.tar"]


def test_a_fifo_is_written_into(root: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    done = _lamina(root, "save", "-o", str(fifo), "t/paths:1")
    reader.join(timeout=30)
    if reader.is_alive():  # nothing was written into the FIFO: let the reader go
        os.close(os.open(fifo, os.O_WRONLY))
        reader.join()
    assert done.returncode == 0, done.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert len(got[0]) > 1024 and got[0][257:262] == b"ustar"
    assert os.listdir(tmp_path) == ["fifo"]
