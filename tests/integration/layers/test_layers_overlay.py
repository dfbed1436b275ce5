"""Layers against the real kernel: overlayfs upper dirs, overlay-format snapshots
mounted with overlayfs, device nodes and owners (needs root)."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamina.errors import InvalidInputError
from lamina.layers import (
    Change,
    ChangeKind,
    TarReader,
    apply_layer,
    changes_from_dir,
    changes_from_overlay_upper,
    diff_trees,
    write_layer,
)

pytestmark = pytest.mark.integration


@contextmanager
def overlay(lowers: list[Path], mountpoint: Path, upper: Path | None = None) -> Iterator[Path]:
    mountpoint.mkdir(parents=True, exist_ok=True)
    opts = "lowerdir=" + ":".join(str(p) for p in lowers)
    if upper is not None:
        work = upper.parent / (upper.name + "-work")
        work.mkdir(exist_ok=True)
        opts += f",upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def _snapshot(root: Path) -> dict[str, tuple[int, int, int, int, bytes | str]]:
    result: dict[str, tuple[int, int, int, int, bytes | str]] = {}
    for path in root.rglob("*"):
        s = os.lstat(path)
        if stat.S_ISLNK(s.st_mode):
            body: bytes | str = os.readlink(path)
        elif stat.S_ISREG(s.st_mode):
            body = path.read_bytes()
        else:
            body = b""
        rel = str(path.relative_to(root))
        result[rel] = (s.st_mode, s.st_uid, s.st_gid, s.st_rdev, body)
    return result


def _layer(changes: list[Change]) -> io.BytesIO:
    out = io.BytesIO()
    write_layer(changes, out)
    out.seek(0)
    return out


def test_upper_dir_of_a_real_mount_becomes_whiteouts_and_opaque(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    (lower / "etc" / "conf.d").mkdir(parents=True)
    (lower / "etc" / "conf.d" / "old").write_text("old")
    (lower / "etc" / "motd").write_text("hi")
    (lower / "var").mkdir()
    upper = tmp_path / "upper"
    upper.mkdir()
    with overlay([lower], tmp_path / "merged", upper) as merged:
        (merged / "etc" / "motd").unlink()
        shutil.rmtree(merged / "etc" / "conf.d")
        (merged / "etc" / "conf.d").mkdir()  # recreated: overlayfs marks it opaque
        (merged / "etc" / "conf.d" / "new").write_text("new")
        (merged / "var" / "log").write_text("log")
    changes = changes_from_overlay_upper(upper)
    got = {(c.path, c.kind) for c in changes}
    assert ("etc/motd", ChangeKind.DELETE) in got
    assert ("etc/conf.d", ChangeKind.OPAQUE) in got
    names = [e.name for e, _ in TarReader(_layer(changes)).entries()]
    assert "etc/.wh.motd" in names and "etc/conf.d/.wh..wh..opq" in names
    assert names.index("etc/conf.d/") < names.index("etc/conf.d/.wh..wh..opq")
    # The same layer applied as a snapshot and stacked on the lower gives the merged view.
    snap = tmp_path / "snap"
    snap.mkdir()
    apply_layer(_layer(changes), snap, overlay=True)
    assert stat.S_ISCHR(os.lstat(snap / "etc" / "motd").st_mode)
    assert os.getxattr(snap / "etc" / "conf.d", "trusted.overlay.opaque") == b"y"
    with overlay([snap, lower], tmp_path / "view") as view:
        assert sorted(p.name for p in (view / "etc").iterdir()) == ["conf.d"]
        assert [p.name for p in (view / "etc" / "conf.d").iterdir()] == ["new"]


def test_devices_owners_and_capabilities_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "dev").mkdir(parents=True)
    os.mknod(src / "dev" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(src / "dev" / "loop9", stat.S_IFBLK | 0o660, os.makedev(7, 9))
    (src / "ping").write_bytes(b"\x7fELF")
    os.chown(src / "ping", 1000, 2000)
    os.chmod(src / "ping", 0o6755)
    cap = bytes.fromhex("0100000200200000000000000000000000000000")  # cap_net_raw
    os.setxattr(src / "ping", "security.capability", cap)
    os.symlink("ping", src / "link")
    os.chown(src / "link", 5, 6, follow_symlinks=False)
    dst = tmp_path / "dst"
    dst.mkdir()
    apply_layer(_layer(changes_from_dir(src)), dst, overlay=True)
    assert _snapshot(dst) == _snapshot(src)
    assert os.getxattr(dst / "ping", "security.capability") == cap
    # GNU tar as an independent reader of the same bytes.
    gnu = tmp_path / "gnu"
    gnu.mkdir()
    tar_file = tmp_path / "layer.tar"
    tar_file.write_bytes(_layer(changes_from_dir(src)).getvalue())
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "-xpf", str(tar_file), "-C",
                    str(gnu)], check=True)  # fmt: skip
    assert _snapshot(gnu) == _snapshot(src)
    assert os.getxattr(gnu / "ping", "security.capability") == cap


def test_overlay_private_xattrs_from_a_layer_are_dropped(tmp_path: Path) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("d")
        info.type = tarfile.DIRTYPE
        info.pax_headers = {"SCHILY.xattr.trusted.overlay.redirect": "/etc"}
        tf.addfile(info)
    out.seek(0)
    snap = tmp_path / "snap"
    snap.mkdir()
    apply_layer(out, snap, overlay=True)
    assert "trusted.overlay.redirect" not in os.listxattr(snap / "d")


_names = st.sampled_from(["a", "b", "c"])
_owner = st.sampled_from([(0, 0), (1000, 1000), (65534, 100)])
_node = st.recursive(
    st.one_of(
        st.tuples(
            st.just("file"), st.binary(max_size=32), st.sampled_from([0o644, 0o4755]), _owner
        ),
        st.tuples(st.just("link"), st.sampled_from(["a", "../b", "/c"]), st.just(0), _owner),
    ),
    lambda children: st.tuples(
        st.just("dir"), st.dictionaries(_names, children, max_size=3),
        st.sampled_from([0o755, 0o1777]), _owner,
    ),
    max_leaves=8,
)  # fmt: skip
_tree = st.dictionaries(_names, _node, max_size=3)


def build(root: Path, tree: dict[str, tuple[str, object, int, tuple[int, int]]]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, (kind, value, mode, (uid, gid)) in tree.items():
        path = root / name
        if kind == "file":
            path.write_bytes(value)  # type: ignore[arg-type]
        elif kind == "link":
            os.symlink(value, path)  # type: ignore[arg-type]
        else:
            build(path, value)  # type: ignore[arg-type]
        os.chown(path, uid, gid, follow_symlinks=False)
        if kind != "link":
            os.chmod(path, mode)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_tree, _tree)
def test_property_overlay_snapshot_over_a_gives_b(
    a: dict[str, tuple[str, object, int, tuple[int, int]]],
    b: dict[str, tuple[str, object, int, tuple[int, int]]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ta, tb, snap, plain = (Path(tmp, n) for n in ("a", "b", "snap", "plain"))
        build(ta, a)
        build(tb, b)
        snap.mkdir()
        changes = diff_trees(ta, tb)
        apply_layer(_layer(changes), snap, overlay=True)
        with overlay([snap, ta], Path(tmp, "view")) as view:
            assert _snapshot(view) == _snapshot(tb)
        subprocess.run(["cp", "-a", str(ta), str(plain)], check=True)  # keeps owners
        apply_layer(_layer(changes), plain, overlay=False)
        assert _snapshot(plain) == _snapshot(tb)


def test_busybox_rootfs_layer_is_deterministic(tmp_path: Path) -> None:
    busybox = shutil.which("busybox")
    assert busybox is not None
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in ("sh", "ls", "cat"):
        os.symlink("busybox", root / "bin" / applet)
    first = write_layer(changes_from_dir(root), io.BytesIO(), source_date_epoch=0)
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, symlinks=True)
    second = write_layer(changes_from_dir(copy), io.BytesIO(), source_date_epoch=0)
    assert first.diff_id == second.diff_id and first.entries == 5


def test_gnu_tar_archives_are_read_and_sparse_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / ("n" * 150)).write_text("long name")
    os.setxattr(src / ("n" * 150), "user.k", b"v")
    os.symlink("t" * 150, src / "link")
    posix = tmp_path / "posix.tar"
    gnu = tmp_path / "gnu.tar"
    subprocess.run(["tar", "--format=posix", "--xattrs", "-cf", str(posix), "-C", str(src), "."],
                   check=True)  # fmt: skip
    subprocess.run(["tar", "--format=gnu", "-cf", str(gnu), "-C", str(src), "."], check=True)
    for archive, xattrs in ((posix, {"user.k": b"v"}), (gnu, {})):
        with archive.open("rb") as f:
            entries = {e.name: (e, c.read()) for e, c in TarReader(f).entries()}
        entry, body = entries["./" + "n" * 150]
        assert body == b"long name" and entry.xattrs == xattrs
        assert entries["./link"][0].linkname == "t" * 150
    sparse = tmp_path / "sparse"
    sparse.mkdir()
    with (sparse / "holes").open("wb") as f:
        f.truncate(8 << 20)
        f.write(b"data")
    archive = tmp_path / "sparse.tar"
    subprocess.run(["tar", "--sparse", "--format=gnu", "-cf", str(archive), "-C", str(sparse),
                    "."], check=True)  # fmt: skip
    with archive.open("rb") as f, pytest.raises(InvalidInputError, match="sparse"):
        for _ in TarReader(f).entries():
            pass
