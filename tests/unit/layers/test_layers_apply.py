"""The applier in plain mode, and the property apply(diff(A, B), A) == B."""

from __future__ import annotations

import io
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamina.layers import (
    Change,
    ChangeKind,
    apply_layer,
    changes_from_dir,
    diff_trees,
    write_layer,
)


def _snapshot(root: Path) -> dict[str, tuple[int, int, int, bytes | str]]:
    """Type+mode, owner and content (or link target) of everything under ``root``."""
    result: dict[str, tuple[int, int, int, bytes | str]] = {}
    for path in root.rglob("*"):
        s = os.lstat(path)
        if stat.S_ISLNK(s.st_mode):
            body: bytes | str = os.readlink(path)
        elif stat.S_ISREG(s.st_mode):
            body = path.read_bytes()
        else:
            body = b""
        result[str(path.relative_to(root))] = (s.st_mode, s.st_uid, s.st_gid, body)
    return result


def _layer(changes: list[Change]) -> io.BytesIO:
    out = io.BytesIO()
    write_layer(changes, out)
    out.seek(0)
    return out


def test_plain_whiteouts_and_replacements(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    (lower / "d" / "sub").mkdir(parents=True)
    (lower / "d" / "sub" / "old").write_text("old")
    (lower / "d" / "keep").write_text("keep")
    (lower / "gone").write_text("x")
    (lower / "todir").write_text("file")
    upper = tmp_path / "upper"
    (upper / "d").mkdir(parents=True)
    (upper / "todir").mkdir()
    (upper / "todir" / "x").write_text("x")
    changes = [
        *changes_from_dir(upper),
        Change("gone", ChangeKind.DELETE),
        Change("d/sub", ChangeKind.DELETE),
        Change("missing", ChangeKind.DELETE),
    ]
    stats = apply_layer(_layer(changes), lower, overlay=False)
    assert stats.entries == 6
    assert sorted(_snapshot(lower)) == ["d", "d/keep", "todir", "todir/x"]


def test_plain_opaque_hides_lower_only_in_any_order(tmp_path: Path) -> None:
    for order in ("marker-first", "marker-last"):
        lower = tmp_path / order
        (lower / "d" / "sub").mkdir(parents=True)
        (lower / "d" / "sub" / "lower-file").write_text("l")
        (lower / "d" / "lower-top").write_text("l")
        src = tmp_path / f"{order}-src"
        (src / "d" / "sub").mkdir(parents=True)
        (src / "d" / "sub" / "new").write_text("n")
        changes = changes_from_dir(src)
        marker = Change("d", ChangeKind.OPAQUE)
        changes = [marker, *changes] if order == "marker-first" else [*changes, marker]
        apply_layer(_layer(changes), lower, overlay=False)
        assert sorted(_snapshot(lower)) == ["d", "d/sub", "d/sub/new"], order


def test_apply_round_trip_keeps_modes_links_and_mtimes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "suid").write_bytes(b"#!")
    os.chmod(src / "bin" / "suid", 0o4755)
    os.link(src / "bin" / "suid", src / "bin" / "hard")
    os.symlink("../bin/suid", src / "bin" / "soft")
    os.mkfifo(src / "fifo", 0o640)
    os.setxattr(src / "bin" / "suid", "user.k", b"v")
    os.utime(src / "bin", ns=(10**18, 10**18))
    dst = tmp_path / "dst"
    dst.mkdir()
    apply_layer(_layer(changes_from_dir(src)), dst, overlay=False)
    assert _snapshot(dst) == _snapshot(src)
    assert os.stat(dst / "bin" / "suid").st_ino == os.stat(dst / "bin" / "hard").st_ino
    assert os.getxattr(dst / "bin" / "suid", "user.k") == b"v"
    assert os.stat(dst / "bin").st_mtime_ns == 10**18


_names = st.sampled_from(["a", "b", "c", "d"])
_node = st.recursive(
    st.one_of(
        st.tuples(st.just("file"), st.binary(max_size=64), st.sampled_from([0o644, 0o755, 0o4755])),
        st.tuples(st.just("link"), st.sampled_from(["a", "../b", "/c/d", "."]), st.just(0)),
    ),
    lambda children: st.tuples(
        st.just("dir"), st.dictionaries(_names, children, max_size=4),
        st.sampled_from([0o755, 0o700, 0o1777]),
    ),
    max_leaves=12,
)  # fmt: skip
_tree = st.dictionaries(_names, _node, max_size=4)


def build(root: Path, tree: dict[str, tuple[str, object, int]]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, (kind, value, mode) in tree.items():
        path = root / name
        if kind == "file":
            path.write_bytes(value)  # type: ignore[arg-type]
            os.chmod(path, mode)
        elif kind == "link":
            os.symlink(value, path)  # type: ignore[arg-type]
        else:
            build(path, value)  # type: ignore[arg-type]
            os.chmod(path, mode)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_tree, _tree)
def test_property_apply_diff_gives_b(
    a: dict[str, tuple[str, object, int]], b: dict[str, tuple[str, object, int]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ta, tb, target = Path(tmp, "a"), Path(tmp, "b"), Path(tmp, "target")
        build(ta, a)
        build(tb, b)
        shutil.copytree(ta, target, symlinks=True)
        apply_layer(_layer(diff_trees(ta, tb)), target, overlay=False)
        assert _snapshot(target) == _snapshot(tb)
