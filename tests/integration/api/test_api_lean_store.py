"""The lean store (issue 12): a layer's one copy is its snapshot plus a tar-split record.

Round trips through docker-archives and OCI layouts (gzip, zstd, plain) made by skopeo, an
independent writer, are exact: same config, same diff_ids; umoci reads what lamina saves
and sees what `lamina mount` shows; saving twice gives the same bytes. A snapshot changed
behind lamina's back is found by fsck and refused by save. Sparse files stay sparse.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard
from api_helpers import tree_listing
from busybox_rootfs import make_busybox_rootfs

from lamina.api import Lamina
from lamina.errors import DigestMismatchError, InvalidInputError
from lamina.layers import open_layer_reader, read_entries

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _run(*argv: str | Path) -> str:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{argv}: {done.stderr}"
    return done.stdout


def _app(lamina: Lamina, tmp_path: Path) -> str:
    base = make_busybox_rootfs(tmp_path / "base")
    lamina.import_image(base, "lean/base:1", message="base")
    top = tmp_path / "top"
    shutil.copytree(base, top, symlinks=True)
    (top / "srv").mkdir()
    (top / "srv" / "hello").write_text("hello\n")
    os.link(top / "srv" / "hello", top / "srv" / "hello-again")
    (top / "srv" / "zeros").write_bytes(bytes(1 << 20) + b"end")
    (top / "bin" / "touch").unlink()
    return lamina.import_image(
        top, "lean/app:1", base="lean/base:1", changes=['CMD ["/bin/cat", "/srv/hello"]']
    )


def _mounted(lamina: Lamina, ref: str, where: Path) -> dict[str, tuple[object, ...]]:
    lamina.mount(ref, where)
    try:
        listing: dict[str, tuple[object, ...]] = tree_listing(where)
        return listing
    finally:
        lamina.umount(where)


def _umoci_listing(oci_archive: Path, tmp_path: Path, tag: str) -> dict[str, tuple[object, ...]]:
    layout = tmp_path / f"layout-{oci_archive.name}"
    if "zstd" in oci_archive.name:
        # Debian's umoci reads no zstd: skopeo (another independent reader) recompresses.
        _run("skopeo", "copy", "--dest-compress", "--dest-compress-format", "gzip",
             f"oci-archive:{oci_archive}:{tag}", f"oci:{layout}:{tag}")  # fmt: skip
    else:
        layout.mkdir()
        # GNU tar (it refuses `..` and absolute names): `extractall(filter=...)` needs
        # Python 3.11.4, and Debian 12's is 3.11.2.
        _run("tar", "-x", "-f", oci_archive, "-C", layout)
    bundle = tmp_path / f"bundle-{oci_archive.name}"
    _run("umoci", "unpack", "--image", f"{layout}:{tag}", bundle)
    listing: dict[str, tuple[object, ...]] = tree_listing(bundle / "rootfs")
    return listing


def _config_and_diff_ids(oci_archive: Path) -> tuple[str, list[str]]:
    config = json.loads(_run("skopeo", "inspect", "--config", f"oci-archive:{oci_archive}"))
    raw = json.loads(_run("skopeo", "inspect", "--raw", f"oci-archive:{oci_archive}"))
    return raw["config"]["digest"], config["rootfs"]["diff_ids"]


SOURCES = {
    "docker-archive": ["docker-archive:{out}:lean/app:1", []],
    "oci-gzip": ["oci-archive:{out}:1", ["--dest-compress", "--dest-compress-format", "gzip"]],
    "oci-zstd": ["oci-archive:{out}:1", ["--dest-compress", "--dest-compress-format", "zstd"]],
    "oci-plain": ["oci-archive:{out}:1", ["--dest-decompress"]],
}


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_round_trips_are_exact(lamina: Lamina, tmp_path: Path, kind: str) -> None:
    app_id = _app(lamina, tmp_path)
    app = lamina.resolve("lean/app:1")
    plain = tmp_path / "plain"
    lamina.save(["lean/app:1"], plain, "oci-dir", compression="none")
    dest, flags = SOURCES[kind]
    source = tmp_path / f"{kind}.tar"
    _run("skopeo", "copy", *flags, f"oci:{plain}:1", str(dest).format(out=source))

    other = Lamina(tmp_path / f"root-{kind}")
    try:
        [loaded] = other.load(source)
        assert loaded.image_id == app_id  # same config bytes
        image = other.resolve(loaded.image_id)
        assert [layer.diff_id for layer in image.layers] == [layer.diff_id for layer in app.layers]
        # no compressed copy is kept: the snapshots are the layers
        assert not any(other.store.content.has(layer.digest) for layer in image.layers)
        assert other.fsck().ok, other.fsck().problems
        first, second = tmp_path / "a.tar", tmp_path / "b.tar"
        other.save([loaded.image_id], first, "oci-archive")
        other.save([loaded.image_id], second, "oci-archive")
        assert first.read_bytes() == second.read_bytes()
        config_digest, diff_ids = _config_and_diff_ids(first)
        assert config_digest == app_id
        assert diff_ids == [layer.diff_id for layer in app.layers]
        other.tag(loaded.image_id, "lean/copy:1")
        third = tmp_path / "c.tar"
        other.save(["lean/copy:1"], third, "oci-archive")
        assert _umoci_listing(third, tmp_path, "1") == _mounted(
            other, "lean/copy:1", tmp_path / "m"
        )
        docker_a, docker_b = tmp_path / "d1.tar", tmp_path / "d2.tar"
        other.save([loaded.image_id], docker_a, "docker-archive")
        other.save([loaded.image_id], docker_b, "docker-archive")
        assert docker_a.read_bytes() == docker_b.read_bytes()
        config = json.loads(_run("skopeo", "inspect", "--config", f"docker-archive:{docker_a}"))
        assert config["rootfs"]["diff_ids"] == [layer.diff_id for layer in app.layers]
    finally:
        other.store.close()


def test_kept_blobs_give_the_original_digests_back(lamina: Lamina, tmp_path: Path) -> None:
    _app(lamina, tmp_path)
    plain = tmp_path / "plain"
    lamina.save(["lean/app:1"], plain, "oci-dir", compression="none")
    source = tmp_path / "gz.tar"
    _run("skopeo", "copy", "--dest-compress", f"oci:{plain}:1", f"oci-archive:{source}:1")
    original = json.loads(_run("skopeo", "inspect", "--raw", f"oci-archive:{source}"))
    keep, lean = Lamina(tmp_path / "keep"), Lamina(tmp_path / "lean")
    try:
        [kept] = keep.load(source, keep_blobs=True)
        out = tmp_path / "kept.tar"
        assert keep.save([kept.image_id], out, "oci-archive") == []
        saved = json.loads(_run("skopeo", "inspect", "--raw", f"oci-archive:{out}"))
        assert saved == original
        [thin] = lean.load(source)
        notes = lean.save([thin.image_id], tmp_path / "lean.tar", "oci-archive")
        # Go's gzip and isal differ: without the blob the digest changes, and save says so.
        assert notes and all("digest changed" in note for note in notes)
    finally:
        keep.store.close()
        lean.store.close()


def test_built_image_round_trip(lamina: Lamina, tmp_path: Path) -> None:
    lamina.import_image(make_busybox_rootfs(tmp_path / "bb"), "busybox:latest")
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "data.txt").write_text("payload\n")
    (context / "Dockerfile").write_text(
        "FROM busybox\nCOPY data.txt /data.txt\nRUN echo ran > /ran && rm /bin/touch\n"
    )
    result = lamina.build(context, tags=["lean/built:1"])
    image = lamina.resolve("lean/built:1")
    assert image.id == result.image.id
    assert not any(lamina.store.content.has(layer.digest) for layer in image.layers)
    for compression in ("gzip", "zstd"):
        out = tmp_path / f"built-{compression}.tar"
        lamina.save(["lean/built:1"], out, "oci-archive", compression=compression)
        again = tmp_path / f"again-{compression}.tar"
        lamina.save(["lean/built:1"], again, "oci-archive", compression=compression)
        assert out.read_bytes() == again.read_bytes()
        config_digest, diff_ids = _config_and_diff_ids(out)
        assert config_digest == image.id
        assert diff_ids == [layer.diff_id for layer in image.layers]
        assert _umoci_listing(out, tmp_path, "1") == _mounted(
            lamina, "lean/built:1", tmp_path / f"m-{compression}"
        )


def _top_snapshot(lamina: Lamina, ref: str) -> Path:
    return lamina.store.snapshot_path(lamina.resolve(ref).layers[-1].diff_id)


def test_tampered_snapshot_is_found_and_refused(lamina: Lamina, tmp_path: Path) -> None:
    _app(lamina, tmp_path)
    assert lamina.fsck().ok
    victim = _top_snapshot(lamina, "lean/app:1") / "srv" / "zeros"
    data = bytearray(victim.read_bytes())
    data[12345] ^= 0x40
    victim.write_bytes(bytes(data))
    report = lamina.fsck()
    assert not report.ok
    assert any("does not match its diff_id" in p for p in report.problems)
    out = tmp_path / "out.tar"
    for fmt in ("docker-archive", "oci-archive"):
        with pytest.raises(DigestMismatchError):
            lamina.save(["lean/app:1"], out, fmt)
        assert not out.exists()
    data[12345] ^= 0x40
    victim.write_bytes(bytes(data))
    assert lamina.fsck().ok
    planted = _top_snapshot(lamina, "lean/app:1") / "srv" / "planted"
    planted.write_text("not in the layer\n")
    assert not lamina.fsck().ok
    with pytest.raises(DigestMismatchError):
        lamina.save(["lean/app:1"], out, "docker-archive")
    assert not out.exists()
    planted.unlink()
    lamina.save(["lean/app:1"], out, "docker-archive")


def test_sparse_file_costs_its_blocks_and_saves_as_zeros(lamina: Lamina, tmp_path: Path) -> None:
    size = 4 << 30
    tree = tmp_path / "tree"
    (tree / "var" / "log").mkdir(parents=True)
    with open(tree / "var" / "log" / "lastlog", "wb") as f:
        f.truncate(size)
    lamina.import_image(tree, "lean/sparse:1")
    snapshot = _top_snapshot(lamina, "lean/sparse:1")
    st = os.stat(snapshot / "var" / "log" / "lastlog")
    assert st.st_size == size
    blocks = sum(
        os.lstat(os.path.join(top, n)).st_blocks * 512
        for top, dirs, files in os.walk(snapshot)
        for n in dirs + files
    )
    assert blocks < 1 << 20
    out = tmp_path / "sparse.tar"
    lamina.save(["lean/sparse:1"], out, "oci-archive")
    layer = lamina.resolve("lean/sparse:1").layers[0]
    with tarfile.open(out) as archive:
        manifest_blobs = [m for m in archive.getmembers() if m.name.startswith("blobs/")]
        biggest = max(manifest_blobs, key=lambda m: m.size)
        stream = archive.extractfile(biggest)
        assert stream is not None
        digest = hashlib.sha256()
        tar = open_layer_reader(stream)
        seen = 0
        for entry, content in read_entries(_Hashing(tar, digest)):
            if entry.name.endswith("lastlog"):
                assert entry.size == size
                while chunk := content.read(1 << 20):
                    assert chunk.count(0) == len(chunk)
                    seen += len(chunk)
        assert seen == size
        while tar.read(1 << 20):
            pass
    assert biggest.size < 16 << 20
    assert "sha256:" + digest.hexdigest() == layer.diff_id


class _Hashing:
    def __init__(self, stream: io.RawIOBase, digest: hashlib._Hash) -> None:
        self._stream = stream
        self._digest = digest

    def read(self, n: int = -1, /) -> bytes:
        data = self._stream.read(n)
        assert data is not None
        self._digest.update(data)
        return data


def _bomb_layout(path: Path, layer_tar: bytes, compress: bool) -> None:
    blob = zstandard.ZstdCompressor(level=19).compress(layer_tar) if compress else layer_tar
    diff_id = "sha256:" + hashlib.sha256(layer_tar).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    media = "application/vnd.oci.image.layer.v1.tar" + ("+zstd" if compress else "")
    blobs = {}

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return "sha256:" + digest

    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": put(config), "size": len(config)},
        "layers": [{"mediaType": media, "digest": put(blob), "size": len(blob)}],
    }).encode()  # fmt: skip
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": put(manifest),
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": "1"},
            }
        ],
    }
    (path / "blobs" / "sha256").mkdir(parents=True)
    for digest, data in blobs.items():
        (path / "blobs" / "sha256" / digest).write_bytes(data)
    (path / "index.json").write_text(json.dumps(index))
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')


def _zeros_tar(size: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("zeros")
        info.size = size
        tar.addfile(info, io.BytesIO(bytes(size)))
    return buf.getvalue()


def _nothing_left(lamina: Lamina) -> None:
    assert lamina.images() == []
    assert os.listdir(lamina.store.snapshots_dir) == []
    assert os.listdir(lamina.store.content.ingest_dir) == []
    assert lamina.fsck().ok


def test_layer_limits_stop_bombs_and_leave_nothing(tmp_path: Path) -> None:
    layout = tmp_path / "bomb"
    bomb = _zeros_tar(160 << 20)
    _bomb_layout(layout, bomb, compress=True)
    lamina = Lamina(tmp_path / "root")
    with pytest.raises(InvalidInputError) as caught:
        lamina.load(layout)
    assert "layer 0 (sha256:" in caught.value.message
    assert "ratio limit" in caught.value.message
    assert "--max-layer-ratio" in (caught.value.hint or "")
    _nothing_left(lamina)
    lamina.store.close()
    sized = Lamina(tmp_path / "root", max_layer_bytes=100 << 20, max_layer_ratio=1e9)
    with pytest.raises(InvalidInputError) as caught:
        sized.load(layout)
    assert "layer size limit" in caught.value.message
    assert "LAMINA_MAX_LAYER_SIZE" in (caught.value.hint or "")
    _nothing_left(sized)
    sized.store.close()
    raised = Lamina(tmp_path / "root", max_layer_ratio=1e9)
    [loaded] = raised.load(layout)
    assert raised.resolve(loaded.image_id).layers[0].uncompressed_size == len(bomb)
    raised.store.close()


def test_layer_size_limit_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = tmp_path / "plain"
    _bomb_layout(layout, _zeros_tar(2 << 20), compress=False)
    monkeypatch.setenv("LAMINA_MAX_LAYER_SIZE", "1M")
    lamina = Lamina(tmp_path / "root")
    with pytest.raises(InvalidInputError) as caught:
        lamina.load(layout)
    assert "layer 0" in caught.value.message and "1048576" in caught.value.message
    _nothing_left(lamina)


def _retarget(link: Path, target: str) -> None:
    link.unlink()
    link.symlink_to(target)


@pytest.mark.parametrize(
    ("image", "tamper", "undo", "said"),
    [
        ("lean/app:1", lambda p: os.chmod(p / "srv" / "zeros", 0o4777),
         lambda p: os.chmod(p / "srv" / "zeros", 0o644), "srv/zeros (mode"),
        ("lean/app:1", lambda p: os.chown(p / "srv" / "zeros", 1234, 0),
         lambda p: os.chown(p / "srv" / "zeros", 0, 0), "srv/zeros (owner"),
        ("lean/base:1",
         lambda p: _retarget(p / "bin" / "sh", "/bin/false"),
         None, "bin/sh (symlink target"),
        ("lean/app:1", lambda p: os.chmod(p / "srv", 0o777),
         lambda p: os.chmod(p / "srv", 0o755), "srv (mode"),
    ],
)  # fmt: skip
def test_fsck_finds_metadata_changed_behind_laminas_back(
    lamina: Lamina,
    tmp_path: Path,
    image: str,
    tamper: Callable[[Path], object],
    undo: Callable[[Path], object] | None,
    said: str,
) -> None:
    # The rebuilt tar takes its headers from the record, so only a comparison with the
    # snapshot's own metadata finds a chmod, chown or a retargeted symlink, which
    # a container (mount, run) would be served.
    _app(lamina, tmp_path)
    assert lamina.fsck().ok
    snapshot = _top_snapshot(lamina, image)
    tamper(snapshot)
    report = lamina.fsck()
    assert not report.ok
    assert any(said in p and "changed behind lamina's back" in p for p in report.problems), (
        report.problems
    )
    if undo is not None:
        undo(snapshot)
        assert lamina.fsck().ok, lamina.fsck().problems


@pytest.mark.parametrize(
    ("value", "kept"),
    [("1", True), ("True", True), ("ON", True), ("0", False), ("false", False), ("", False)],
)
def test_keep_blobs_from_the_environment_reads_booleans_as_docker_does(
    lamina: Lamina, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, kept: bool
) -> None:
    lamina.import_image(make_busybox_rootfs(tmp_path / "bb"), "kb:1")
    layout = tmp_path / "gz"
    lamina.save(["kb:1"], layout, "oci-dir")
    monkeypatch.setenv("LAMINA_KEEP_BLOBS", value)
    other = Lamina(tmp_path / "other")
    try:
        [loaded] = other.load(layout)
        (layer,) = other.resolve(loaded.image_id).layers
        assert other.store.content.has(layer.digest) is kept
    finally:
        other.store.close()


def test_keep_blobs_that_is_no_boolean_is_an_error(
    lamina: Lamina, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not silently "no": a typo would drop every original blob.
    lamina.import_image(make_busybox_rootfs(tmp_path / "bb"), "kb:1")
    layout = tmp_path / "gz"
    lamina.save(["kb:1"], layout, "oci-dir")
    monkeypatch.setenv("LAMINA_KEEP_BLOBS", "keep")
    other = Lamina(tmp_path / "other")
    try:
        with pytest.raises(InvalidInputError, match="LAMINA_KEEP_BLOBS='keep' is not a boolean"):
            other.load(layout)
        assert other.images() == []
    finally:
        other.store.close()


def test_fsck_takes_the_last_header_of_a_path_and_any_of_a_hardlinks(
    lamina: Lamina, tmp_path: Path
) -> None:
    # A tar may name a path twice (the last applies) and give a hardlink other metadata
    # than its file (one inode): neither is a snapshot changed behind lamina's back.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for mode in (0o600, 0o755):
            info = tarfile.TarInfo("twice")
            info.size, info.mode = 3, mode
            tar.addfile(info, io.BytesIO(b"abc"))
        info = tarfile.TarInfo("file")
        info.size, info.mode, info.uid = 2, 0o644, 7
        tar.addfile(info, io.BytesIO(b"hi"))
        link = tarfile.TarInfo("link")
        link.type, link.linkname, link.mode, link.uid = tarfile.LNKTYPE, "file", 0o700, 9
        tar.addfile(link)
    layout = tmp_path / "odd"
    _bomb_layout(layout, buf.getvalue(), compress=False)
    lamina.load(layout)
    assert lamina.fsck().ok, lamina.fsck().problems


def _load_tar(lamina: Lamina, tmp_path: Path, entries: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    """Load a one-layer image whose tar holds ``entries``; its snapshot."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, body in entries:
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body) if body else None)
    layout = tmp_path / "layout"
    _bomb_layout(layout, buf.getvalue(), compress=False)
    [loaded] = lamina.load(layout)
    return lamina.store.snapshot_path(lamina.resolve(loaded.image_id).layers[-1].diff_id)


def _info(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o755, link: str = "") -> (
    tarfile.TarInfo
):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, link
    return info


def _python_layer() -> list[tuple[tarfile.TarInfo, bytes]]:
    return [
        (_info("usr", tarfile.DIRTYPE), b""),
        (_info("usr/bin", tarfile.DIRTYPE), b""),
        (_info("usr/bin/python3.11"), b"\x7fELF the real one\n"),
        (_info("usr/bin/python3", tarfile.LNKTYPE, link="usr/bin/python3.11"), b""),
        (_info("usr/bin/other"), b"\x7fELF another one!\n"),
    ]


def _drift(lamina: Lamina) -> list[str]:
    return [p for p in lamina.fsck().problems if "changed behind lamina's back" in p]


@pytest.mark.parametrize("how", ["copy", "link"])
def test_fsck_finds_a_hardlink_swapped_for_another_file(
    lamina: Lamina, tmp_path: Path, how: str
) -> None:
    # A hardlink's body is never read by the rebuild (it is a header in the record): a
    # replaced usr/bin/python3 of the same mode and owner would be served by `run`
    # while `save` sends python3.11's bytes. Its inode must be its target's.
    snapshot = _load_tar(lamina, tmp_path, _python_layer())
    assert lamina.fsck().ok, lamina.fsck().problems
    python3 = snapshot / "usr" / "bin" / "python3"
    python3.unlink()
    if how == "copy":
        shutil.copy2(snapshot / "usr" / "bin" / "other", python3)
    else:
        os.link(snapshot / "usr" / "bin" / "other", python3)
    drift = _drift(lamina)
    assert any("usr/bin/python3 (" in p for p in drift), lamina.fsck().problems
    python3.unlink()
    os.link(snapshot / "usr" / "bin" / "python3.11", python3)
    assert lamina.fsck().ok, lamina.fsck().problems


@pytest.mark.parametrize(
    ("tamper", "said"),
    [(lambda p: os.chmod(p, 0o4777), "srv/zeros (mode"),
     (lambda p: os.chown(p, 1234, 0), "srv/zeros (owner")],
)  # fmt: skip
def test_fsck_finds_metadata_changed_on_a_file_linked_from_outside(
    lamina: Lamina, tmp_path: Path, tamper: Callable[[Path], object], said: str
) -> None:
    # A link count above one is no licence: whoever tampers can make one with `ln`.
    _app(lamina, tmp_path)
    zeros = _top_snapshot(lamina, "lean/app:1") / "srv" / "zeros"
    os.link(zeros, tmp_path / "x")
    assert lamina.fsck().ok, lamina.fsck().problems
    tamper(zeros)
    assert any(said in p for p in _drift(lamina)), lamina.fsck().problems


def _odd_links_layer() -> list[tuple[tarfile.TarInfo, bytes]]:
    null = _info("dev/null", tarfile.CHRTYPE, mode=0o666)
    null.devmajor, null.devminor = 1, 3
    return [
        (_info("dev", tarfile.DIRTYPE), b""),
        (null, b""),
        (_info("dev/null2", tarfile.LNKTYPE, link="dev/null"), b""),
        (_info("fifo", tarfile.FIFOTYPE, mode=0o600), b""),
        (_info("fifo2", tarfile.LNKTYPE, link="fifo"), b""),
        (_info("sh", tarfile.SYMTYPE, mode=0o777, link="busybox"), b""),
        (_info("sh2", tarfile.LNKTYPE, link="sh"), b""),
        (_info("sh3", tarfile.LNKTYPE, link="sh2"), b""),  # a link of a link
    ]


def test_fsck_accepts_hardlinked_symlinks_and_devices_and_finds_them_swapped(
    lamina: Lamina, tmp_path: Path
) -> None:
    # The applier links any non-directory, and moby's archive writer hardlinks symlinks
    # and device nodes: a genuine layer, no drift. A hardlink is checked against its
    # target's inode, so a swapped one is still found.
    snapshot = _load_tar(lamina, tmp_path, _odd_links_layer())
    assert lamina.fsck().ok, lamina.fsck().problems
    (snapshot / "sh3").unlink()
    (snapshot / "sh3").symlink_to("busybox")
    assert any("sh3 (" in p for p in _drift(lamina)), lamina.fsck().problems


def _setcap(path: Path) -> None:
    _run("setcap", "cap_net_raw+ep", path)


def _mknod(path: Path, major: int, minor: int) -> None:
    path.unlink()
    os.mknod(path, 0o20666, os.makedev(major, minor))
    os.chmod(path, 0o666)


@pytest.mark.parametrize(
    ("tamper", "said"),
    [(lambda p: _mknod(p / "dev" / "null", 8, 0), "dev/null (device 8,0, not 1,3"),
     (lambda p: os.lchown(p / "sh", 1234, 0), "sh (owner 1234:0, not 0:0"),
     (lambda p: _setcap(p / "bin"), "bin (xattr security.capability added"),
     (lambda p: os.setxattr(p / "bin", "user.kept", b"2"), "bin (xattr user.kept changed"),
     (lambda p: os.setxattr(p / "dev", "user.new", b"1"), "dev (xattr user.new added")],
)  # fmt: skip
def test_fsck_finds_a_device_a_symlinks_owner_and_xattrs_changed(
    lamina: Lamina, tmp_path: Path, tamper: Callable[[Path], object], said: str
) -> None:
    # Device numbers, a symlink's own owner (lchown) and xattrs (setcap gives a binary
    # privileges without a chmod) are served by a container as the snapshot has them.
    entries = _odd_links_layer()
    binary = _info("bin")
    binary.pax_headers = {"SCHILY.xattr.user.kept": "1"}
    entries.append((binary, b"\x7fELF\n"))
    snapshot = _load_tar(lamina, tmp_path, entries)
    assert os.getxattr(snapshot / "bin", "user.kept") == b"1"
    assert lamina.fsck().ok, lamina.fsck().problems
    tamper(snapshot)
    assert any(said in p for p in _drift(lamina)), lamina.fsck().problems
