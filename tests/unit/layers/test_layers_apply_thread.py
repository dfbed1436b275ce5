"""The applier writes new small files of a fresh target in a process of its own (the file
writer, layers/_fileworker.py): whatever the order of entries (names taken twice,
symlinks on the way, a directory replaced by a file, hardlinks, whiteouts), the result is
the one the applier alone gives, which it uses when the target is not empty. A layer
starts the writer only past its first few small files; here it starts at once."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import os
import resource
import tarfile
from pathlib import Path

import pytest

from lamina.errors import LaminaError
from lamina.layers import EntryCollector, _apply, apply_layer
from lamina.store import IndexEntry

UID, GID = os.getuid(), os.getgid()
MARKER = "zz-not-fresh"


@pytest.fixture(autouse=True)
def _writer_from_the_first_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_apply, "_WRITER_AFTER", 0)


def _tar(*members: tuple[str, str, str]) -> bytes:
    """Members as (name, kind, link target or content)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for n, (name, kind, value) in enumerate(members):
            info = tarfile.TarInfo(name)
            info.uid, info.gid, info.mtime = UID, GID, 1_000_000 + n
            data = None
            if kind == "file":
                data = value.encode()
                info.size, info.mode = len(data), 0o640
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o750
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, value
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, value
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _listing(root: Path) -> list[tuple[str, int, int, int, str, int]]:
    rows = []
    inodes: dict[int, int] = {}
    for path in sorted(root.rglob("*")):
        if path.name == MARKER:
            continue
        st = os.lstat(path)
        body = ""
        if path.is_symlink():
            body = os.readlink(path)
        elif path.is_file():
            body = hashlib.sha256(path.read_bytes()).hexdigest()
        link_group = inodes.setdefault(st.st_ino, len(inodes))
        # A directory no entry names gets the time it was made: not compared.
        mtime = st.st_mtime_ns if st.st_mtime_ns < 10**17 else -1
        rows.append((str(path.relative_to(root)), st.st_mode, st.st_size, mtime, body,
                     link_group))  # fmt: skip
    return rows


def _both(tmp_path: Path, data: bytes) -> tuple[Path, Path, list[IndexEntry], list[IndexEntry]]:
    fresh, used = tmp_path / "fresh", tmp_path / "used"
    fresh.mkdir()
    used.mkdir()
    (used / MARKER).write_text("the one-thread applier")
    indexes = []
    for target in (fresh, used):
        index = EntryCollector()
        apply_layer(io.BytesIO(data), target, overlay=True, collect=index)
        indexes.append(index.entries)
    return fresh, used, indexes[0], indexes[1]


CASES = {
    "through a symlink, then by its own name": [
        ("b", "dir", ""),
        ("a", "symlink", "b"),
        ("a/x", "file", "one"),
        ("b/x", "file", "two"),
    ],
    "through an absolute symlink to a missing dir": [
        ("a", "symlink", "/b"),
        ("a/x", "file", "one"),
        ("b/x", "file", "two"),
        ("b/y", "file", "three"),
    ],
    "a dangling symlink's target made, then replaced by a file": [
        ("a", "symlink", "b"),
        ("a/x", "file", "one"),
        ("b", "file", "two"),
    ],
    "a file replaced by a directory": [("f", "file", "one"), ("f", "dir", "")],
    "a directory's files, then the directory replaced by a file": [
        ("d/f", "file", "one"),
        ("d/g", "file", "two"),
        ("d", "file", "three"),
        ("d2/e/f", "file", "four"),
        ("d2/e", "file", "five"),
    ],
    "a file, then a hardlink to it, then one to the link": [
        ("x", "file", "one"),
        ("y", "hardlink", "x"),
        ("z", "hardlink", "y"),
    ],
    "one name twice": [("x", "file", "one"), ("x", "file", "two"), ("x", "file", "")],
    "a file replaced by a symlink, then written through": [
        ("t/x", "file", "one"),
        ("x", "file", "two"),
        ("x", "symlink", "t"),
        ("x/y", "file", "three"),
    ],
    "a whiteout, then the same name as a file": [
        ("d/.wh.x", "file", ""),
        ("d/x", "file", "one"),
        ("d/.wh..wh..opq", "file", ""),
        ("d/y", "file", "two"),
    ],
    "a fifo, then a file of its name": [("p", "fifo", ""), ("p", "file", "one")],
    "many files, more than are queued": [
        (f"d{n % 7}/f{n}", "file", "x" * (n % 300)) for n in range(700)
    ],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fresh_target_gives_what_one_thread_gives(tmp_path: Path, case: str) -> None:
    fresh, used, fresh_index, used_index = _both(tmp_path, _tar(*CASES[case]))
    assert _listing(fresh) == _listing(used)
    assert _listing(fresh)  # something was written
    assert fresh_index == used_index


def test_a_file_writer_error_names_the_entry_and_stops_the_apply(tmp_path: Path) -> None:
    # A real error in the writer process: a file larger than RLIMIT_FSIZE (which the
    # process inherits; Python ignores SIGXFSZ, so write() fails with EFBIG).
    members = [(f"d/f{n}", "file", "abc") for n in range(50)]
    members[20] = ("d/f20", "file", "x" * 8192)
    data = _tar(*members)
    target = tmp_path / "t"
    target.mkdir()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(LaminaError, match=r"d/f20.*File too large") as caught:
            apply_layer(io.BytesIO(data), target, overlay=True)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    cause = caught.value.__cause__
    assert isinstance(cause, OSError) and cause.errno == errno.EFBIG
    # The writer wrote nothing after the failed file, and had ended when apply returned.
    written = sorted(p.name for p in (target / "d").iterdir())
    assert written == sorted(f"f{n}" for n in range(21))


def test_the_file_writer_starts_past_a_layers_first_small_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its first `_WRITER_AFTER` small files a layer writes itself (a process costs ~20
    ms); the rest goes to the writer, and the result is the same."""
    monkeypatch.setattr(_apply, "_WRITER_AFTER", 5)
    started: list[int] = []
    real = _apply._FileWriter.__init__

    def counting(self: _apply._FileWriter, applier: _apply._Applier) -> None:
        started.append(len(applier.created))
        real(self, applier)

    monkeypatch.setattr(_apply._FileWriter, "__init__", counting)
    data = _tar(*[(f"d/f{n}", "file", f"body {n}") for n in range(12)])
    fresh, used, fresh_index, used_index = _both(tmp_path, data)
    assert started == [6]  # once, at the sixth file
    assert _listing(fresh) == _listing(used)
    assert fresh_index == used_index


# A default ACL (user::rwx group::--- other::---): new files in its directory would get
# their mode masked by it, whatever open() is asked for.
_ACL = bytes.fromhex("0200000001000700ffffffff04000000ffffffff20000000ffffffff")


def _owned_tar() -> bytes:
    out = io.BytesIO()
    members: list[tuple[str, int, int, int, bytes | None]] = [
        ("sg", 0o2775, 0, 55, None),  # setgid: new files in it get group 55
    ]
    owners = [
        (0o640, UID, GID),
        (0o666, UID, GID),
        (0o777, UID, GID),
        (0o4755, UID, GID),
        (0o2755, UID, GID),
        (0o1644, UID, GID),
        (0o600, 1000, 1000),
        (0o644, UID, 55),
    ]
    for top in ("plain", "sg", "acl"):  # the ACL last: past it, every mode is set by fchmod
        if top == "acl":
            members.append(("acl", 0o755, 0, 0, _ACL))
        for n, (mode, uid, gid) in enumerate(owners):
            members.append((f"{top}/f{n}", mode, uid, gid, None))
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, mode, uid, gid, acl in members:
            info = tarfile.TarInfo(name)
            info.uid, info.gid, info.mode, info.mtime = uid, gid, mode, 1_000_000
            data = b"" if "/" not in name else name.encode()
            if "/" not in name:
                info.type = tarfile.DIRTYPE
            else:
                info.size = len(data)
            if acl is not None:
                key = "SCHILY.xattr.system.posix_acl_default"
                info.pax_headers = {key: acl.decode("utf-8", "surrogateescape")}
            tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_the_file_thread_gives_every_file_its_owner_and_mode(tmp_path: Path) -> None:
    """Files the thread creates with their mode and owner (no fchown, fchmod) and files it
    fixes afterwards end up alike: the tar's owner and mode, in a setgid directory and in
    one whose default ACL would mask the mode too."""
    fresh, used, _, _ = _both(tmp_path, _owned_tar())
    with tarfile.open(fileobj=io.BytesIO(_owned_tar())) as tf:
        expected = {m.name: (m.mode, m.uid, m.gid) for m in tf.getmembers() if m.isfile()}
    for root in (fresh, used):
        got = {}
        for name in expected:
            st = os.lstat(root / name)
            got[name] = (st.st_mode & 0o7777, st.st_uid, st.st_gid)
        assert got == expected
    assert os.getxattr(fresh / "acl", "system.posix_acl_default") == _ACL


def _inode_flags(path: Path) -> int | None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        buf = bytearray(4)
        fcntl.ioctl(fd, 0x80086601, buf)  # FS_IOC_GETFLAGS
        return int.from_bytes(buf, "little")
    except OSError:
        return None  # a file system without inode flags
    finally:
        os.close(fd)


def test_a_fresh_target_is_a_top_directory_while_it_is_filled(tmp_path: Path) -> None:
    """ext4's Orlov allocator spreads the subdirectories of a `chattr +T` directory over
    block groups with few directories: the unpack sets it while it runs, and leaves the
    target's flags as they were."""
    target = tmp_path / "t"
    target.mkdir()
    before = _inode_flags(target)
    assert before is not None, "the tests' temporary directory is on ext4 here"
    seen: list[int | None] = []
    data = _tar(("d/f", "file", "one"), ("e/g", "file", "two"))
    apply_layer(io.BytesIO(data), target, overlay=True,
                on_entry=lambda _entry: seen.append(_inode_flags(target)))  # fmt: skip
    assert seen and all(f is not None and f & 0x00020000 for f in seen)  # FS_TOPDIR_FL
    assert _inode_flags(target) == before
    assert (target / "e" / "g").read_text() == "two"
