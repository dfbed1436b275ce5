"""Real overlayfs mounts and the copying fallback, checked against each other."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.errors import ToolError
from lamina.layers import OVERLAY_OPAQUE_XATTRS
from lamina.snapshots import (
    Mount,
    is_mountpoint,
    materialize,
    mount,
    mount_points,
    mounted,
    overlay_mount,
    unmount,
)

pytestmark = pytest.mark.integration


def whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def tree(root: Path) -> dict[str, tuple[str, str]]:
    """Every entry below `root`: relative path → (kind, content or link target)."""
    out: dict[str, tuple[str, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", oct(st.st_mode & 0o7777))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", p.read_text() + oct(st.st_mode & 0o7777))
            else:
                out[rel] = ("other", str(st.st_rdev))
    return out


@pytest.fixture
def layers(tmp_path: Path) -> list[Path]:
    """Three layers, top first: deletions, an opaque dir, a replaced symlink."""
    bottom, middle, top = (tmp_path / n for n in ("bottom", "middle", "top"))
    for d in (bottom, middle, top):
        d.mkdir()
    (bottom / "etc").mkdir()
    (bottom / "etc" / "passwd").write_text("root\n")
    (bottom / "etc" / "group").write_text("root\n")
    (bottom / "opt" / "old").mkdir(parents=True)
    (bottom / "opt" / "old" / "f").write_text("old")
    (bottom / "lib").symlink_to("usr/lib")
    (bottom / "bin").mkdir()
    (bottom / "bin" / "tool").write_text("#!/bin/sh\n")
    os.chmod(bottom / "bin" / "tool", 0o755)

    (middle / "etc").mkdir()
    whiteout(middle / "etc" / "group")
    (middle / "opt").mkdir()
    os.setxattr(middle / "opt", OVERLAY_OPAQUE_XATTRS[0], b"y")
    (middle / "opt" / "new").write_text("new")

    (top / "lib").mkdir()
    (top / "lib" / "x.so").write_text("so")
    whiteout(top / "bin")
    (top / "etc").mkdir()
    (top / "etc" / "passwd").write_text("root\nuser\n")
    return [top, middle, bottom]


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Path]:
    t = tmp_path / "merged"
    t.mkdir()
    yield t
    unmount(t)


def test_materialize_equals_the_overlay_view(
    layers: list[Path], target: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    materialize(layers, copy)
    with mounted(overlay_mount(layers), target):
        assert tree(copy) == tree(target)
    assert tree(copy) == {
        "etc": ("dir", "0o755"),
        "etc/passwd": ("file", "root\nuser\n0o644"),
        "opt": ("dir", "0o755"),
        "opt/new": ("file", "new0o644"),
        "lib": ("dir", "0o755"),
        "lib/x.so": ("file", "so0o644"),
    }


def test_read_write_overlay_records_changes_in_upper(
    layers: list[Path], target: Path, tmp_path: Path
) -> None:
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    with mounted(overlay_mount(layers, upper, work), target):
        assert is_mountpoint(target)
        (target / "etc" / "passwd").unlink()
        (target / "added").write_text("a")
    assert not is_mountpoint(target)
    assert (upper / "added").read_text() == "a"
    st = (upper / "etc" / "passwd").lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert (layers[0] / "etc" / "passwd").read_text() == "root\nuser\n"


def test_read_only_overlay_refuses_writes(layers: list[Path], target: Path) -> None:
    with mounted(overlay_mount(layers), target), pytest.raises(OSError):
        (target / "x").write_text("no")


def test_single_layer_read_only_is_a_bind(layers: list[Path], target: Path) -> None:
    with mounted(overlay_mount([layers[-1]]), target):
        assert (target / "etc" / "passwd").read_text() == "root\n"
        with pytest.raises(OSError):
            (target / "x").write_text("no")


def test_130_layers_mount(tmp_path: Path, target: Path) -> None:
    # Snapshot-like names: 64 hex digits each, so absolute paths would overflow one page.
    base = tmp_path / "snapshots"
    lowers = []
    for i in range(130):
        d = base / f"{i:064x}"
        d.mkdir(parents=True)
        (d / f"f{i}").write_text(str(i))
        lowers.append(d)
    lowers.reverse()
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    with mounted(overlay_mount(lowers, upper, work), target):
        assert sorted(os.listdir(target)) == sorted(f"f{i}" for i in range(130))
        assert (target / "f0").read_text() == "0"
        (target / "f129").write_text("changed")
    assert (upper / "f129").read_text() == "changed"
    # The short-name links lived only while mounting.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged", "snapshots", "upper", "work"]


def test_busy_mount_is_detached_lazily(layers: list[Path], target: Path) -> None:
    mount(overlay_mount(layers), target)
    held = os.open(target / "etc", os.O_RDONLY)
    try:
        subprocess.run(["true"], cwd=target / "etc", check=True)
        unmount(target)
        assert not is_mountpoint(target)
    finally:
        os.close(held)


def test_unmount_of_something_not_mounted_is_quiet(tmp_path: Path) -> None:
    unmount(tmp_path)
    unmount(tmp_path / "absent")


def test_failed_mount_is_a_tool_error(tmp_path: Path, target: Path) -> None:
    with pytest.raises(ToolError, match="merged"):
        mount(Mount("overlay", "overlay", ("lowerdir=/nonexistent:/nope",)), target)
    assert str(target) not in mount_points()


def test_materialize_keeps_hard_links_and_modes(tmp_path: Path) -> None:
    layer, copy = tmp_path / "layer", tmp_path / "copy"
    (layer / "bin").mkdir(parents=True)
    (layer / "bin" / "a").write_text("same")
    os.chown(layer / "bin" / "a", 1000, 50)
    os.chmod(layer / "bin" / "a", 0o4755)  # after chown, which clears setuid
    os.link(layer / "bin" / "a", layer / "bin" / "b")
    copy.mkdir()
    materialize([layer], copy)
    a, b = (copy / "bin" / "a").stat(), (copy / "bin" / "b").stat()
    assert a.st_ino == b.st_ino
    assert (a.st_mode & 0o7777, a.st_uid, a.st_gid) == (0o4755, 1000, 50)


def test_materialize_replaces_a_planted_symlink_instead_of_writing_through(tmp_path: Path) -> None:
    lower, upper, copy, outside = (tmp_path / n for n in ("lower", "upper", "copy", "outside"))
    for d in (lower, upper, copy, outside):
        d.mkdir()
    (lower / "etc").symlink_to(outside)
    (upper / "etc").mkdir()
    (upper / "etc" / "passwd").write_text("mine")
    materialize([upper, lower], copy)
    assert (copy / "etc").is_dir() and not (copy / "etc").is_symlink()
    assert (copy / "etc" / "passwd").read_text() == "mine"
    assert list(outside.iterdir()) == []


def test_clean_upper_keeps_an_opaque_stub_dir(tmp_path: Path) -> None:
    from lamina.snapshots import clean_upper

    (tmp_path / "cache").mkdir()
    os.setxattr(tmp_path / "cache", OVERLAY_OPAQUE_XATTRS[0], b"y")
    (tmp_path / "hosts").touch()
    assert clean_upper(tmp_path, ["/cache", "/hosts"]) == ["/hosts"]
    assert (tmp_path / "cache").is_dir()


def test_bind_type_without_bind_option_is_a_bind(layers: list[Path], target: Path) -> None:
    with mounted(Mount("bind", str(layers[0]), ("ro",)), target):
        assert (target / "etc" / "passwd").read_text() == "root\nuser\n"
        with pytest.raises(OSError):
            (target / "x").write_text("no")


def _mount_options(target: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == str(target):
                return fields[5].split(",")
    raise AssertionError(f"{target} is not mounted")


def test_mounts_made_with_the_system_call_keep_mount8s_flags(tmp_path: Path) -> None:
    # mount(2) directly, no mount(8): options mount(8) makes flags must become flags.
    lower = tmp_path / "lower"
    lower.mkdir()
    (lower / "f").write_text("x")
    view = tmp_path / "view"
    view.mkdir()
    with mounted(overlay_mount([lower]), view):  # one layer: a read-only recursive bind
        assert "ro" in _mount_options(view)
        with pytest.raises(OSError) as exc:
            (view / "new").write_text("y")
        assert exc.value.errno == errno.EROFS
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    m = overlay_mount([lower], upper, work, extra_options=("nodev",))
    with mounted(m, merged):
        assert {"rw", "nodev"} <= set(_mount_options(merged))
        (merged / "new").write_text("y")
    assert (upper / "new").read_text() == "y"
    with pytest.raises(ToolError, match=r"mount overlay on .* failed"):
        mounted_overlay = overlay_mount([tmp_path / "absent", lower], upper, work)
        with mounted(mounted_overlay, merged):
            pass
