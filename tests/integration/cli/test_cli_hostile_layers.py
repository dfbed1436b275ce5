"""Hostile layer tars through `lamina load` (in a docker-archive) and `lamina import`:
traversal, symlinks and hardlinks out of the layer, paths given twice, whiteouts of odd
names, absurd sizes, configs of the wrong shape. Each refused one is one `Error:` line and
exit 1, and leaves the store, `lamina images`, a sentinel beside the archive and the
archive's own directory as they were, with `lamina fsck` clean. Each kept one stays inside
the store and gives back exactly the tar it was (fsck rebuilds it)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

Member = tuple[tarfile.TarInfo, bytes | None]


def _tar(members: list[Member], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _m(name: str, kind: bytes = tarfile.REGTYPE, value: str | bytes = b"x") -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.mode = kind, 0o755 if kind == tarfile.DIRTYPE else 0o644
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = str(value)
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    if kind != tarfile.REGTYPE:
        return info, None
    return info, value if isinstance(value, bytes) else value.encode()


def _dir(name: str) -> Member:
    return _m(name, tarfile.DIRTYPE)


def _sym(name: str, target: str) -> Member:
    return _m(name, tarfile.SYMTYPE, target)


def _hard(name: str, target: str) -> Member:
    return _m(name, tarfile.LNKTYPE, target)


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _config(diff_ids: list[str], runtime: object = None) -> bytes:
    doc = {"architecture": "amd64", "os": "linux", "config": runtime or {},
           "rootfs": {"type": "layers", "diff_ids": diff_ids}}  # fmt: skip
    return json.dumps(doc).encode()


def _archive(layers: list[bytes], tag: str = "evil:1", config: bytes | None = None) -> bytes:
    config = config or _config([_sha(layer) for layer in layers])
    config_name = _sha(config)[7:] + ".json"
    names = [f"{n}/layer.tar" for n in range(len(layers))]
    manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": names}]
    members = [_m(n, value=layer) for n, layer in zip(names, layers, strict=True)]
    members += [_m(config_name, value=config), _m("manifest.json", value=json.dumps(manifest))]
    return _tar(members)


def _with_header(data: bytes, field: slice, value: bytes) -> bytes:
    """The tar with one field of its first header replaced (and the checksum made right)."""
    out = bytearray(data)
    out[field] = value
    out[148:156] = b" " * 8
    out[148:156] = b"%06o\x00 " % sum(out[:512])
    return bytes(out)


def _pax_path_override() -> bytes:
    info, data = _m("innocent", value=b"pwned")
    info.pax_headers = {"path": f"../../../../tmp/{ESCAPED}"}
    return _tar([(info, data)])


ESCAPED = "lamina-hostile-escaped"  # the name every escape attempt writes
ONE_FILE = _tar([_m("big", value=b"x")], fmt=tarfile.USTAR_FORMAT)

# A layer whose entries would reach outside the store, or which the store could not give
# back byte for byte: (members or tar bytes, the words the error must hold).
REFUSED: dict[str, tuple[bytes, str]] = {
    "dotdot": (_tar([_m(f"../{ESCAPED}")]), "'..' in a layer path"),
    "dotdot in the middle": (_tar([_m(f"a/../../{ESCAPED}")]), "'..' in a layer path"),
    "symlink to / then a file through it": (
        _tar([_sym("l", "/"), _m(f"l/{ESCAPED}")]), "a symlink of this same layer"),
    "symlink up then a file through it": (
        _tar([_sym("l", "../.."), _m(f"l/{ESCAPED}")]), "a symlink of this same layer"),
    "hardlink to ../outside": (_tar([_hard("h", "../outside")]), "'..' in a layer path"),
    "hardlink to a host path": (_tar([_hard("h", "/etc/passwd")]), "does not exist"),
    "hardlink through a symlink out": (
        _tar([_sym("s", "/etc"), _hard("h", "s/passwd")]), "a symlink of this same layer"),
    "hardlink through a symlink of the layer": (
        _tar([_m("real"), _sym("s", "."), _hard("h", "s/real")]), "a symlink of this same layer"),
    "symlink loop then a file through it": (
        _tar([_sym("a", "b"), _sym("b", "a"), _m(f"a/{ESCAPED}")]), "a symlink of this same layer"),
    "directory replaced by a symlink, written through": (
        _tar([_dir("d"), _m("d/y"), _sym("d", "/tmp"), _m(f"d/{ESCAPED}")]), "one kind per path"),
    "PAX path override to outside": (_pax_path_override(), "'..' in a layer path"),
    "a file twice with other content": (
        _tar([_m("dup", value=b"1"), _m("dup", value=b"2")]), "other content"),
    "whiteout of ..": (_tar([_m(".wh...", value=b"")]), "does not name a deletable entry"),
    "whiteout of .": (_tar([_m(".wh..", value=b"")]), "does not name a deletable entry"),
    "opaque marker under a file": (
        _tar([_m("f"), _m("f/.wh..wh..opq", value=b"")]), "not a directory"),
    "absurd octal size": (_with_header(ONE_FILE, slice(124, 136), b"77777777777\x00"),
                          "truncated"),
    "absurd base-256 size": (
        _with_header(ONE_FILE, slice(124, 136), b"\x80" + b"\x00" * 3 + b"\xff" * 8), "exceeds"),
    "truncated": (_tar([_m("f", value=b"y" * 5000)])[:3000], "truncated"),
    # chown(2) reads (uid_t) -1 as "leave the owner": the snapshot would not be the tar.
    "owner 4294967295": (
        _with_header(ONE_FILE, slice(108, 116), b"\x80\0\0\0\xff\xff\xff\xff"), "out of range"),
    # Deeper than the store's tree walks go (2000 levels crashed load with a RecursionError).
    "a path 2000 directories deep": (_tar([_m("d/" * 2000 + "f")]), "more than 512 components"),
}  # fmt: skip


def _lamina(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lamina", "--root", str(root), *args],
                          capture_output=True, text=True, check=False)  # fmt: skip


def _listing(top: Path) -> list[tuple[str, int, str]]:
    rows = []
    for path in sorted([top, *top.rglob("*")]):
        st = path.lstat()
        body = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        rows.append((str(path), st.st_mode, os.readlink(path) if path.is_symlink() else body))
    return rows


def _store_content(root: Path) -> list[str]:
    """Blobs and snapshots (names), and scratch places: what a refusal must not change."""
    found = []
    for place in ("blobs/sha256", "snapshots", "ingest", "tmp"):
        if (root / place).is_dir():
            found += [f"{place}/{n}" for n in sorted(os.listdir(root / place))]
    return found


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, list[str]]]:
    """One root for every refusal: each must leave it exactly as it was."""
    top = tmp_path_factory.mktemp("hostile-layers")
    good = top / "good.tar"
    good.write_bytes(_archive([_tar([_m("etc/hello", value=b"hi\n")])], tag="good:1"))
    root = top / "root"
    assert _lamina(root, "load", "-i", str(good)).returncode == 0
    yield root, _lamina(root, "images", "--no-trunc").stdout, _store_content(root)


@pytest.mark.parametrize("via", ["load", "import"])
@pytest.mark.parametrize("case", sorted(REFUSED))
def test_hostile_layer_is_refused_and_changes_nothing(
    store: tuple[Path, str, list[str]], tmp_path: Path, case: str, via: str
) -> None:
    root, images, content = store
    layer, message = REFUSED[case]
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "keep").write_text("untouched")
    archive = tmp_path / "in.tar"
    archive.write_bytes(_archive([layer]) if via == "load" else layer)
    before = _listing(tmp_path)
    if via == "load":
        done = _lamina(root, "load", "-i", str(archive))
    else:
        done = _lamina(root, "import", str(archive), "evil:1")
    assert done.returncode == 1, done.stdout + done.stderr
    first, *rest = done.stderr.strip().splitlines()
    assert first.startswith("Error: ") and all(r.startswith("hint: ") for r in rest)
    assert message in first
    assert _listing(tmp_path) == before  # the sentinel and the archive's own directory
    for place in (Path("/"), Path("/tmp"), tmp_path.parent, tmp_path.parent.parent):
        assert not (place / ESCAPED).exists()
    assert _lamina(root, "images", "--no-trunc").stdout == images
    assert _store_content(root) == content
    fsck = _lamina(root, "fsck")
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def _gnu_long_name_with_nul() -> bytes:
    # GNU long names end at their first NUL: what follows it is no part of the name.
    return _tar([_m("a" * 120 + "\x00/../../../tmp/lamina-nul-pwned")], fmt=tarfile.GNU_FORMAT)


# Layers lamina keeps (Docker keeps them too): everything stays inside the store.
KEPT: dict[str, bytes] = {
    "absolute names": _tar([_m("/abs/file", value=b"abs")]),
    "a symlink loop, nothing through it": _tar([_sym("a", "b"), _sym("b", "a")]),
    "a symlink to the host's /etc": _tar([_sym("etc", "/etc"), _m("other")]),
    "a device node and a fifo": _tar(
        [_m("c", tarfile.CHRTYPE), _m("b", tarfile.BLKTYPE), _m("p", tarfile.FIFOTYPE)]
    ),
    "a GNU long name with a NUL": _gnu_long_name_with_nul(),
    "a file twice, same content": _tar([_m("dup", value=b"1"), _m("./dup", value=b"1")]),
    "opaque markers at the root, twice, with content": _tar(
        [
            _m(".wh..wh..opq", value=b""),
            _dir("d"),
            _m("d/.wh..wh..opq", value=b"data"),
            _m("d/.wh..wh..opq", value=b""),
        ]
    ),
    "a whiteout that is a symlink": _tar([_sym(".wh.x", "/etc")]),
    "a whiteout beside the name it deletes": _tar([_m(".wh.x", value=b""), _m("x")]),
}


@pytest.mark.parametrize("case", sorted(KEPT))
def test_odd_layer_is_kept_inside_the_store(tmp_path: Path, case: str) -> None:
    root = tmp_path / "root"
    archive = tmp_path / "in" / "in.tar"
    archive.parent.mkdir()
    archive.write_bytes(_archive([KEPT[case]]))
    before = _listing(archive.parent)
    done = _lamina(root, "load", "-i", str(archive))
    assert done.returncode == 0, done.stderr
    done = _lamina(root, "import", str(tmp_path / "in" / "in.tar"), "imp:1")  # an archive
    assert done.returncode == 0, done.stderr
    assert _listing(archive.parent) == before
    assert not Path("/tmp/lamina-nul-pwned").exists() and not Path("/abs").exists()
    fsck = _lamina(root, "fsck")  # every layer rebuilt from its snapshot, byte for byte
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert "evil" in _lamina(root, "images").stdout


# Configs whose runtime fields have the wrong JSON type: Docker cannot decode them
# (`json: cannot unmarshal ...`); loaded, they broke `lamina image ls` later.
BAD_RUNTIME: dict[str, object] = {
    "Labels a list": {"Labels": [1]},
    "Labels of numbers": {"Labels": {"a": 1}},
    "Env a string": {"Env": "A=1"},
    "Env of numbers": {"Env": [1, None]},
    "Cmd an object": {"Cmd": {"a": 1}},
    "Entrypoint of numbers": {"Entrypoint": [1]},
    "ExposedPorts a list": {"ExposedPorts": ["80/tcp"]},
    "Volumes a string": {"Volumes": "/data"},
    "User a number": {"User": 0},
    "WorkingDir a list": {"WorkingDir": ["/"]},
}


@pytest.mark.parametrize("case", sorted(BAD_RUNTIME))
def test_config_of_the_wrong_shape_is_refused(
    store: tuple[Path, str, list[str]], tmp_path: Path, case: str
) -> None:
    root, images, content = store
    layer = _tar([_m("f")])
    archive = tmp_path / "in.tar"
    archive.write_bytes(_archive([layer], config=_config([_sha(layer)], BAD_RUNTIME[case])))
    done = _lamina(root, "load", "-i", str(archive))
    assert done.returncode == 1, done.stdout + done.stderr
    first, *rest = done.stderr.strip().splitlines()
    assert first.startswith("Error: ") and all(r.startswith("hint: ") for r in rest)
    assert next(iter(BAD_RUNTIME[case])) in first  # type: ignore[call-overload]
    assert _lamina(root, "images", "--no-trunc").stdout == images
    assert _store_content(root) == content
    assert _lamina(root, "image", "ls", "--format", "json").returncode == 0


def _oci_index_of(count: int) -> bytes:
    """An OCI layout whose index.json names one manifest ``count`` times."""
    layer = _tar([_m("f")])
    config = _config([_sha(layer)])
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _sha(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": _sha(layer), "size": len(layer)}]}).encode()  # fmt: skip
    entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": _sha(manifest), "size": len(manifest)}  # fmt: skip
    index = {"schemaVersion": 2, "manifests": [entry] * count}
    blobs = [_m(f"blobs/sha256/{_sha(b)[7:]}", value=b) for b in (layer, config, manifest)]
    return _tar([_m("oci-layout", value=b'{"imageLayoutVersion": "1.0.0"}'),
                 _m("index.json", value=json.dumps(index)), *blobs])  # fmt: skip


ARCHIVES: dict[str, tuple[bytes, str]] = {
    "a config that is not JSON": (
        _archive([_tar([_m("f")])], config=b"\xff\xfe not json"), "not valid JSON"),
    "a config nested 100000 deep": (
        _archive([_tar([_m("f")])], config=b'{"a":' * 100000 + b"1" + b"}" * 100000),
        "nested deeper"),
    "an index.json of 10000 manifests": (_oci_index_of(10000), "too many"),
    "a RepoTag that is not a name": (_archive([_tar([_m("f")])], tag="../../etc:1"), "RepoTags"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(ARCHIVES))
def test_hostile_archive_document_is_refused(
    store: tuple[Path, str, list[str]], tmp_path: Path, case: str
) -> None:
    root, images, content = store
    data, message = ARCHIVES[case]
    archive = tmp_path / "in.tar"
    archive.write_bytes(data)
    done = _lamina(root, "load", "-i", str(archive))
    assert done.returncode == 1, done.stdout + done.stderr
    first, *rest = done.stderr.strip().splitlines()
    assert first.startswith("Error: ") and all(r.startswith("hint: ") for r in rest)
    assert message in first
    assert _lamina(root, "images", "--no-trunc").stdout == images
    assert _store_content(root) == content
