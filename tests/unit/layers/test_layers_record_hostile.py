"""A layer unpacked into a snapshot with its tar-split record must be rebuildable from
that snapshot byte for byte (save, push and fsck read it back so). A tar whose entries
cannot all be kept side by side (a path given as two kinds of entry, a file written
through a symlink of the same layer) is refused, naming the entry, instead of leaving a
snapshot whose tar no longer matches its diff_id; every tar that can be kept still
rebuilds exactly."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest
from layer_snapshots import unpack_with_record

from lamina.errors import InvalidInputError
from lamina.layers import RebuiltTar, snapshot_extras

_TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
          "hardlink": tarfile.LNKTYPE}  # fmt: skip


def _tar(*members: tuple[str, str, str]) -> bytes:
    """Members as (name, kind, content or link target)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, value in members:
            info = tarfile.TarInfo(name)
            info.type, info.mtime = _TYPES[kind], 1_600_000_000
            info.mode = 0o755 if kind == "dir" else 0o644
            data = value.encode() if kind == "file" else b""
            info.linkname = value if kind in ("symlink", "hardlink") else ""
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


REFUSED = {
    "file then directory": ([("a", "file", "1"), ("a/", "dir", ""), ("a/b", "file", "2")], "a/"),
    "directory then file": ([("a/", "dir", ""), ("a/b", "file", "2"), ("a", "file", "1")], "a"),
    "file then symlink": ([("a", "file", "1"), ("a", "symlink", "b")], "a"),
    "symlink then a file through it": (
        [("evil", "symlink", "/tmp"), ("evil/escaped", "file", "x")], "evil/escaped"),
    "relative symlink then a file through it": (
        [("d/", "dir", ""), ("s", "symlink", "d"), ("s/f", "file", "x")], "s/f"),
    "symlink then a directory through it": (
        [("s", "symlink", "../../.."), ("s/tmp/", "dir", "")], "s/tmp/"),
    "file under a file": ([("a", "file", "1"), ("a/b", "file", "2")], "a/b"),
    # The snapshot keeps one body per path: the first entry's could not be read back.
    "the same file twice with other content": (
        [("a", "file", "first"), ("a", "file", "other")], "a"),
    "the same file twice, another size": ([("a", "file", "1"), ("./a", "file", "22")], "./a"),
    "the same file twice, a hardlink between": (
        [("a", "file", "1"), ("h", "hardlink", "a"), ("a", "file", "2")], "a"),
    # The link is made, but its target's tar name is not a path of the layer.
    "hardlink through a symlink of the layer": (
        [("real", "file", "r"), ("s", "symlink", "."), ("h", "hardlink", "s/real")], "h"),
    "hardlink through a symlinked directory": (
        [("d/", "dir", ""), ("d/f", "file", "r"), ("s", "symlink", "d"),
         ("h", "hardlink", "s/f")], "h"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_unrebuildable_layer_refused(tmp_path: Path, case: str) -> None:
    members, entry = REFUSED[case]
    with pytest.raises(InvalidInputError) as info:
        unpack_with_record(_tar(*members), tmp_path / "snap", tmp_path / "record")
    assert repr(entry) in str(info.value)


KEPT = {
    "the same file twice": [("a", "file", "abc"), ("./a", "file", "abc")],
    "directory twice": [("d/", "dir", ""), ("d/f", "file", "1"), ("d/", "dir", "")],
    "root directory entries": [("./", "dir", ""), ("/", "dir", ""), ("f", "file", "1")],
    "symlink to a directory, nothing through it": [("d/", "dir", ""), ("s", "symlink", "d")],
    "whiteout beside a file": [("a", "file", "1"), (".wh.b", "file", "")],
    "hardlinks": [("a", "file", "1"), ("h", "hardlink", "a"), ("i", "hardlink", "h")],
    "the same file twice, a hardlink between": [
        ("a", "file", "1"), ("h", "hardlink", "a"), ("a", "file", "1")],
    "hardlink to a symlink": [("s", "symlink", "/etc"), ("h", "hardlink", "s")],
}


@pytest.mark.parametrize("case", sorted(KEPT))
def test_layer_that_can_be_kept_rebuilds_exactly(tmp_path: Path, case: str) -> None:
    data = _tar(*KEPT[case])
    diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
    snap, record = tmp_path / "snap", tmp_path / "record"
    assert unpack_with_record(data, snap, record) == diff_id
    with RebuiltTar(snap, record, diff_id, len(data)) as tar:
        assert tar.read() == data
    assert snapshot_extras(snap, record) == []
