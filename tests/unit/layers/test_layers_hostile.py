"""Breakout tars (as containerd's TestBreakouts): each is refused with an error naming
the entry, or contained inside the target; a sentinel beside the target never changes."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from lamina.errors import InvalidInputError
from lamina.layers import Limits, apply_layer, open_layer_reader

UID, GID = os.getuid(), os.getgid()


def _listing(root: Path) -> list[tuple[str, int, int, int, str]]:
    rows = []
    for path in sorted([root, *root.rglob("*")]):
        st = os.lstat(path)
        body = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        if path.is_symlink():
            body = os.readlink(path)
        rows.append((str(path), st.st_mode, st.st_size, st.st_mtime_ns, body))
    return rows


def _tar(*members: tuple[str, str, str | bytes]) -> bytes:
    """Members as (name, kind, link target or content)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, value in members:
            info = tarfile.TarInfo(name)
            info.uid, info.gid = UID, GID
            data = None
            if kind == "file":
                data = value.encode() if isinstance(value, str) else value
                info.size = len(data)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(value)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, str(value)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


@pytest.fixture
def arena(tmp_path: Path) -> tuple[Path, Path]:
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "secret").write_text("do not touch")
    (sentinel / "dir").mkdir()
    target = tmp_path / "target"
    target.mkdir()
    return target, sentinel


def _refused(data: bytes, target: Path, entry: str, limits: Limits | None = None) -> None:
    with pytest.raises(InvalidInputError) as info:
        apply_layer(io.BytesIO(data), target, overlay=False, limits=limits or Limits())
    assert entry in str(info.value)


SENTINEL = "@SENTINEL@"  # replaced by the sentinel's absolute path

REFUSED: list[tuple[str, list[tuple[str, str, str]], str]] = [
    ("traversal", [("../../x", "file", "pwned")], "../../x"),
    ("traversal in the middle", [("a/../../sentinel/x", "file", "pwned")], "a/../../sentinel/x"),
    ("symlink named dot replaces root", [(".", "symlink", SENTINEL)], "."),
    ("file replaces root", [("./", "file", "x")], "./"),
    ("hardlink out of the root", [("hl", "hardlink", "../../etc/passwd")], "../../etc/passwd"),
    ("hardlink to a missing file", [("hl", "hardlink", SENTINEL + "/secret")], "hl"),
    ("whiteout of dotdot", [(".wh...", "file", "")], ".wh..."),
    ("whiteout of a whiteout", [("d/.wh..wh.x", "file", "")], ".wh..wh.x"),
    ("whiteout above the root", [("../.wh.sentinel", "file", "")], "../.wh.sentinel"),
]


@pytest.mark.parametrize("overlay", [False, True], ids=["plain", "overlay"])
@pytest.mark.parametrize(("threat", "members", "entry"), REFUSED, ids=[r[0] for r in REFUSED])
def test_breakout_refused(
    arena: tuple[Path, Path],
    threat: str,
    members: list[tuple[str, str, str]],
    entry: str,
    overlay: bool,
) -> None:
    target, sentinel = arena
    before = _listing(sentinel)
    data = _tar(*[(n, k, v.replace(SENTINEL, str(sentinel))) for n, k, v in members])
    with pytest.raises(InvalidInputError) as info:
        apply_layer(io.BytesIO(data), target, overlay=overlay)
    assert entry in str(info.value)
    assert _listing(sentinel) == before


Case = tuple[str, list[tuple[str, str, str]], Callable[[Path], bool]]


def _contained_cases(s: str) -> list[Case]:
    return [
        ("absolute name is stripped", [(f"{s}/secret", "file", "pwned")],
         lambda t: (t / s.lstrip("/") / "secret").read_text() == "pwned"),
        ("write through an absolute symlink",
         [("link", "symlink", s), ("link/secret", "file", "pwned")],
         lambda t: (t / s.lstrip("/") / "secret").read_text() == "pwned"),
        ("write through a relative symlink climbing out",
         [("link", "symlink", "../../../sentinel"), ("link/secret", "file", "pwned")],
         lambda t: (t / "sentinel" / "secret").read_text() == "pwned"),
        ("symlink chain through a dot symlink",
         [("d", "dir", ""), ("d/dot", "symlink", "."), ("d/dot/up", "symlink", "../../.."),
          ("d/dot/up/x", "file", "pwned")],
         lambda t: (t / "x").read_text() == "pwned"),
        ("hardlink to a symlink pointing out",
         [("evil", "symlink", s + "/secret"), ("hl", "hardlink", "evil"), ("hl", "file", "w")],
         lambda t: (t / "hl").read_text() == "w" and os.readlink(t / "evil") == s + "/secret"),
        ("whiteout through a symlinked parent",
         [("link", "symlink", s), ("link/.wh.secret", "file", "")],
         lambda t: os.readlink(t / "link") == s),
        ("symlink loop", [("a", "symlink", "b"), ("b", "symlink", "a")],
         lambda t: os.readlink(t / "a") == "b"),
    ]  # fmt: skip


@pytest.mark.parametrize("index", range(7))
def test_breakout_contained(arena: tuple[Path, Path], index: int) -> None:
    target, sentinel = arena
    threat, members, check = _contained_cases(str(sentinel))[index]
    before = _listing(sentinel)
    apply_layer(io.BytesIO(_tar(*members)), target, overlay=False)
    assert check(target), threat
    assert _listing(sentinel) == before


def test_symlink_loop_in_path_refused(arena: tuple[Path, Path]) -> None:
    target, _ = arena
    data = _tar(("a", "symlink", "b"), ("b", "symlink", "a"), ("a/x", "file", "pwned"))
    _refused(data, target, "a/x")


def test_too_many_entries_refused(arena: tuple[Path, Path]) -> None:
    target, _ = arena
    data = _tar(*[(f"f{i}", "file", "x") for i in range(20)])
    _refused(data, target, "f10", Limits(max_entries=10))


def test_huge_long_name_refused(arena: tuple[Path, Path]) -> None:
    target, _ = arena
    data = _tar(("n/" * 3000, "file", "x"))
    with pytest.raises(InvalidInputError, match=r"exceeds|longer"):
        apply_layer(io.BytesIO(data), target, overlay=False)


def test_gzip_bomb_refused(arena: tuple[Path, Path]) -> None:
    target, _ = arena
    zeros = gzip.compress(bytes(64 << 20), compresslevel=9)
    assert len(zeros) < 128 << 10
    with pytest.raises(InvalidInputError, match="bomb"):
        apply_layer(open_layer_reader(io.BytesIO(zeros), 8 << 20), target, overlay=False)


def test_truncated_gzip_refused(arena: tuple[Path, Path]) -> None:
    target, _ = arena
    blob = gzip.compress(_tar(("f", "file", os.urandom(200_000).hex())))
    reader = open_layer_reader(io.BytesIO(blob[: len(blob) // 2]), 1 << 30)
    with pytest.raises(InvalidInputError, match=r"truncated|corrupt"):
        apply_layer(reader, target, overlay=False)


def test_truncated_tar_refused(arena: tuple[Path, Path]) -> None:
    target, _ = arena
    data = _tar(("f", "file", "x" * 5000))
    with pytest.raises(InvalidInputError, match="truncated"):
        apply_layer(io.BytesIO(data[:3000]), target, overlay=False)
