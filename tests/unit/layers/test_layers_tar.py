"""Writer ↔ reader round trips, determinism and the bounded header parser."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

import lamina.layers as layers
from lamina.errors import InvalidInputError
from lamina.layers import (
    Change,
    ChangeKind,
    EntryType,
    Limits,
    TarReader,
    build_header,
    changes_from_dir,
    changes_from_overlay_upper,
    diff_trees,
    sort_changes,
    write_layer,
)


def _tree(root: Path) -> Path:
    root.mkdir()
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("root:x:0:0\n")
    (root / "bin").mkdir(mode=0o755)
    (root / "bin" / "tool").write_bytes(b"\x7fELF" + bytes(3000))
    os.chmod(root / "bin" / "tool", 0o4755)
    os.link(root / "bin" / "tool", root / "bin" / "tool-alias")
    os.symlink("/etc/passwd", root / "bin" / "abs-link")
    os.symlink("../etc", root / "bin" / "rel-link")
    os.mkfifo(root / "fifo")
    (root / "sticky").mkdir()
    os.chmod(root / "sticky", 0o1777)
    (root / "big").write_bytes(os.urandom(3 << 20))
    os.setxattr(root / "etc" / "passwd", "user.note", b"\x00binary\xff")
    deep = root / ("d" * 120) / ("e" * 120) / ("f" * 120)
    deep.mkdir(parents=True)
    (deep / "g").write_text("deep")
    (root / "naïve-ü").write_text("utf8")
    return root


def _read(data: bytes) -> dict[str, tuple[layers.TarEntry, bytes]]:
    reader = TarReader(io.BytesIO(data))
    return {e.name: (e, f.read()) for e, f in reader.entries()}


def test_public_surface_is_all() -> None:
    public = {n for n in dir(layers) if not n.startswith("_") and n != "annotations"}
    assert public - {"BinaryIO"} == set(layers.__all__)


def test_round_trip_every_entry_type(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    out = io.BytesIO()
    stats = write_layer(changes_from_dir(root), out)
    data = out.getvalue()
    entries = _read(data)
    assert stats.entries == len(entries)
    assert entries["etc/"][0].type is EntryType.DIR
    assert entries["etc/passwd"][1] == b"root:x:0:0\n"
    assert entries["etc/passwd"][0].xattrs == {"user.note": b"\x00binary\xff"}
    tool, body = entries["bin/tool"]
    assert tool.mode == 0o4755 and body == (root / "bin" / "tool").read_bytes()
    alias = entries["bin/tool-alias"][0]
    assert alias.type is EntryType.HARDLINK and alias.linkname == "bin/tool"
    assert entries["bin/abs-link"][0].linkname == "/etc/passwd"
    assert entries["bin/rel-link"][0].type is EntryType.SYMLINK
    assert entries["fifo"][0].type is EntryType.FIFO
    assert entries["sticky/"][0].mode == 0o1777
    assert entries["big"][1] == (root / "big").read_bytes()
    deep = "d" * 120 + "/" + "e" * 120 + "/" + "f" * 120 + "/g"
    assert entries[deep][1] == b"deep"
    assert entries["naïve-ü"][1] == b"utf8"
    # The stdlib reads the same bytes: an independent check of the header format.
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert tf.getmember(deep).size == 4
        assert tf.getmember("bin/tool-alias").islnk()
        assert tf.getmember("etc/passwd").pax_headers["SCHILY.xattr.user.note"]
    assert stats.diff_id == _diff_id_read_back(data)
    assert stats.size == len(data)


def _diff_id_read_back(data: bytes) -> str:
    reader = TarReader(io.BytesIO(data))
    for _ in reader.entries():
        pass
    return reader.diff_id


def test_entries_sorted_parents_first_numeric_owners(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    data = io.BytesIO()
    write_layer(changes_from_dir(root), data)
    names = [e.name.rstrip("/") for e, _ in TarReader(io.BytesIO(data.getvalue())).entries()]
    assert names == sorted(names, key=lambda n: [p.encode() for p in n.split("/")])
    with tarfile.open(fileobj=io.BytesIO(data.getvalue())) as tf:
        assert all(m.uname == "" and m.gname == "" for m in tf.getmembers())


def test_same_tree_same_diff_id_and_epoch_clamps(tmp_path: Path) -> None:
    a = _tree(tmp_path / "a")
    first = write_layer(changes_from_dir(a), io.BytesIO())
    assert write_layer(changes_from_dir(a), io.BytesIO()).diff_id == first.diff_id
    epoch = 1_000_000
    clamped = write_layer(changes_from_dir(a), io.BytesIO(), source_date_epoch=epoch)
    for p in a.rglob("*"):
        os.utime(p, (2_000_000_000, 2_000_000_000), follow_symlinks=False)
    again = write_layer(changes_from_dir(a), io.BytesIO(), source_date_epoch=epoch)
    assert again.diff_id == clamped.diff_id != first.diff_id
    out = io.BytesIO()
    write_layer(changes_from_dir(a), out, source_date_epoch=epoch)
    assert all(e.mtime == epoch for e, _ in TarReader(io.BytesIO(out.getvalue())).entries())


def test_pax_only_when_needed(tmp_path: Path) -> None:
    assert len(build_header(b"short", b"0", 0o644, 0, 0, 1, 0)) == 512
    assert len(build_header(b"a" * 100 + b"/" + b"b" * 100, b"0", 0o644, 0, 0, 1, 0)) == 512
    assert len(build_header(b"x" * 300, b"0", 0o644, 0, 0, 1, 0)) > 512
    big_uid = build_header(b"f", b"0", 0o644, 1 << 30, 0, 0, 0) + bytes(1024)
    ((entry, _),) = _read(big_uid).values()
    assert entry.uid == 1 << 30


def test_overlay_upper_user_opaque(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "d").mkdir(parents=True)
    (upper / "d" / "new").write_text("n")
    os.setxattr(upper / "d", "user.overlay.opaque", b"y")
    changes = changes_from_overlay_upper(upper)
    assert [(c.path, c.kind) for c in changes] == [
        ("d", ChangeKind.ADD),
        ("d", ChangeKind.OPAQUE),
        ("d/new", ChangeKind.ADD),
    ]
    out = io.BytesIO()
    write_layer(changes, out)
    entries = _read(out.getvalue())
    assert list(entries) == ["d/", "d/.wh..wh..opq", "d/new"]
    assert "user.overlay.opaque" not in entries["d/"][0].xattrs


def test_overlay_upper_comes_in_layer_order_without_sorting(tmp_path: Path) -> None:
    """changes_from_overlay_upper skips sort_changes: its walk must already be that order
    (names that sort differently as strings and as path components, non-ASCII, opaque)."""
    upper = tmp_path / "upper"
    for d in ("a", "a/b", "a-b", "a.b", "a/b/c", "ä", "Z", "a0", "a/b-c"):
        (upper / d).mkdir(parents=True, exist_ok=True)
    for f in ("a/x", "a-b/x", "a/b/c/y", "ab", "a/b-c/z", "ä/ö", "Z/1", "a.b/.hidden"):
        (upper / f).write_text(f)
    os.setxattr(upper / "a" / "b", "user.overlay.opaque", b"y")
    changes = changes_from_overlay_upper(upper)
    assert ("a/b", ChangeKind.OPAQUE) in [(c.path, c.kind) for c in changes]
    assert changes == sort_changes(list(reversed(changes)))


def test_diff_trees_changes(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        (root / "keep").mkdir(parents=True)
        (root / "keep" / "same").write_text("same")
        os.utime(root / "keep" / "same", ns=(10**18, 10**18))
        os.utime(root / "keep", ns=(10**18, 10**18))
    (a / "gone").mkdir()
    (a / "gone" / "child").write_text("x")
    (a / "dir2file").mkdir()
    (b / "dir2file").write_text("now a file")
    (a / "file2dir").write_text("was a file")
    (b / "file2dir").mkdir()
    (b / "file2dir" / "inner").write_text("i")
    (a / "edited").write_text("abc")
    (b / "edited").write_text("abd")
    os.utime(a / "edited", ns=(5, 5))
    os.utime(b / "edited", ns=(5, 5))  # same size and mtime: only content tells
    got = [(c.path, c.kind) for c in diff_trees(a, b)]
    assert got == [
        ("dir2file", ChangeKind.ADD),
        ("edited", ChangeKind.ADD),
        ("file2dir", ChangeKind.ADD),
        ("file2dir/inner", ChangeKind.ADD),
        ("gone", ChangeKind.DELETE),
    ]
    out = io.BytesIO()
    write_layer(diff_trees(a, b), out)
    assert "gone" not in _read(out.getvalue())
    assert ".wh.gone" in _read(out.getvalue())


def test_whiteout_change_names() -> None:
    out = io.BytesIO()
    write_layer([Change("a/b", ChangeKind.DELETE), Change("a", ChangeKind.OPAQUE)], out)
    assert list(_read(out.getvalue())) == ["a/.wh.b", "a/.wh..wh..opq"]


def _gnu_and_pax_tars() -> tuple[bytes, bytes]:
    out, out2 = io.BytesIO(), io.BytesIO()
    long = "L" * 300
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tf:
        info = tarfile.TarInfo(long)
        info.size = 3
        tf.addfile(info, io.BytesIO(b"gnu"))
        link = tarfile.TarInfo("sym")
        link.type = tarfile.SYMTYPE
        link.linkname = "T" * 200
        tf.addfile(link)
    with tarfile.open(fileobj=out2, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("p" * 200)
        info.size = 1
        info.uid = 10**9
        info.pax_headers = {"SCHILY.xattr.security.capability": "cap", "mtime": "12.75"}
        tf.addfile(info, io.BytesIO(b"p"))
    return out.getvalue(), out2.getvalue()


def test_reader_gnu_and_pax_extensions() -> None:
    gnu, pax_tar = _gnu_and_pax_tars()
    entries = _read(gnu) | _read(pax_tar)
    assert entries["L" * 300][1] == b"gnu"
    assert entries["sym"][0].linkname == "T" * 200
    pax = entries["p" * 200][0]
    assert (pax.uid, pax.mtime, pax.xattrs) == (10**9, 12, {"security.capability": b"cap"})


def test_reader_libarchive_xattr() -> None:
    body = b" LIBARCHIVE.xattr.user.a%3Db=aGVsbG8\n"
    records = b"%d" % (len(body) + 2) + body
    header = build_header(b"././@PaxHeader", b"x", 0o644, 0, 0, len(records), 0)
    data = header + records + bytes(-len(records) % 512)
    data += build_header(b"f", b"0", 0o644, 0, 0, 0, 0) + bytes(1024)
    ((entry, _),) = _read(data).values()
    assert entry.xattrs == {"user.a=b": b"hello"}


@pytest.mark.parametrize(
    ("threat", "data", "limits", "message"),
    [
        ("bad checksum", b"x" * 512 + bytes(1024), Limits(), "bad checksum"),
        ("no end marker", build_header(b"f", b"0", 0o644, 0, 0, 0, 0), Limits(), "truncated"),
        ("truncated body", build_header(b"f", b"0", 0o644, 0, 0, 999, 0) + b"ab", Limits(),
         "truncated"),
        ("sparse file", build_header(b"sp", b"S", 0o644, 0, 0, 0, 0) + bytes(1024), Limits(),
         "sparse"),
        ("absurd PAX header size", build_header(b"x", b"x", 0o644, 0, 0, 1 << 40, 0), Limits(),
         "exceeds"),
        ("huge GNU long name", build_header(b"././@LongLink", b"L", 0o644, 0, 0, 1 << 20, 0),
         Limits(), "exceeds"),
        ("absurd PAX size record",
         build_header(b"././@PaxHeader", b"x", 0o644, 0, 0, 33, 0)
         + b"33 size=999999999999999999999999\n".ljust(512, b"\0")
         + build_header(b"f", b"0", 0o644, 0, 0, 0, 0), Limits(), "size"),
        ("PAX record overrun",
         build_header(b"././@PaxHeader", b"x", 0o644, 0, 0, 12, 0)
         + b"99 path=abc\n".ljust(512, b"\0") + bytes(1024), Limits(), "overruns"),
        ("too many entries", b"".join(build_header(b"f%d" % i, b"0", 0o644, 0, 0, 0, 0)
                                      for i in range(5)) + bytes(1024),
         Limits(max_entries=4), "more than 4 entries"),
        ("too many bytes", build_header(b"f", b"0", 0o644, 0, 0, 4096, 0) + bytes(5120),
         Limits(max_total_bytes=2048), "exceeds 2048 bytes"),
    ],
)  # fmt: skip
def test_reader_rejects(threat: str, data: bytes, limits: Limits, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        for _, content in TarReader(io.BytesIO(data), limits).entries():
            content.read()


def test_entry_reader_cannot_read_past_entry() -> None:
    data = build_header(b"a", b"0", 0o644, 0, 0, 3, 0) + b"abc".ljust(512, b"\0")
    data += build_header(b"b", b"0", 0o644, 0, 0, 2, 0) + b"xy".ljust(512, b"\0") + bytes(1024)
    reader = TarReader(io.BytesIO(data))
    seen = []
    for entry, content in reader.entries():
        seen.append((entry.name, content.read(1000), content.read()))
    assert seen == [("a", b"abc", b""), ("b", b"xy", b"")]


def test_sockets_are_skipped(tmp_path: Path) -> None:
    import socket

    root = tmp_path / "r"
    root.mkdir()
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / "s"))
        assert stat.S_ISSOCK(os.lstat(root / "s").st_mode)
        assert changes_from_dir(root) == []
    finally:
        sock.close()


def test_diff_trees_takes_whole_second_mtimes_from_a_tar_as_unchanged(tmp_path: Path) -> None:
    from lamina.layers import diff_trees

    a, b = tmp_path / "a", tmp_path / "b"
    for root, ns in ((a, 1_700_000_000_000_000_000), (b, 1_700_000_000_123_456_789)):
        root.mkdir()
        (root / "f").write_text("same")
        os.utime(root / "f", ns=(ns, ns))
        os.utime(root, ns=(ns, ns))
    assert diff_trees(a, b) == []
    os.utime(b / "f", ns=(1_700_000_001_000_000_000,) * 2)
    assert [c.path for c in diff_trees(a, b)] == ["f"]


def _patched(header: bytes, start: int, field: bytes) -> bytes:
    """`header` with `field` written at `start` and its checksum made right again."""
    block = bytearray(header)
    block[start : start + len(field)] = field
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


@pytest.mark.parametrize(
    "mode_field",
    [b"0000689\0", b"-000644\0", b"0o00644\0", b"00_0644\0", b"00006\x0044"],
)
def test_reader_numeric_fields_octal_only(mode_field: bytes) -> None:
    # The fast path (digits then NUL) must refuse what the careful one refuses: an 8 or
    # 9, a sign, a radix prefix, an underscore that int() would take.
    data = _patched(build_header(b"f", b"0", 0o644, 0, 0, 0, 0), 100, mode_field)
    if mode_field == b"00006\x0044":  # digits end at the NUL, as tar readers read it
        ((entry, _),) = _read(data + bytes(1024)).values()
        assert entry.mode == 0o6
        return
    with pytest.raises(InvalidInputError, match="mode field is not octal"):
        _read(data + bytes(1024))


@pytest.mark.parametrize("field", [b"   644 \0", b"0000644 ", b"644\0\0\0\0\0"])
def test_reader_numeric_fields_padded_as_old_writers_do(field: bytes) -> None:
    data = _patched(build_header(b"f", b"0", 0o600, 0, 0, 0, 0), 100, field)
    ((entry, _),) = _read(data + bytes(1024)).values()
    assert entry.mode == 0o644


def test_reader_device_numbers_only_for_devices() -> None:
    # A regular file's devmajor/devminor mean nothing: not parsed (two fewer fields per
    # entry); a device's are read and checked.
    junk = b"zzzzzzz\0"
    file_ = _patched(build_header(b"f", b"0", 0o644, 0, 0, 0, 0), 329, junk)
    ((entry, _),) = _read(file_ + bytes(1024)).values()
    assert (entry.devmajor, entry.devminor) == (0, 0)
    dev = build_header(b"null", b"3", 0o666, 0, 0, 0, 0, devmajor=1, devminor=3)
    ((entry, _),) = _read(dev + bytes(1024)).values()
    assert (entry.type, entry.devmajor, entry.devminor) == (EntryType.CHAR, 1, 3)
    with pytest.raises(InvalidInputError, match="devmajor field is not octal"):
        _read(_patched(dev, 329, junk) + bytes(1024))


@pytest.mark.parametrize("size", [0, 4096, 3 << 20])
def test_a_tar_exactly_at_the_size_limit_passes_and_one_byte_less_fails(size: int) -> None:
    # The limit is on bytes read: a layer under it is never refused because a read of a
    # whole MiB was asked for near its end.
    padded = -(-size // 512) * 512
    data = build_header(b"f", b"0", 0o644, 0, 0, size, 0) + bytes(padded) + bytes(1024)
    got = [(e.name, len(c.read())) for e, c in TarReader(io.BytesIO(data),
           Limits(max_total_bytes=len(data))).entries()]  # fmt: skip
    assert got == [("f", size)]
    with pytest.raises(InvalidInputError, match=f"exceeds {len(data) - 1} bytes"):
        for _, content in TarReader(
            io.BytesIO(data), Limits(max_total_bytes=len(data) - 1)
        ).entries():
            content.read()
