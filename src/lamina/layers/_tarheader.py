"""The one tar header encoder: layers and the archives `save` writes both use it.

Headers are built here rather than through ``tarfile.TarInfo``: ustar whenever the
entry fits (as Go's archive/tar does, so layers match what Docker writes), PAX only
for long or non-ASCII names, big numbers and xattrs; numeric owners only, no
uname/gname, no atime/ctime.
"""

from __future__ import annotations

BLOCK = 512
_MAX_OCTAL = {8: 0o7777777, 12: 0o77777777777}
_PAX_NAME = b"././@PaxHeader"


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _split_ustar(name: bytes) -> tuple[bytes, bytes] | None:
    if len(name) <= 100:
        return b"", name
    cut = name.find(b"/", max(0, len(name) - 101))
    if 0 < cut <= 155 and len(name) - cut - 1 <= 100:
        return name[:cut], name[cut + 1 :]
    return None


def _pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def _ustar(
    name: bytes,
    prefix: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    typeflag: bytes,
    linkname: bytes = b"",
    devmajor: int = 0,
    devminor: int = 0,
) -> bytes:
    header = b"".join(
        (
            name.ljust(100, b"\0"),
            _octal(mode, 8),
            _octal(uid, 8),
            _octal(gid, 8),
            _octal(size, 12),
            _octal(mtime, 12),
            b"        ",
            typeflag,
            linkname.ljust(100, b"\0"),
            b"ustar\x0000",
            bytes(64),  # uname, gname: numeric owners only
            _octal(devmajor, 8),
            _octal(devminor, 8),
            prefix.ljust(155, b"\0"),
            bytes(12),
        )
    )
    checksum = b"%06o\0 " % sum(header)
    return header[:148] + checksum + header[156:]


def build_header(
    path: bytes,
    typeflag: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    linkname: bytes = b"",
    devmajor: int = 0,
    devminor: int = 0,
    xattrs: dict[str, bytes] | None = None,
) -> bytes:
    """One entry's header blocks: a PAX extension first only when ustar cannot hold it."""
    pax: list[tuple[bytes, bytes]] = []
    split = _split_ustar(path) if path.isascii() else None
    if split is None:
        pax.append((b"path", path))
        split = (b"", path[:100])
    if len(linkname) > 100 or not linkname.isascii():
        pax.append((b"linkpath", linkname))
        linkname = linkname[:100]
    for key, value, width in ((b"uid", uid, 8), (b"gid", gid, 8), (b"size", size, 12)):
        if value > _MAX_OCTAL[width]:
            pax.append((key, b"%d" % value))
    uid, gid = min(uid, _MAX_OCTAL[8]), min(gid, _MAX_OCTAL[8])
    if mtime < 0 or mtime > _MAX_OCTAL[12]:
        pax.append((b"mtime", b"%d" % mtime))
        mtime = min(max(mtime, 0), _MAX_OCTAL[12])
    for xname, xvalue in sorted((xattrs or {}).items()):
        pax.append((b"SCHILY.xattr." + xname.encode("utf-8", "surrogateescape"), xvalue))
    main = _ustar(
        split[1], split[0], mode, uid, gid, min(size, _MAX_OCTAL[12]), mtime,
        typeflag, linkname, devmajor, devminor,
    )  # fmt: skip
    if not pax:
        return main
    records = b"".join(_pax_record(k, v) for k, v in sorted(pax))
    ext = _ustar(_PAX_NAME, b"", 0o644, 0, 0, len(records), 0, b"x")
    return ext + records + bytes(-len(records) % BLOCK) + main


def padding(size: int) -> bytes:
    """The zero bytes that end an entry of `size` bytes on a block boundary."""
    return bytes(-size % BLOCK)
