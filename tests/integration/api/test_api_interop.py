"""What lamina writes, independent tools read; what they write, lamina reads.

umoci and skopeo read lamina's OCI layouts and docker-archives; buildah's images load
into lamina; in each case the unpacked trees must be equal, entry by entry.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from api_helpers import tree_listing
from busybox_rootfs import make_busybox_rootfs

from lamina.api import Lamina

pytestmark = pytest.mark.integration


def _run(*argv: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, cwd=cwd, check=False
    )
    assert done.returncode == 0, f"{argv}: {done.stderr}"
    return done.stdout


def _two_layer_image(lamina: Lamina, tmp_path: Path) -> str:
    base = make_busybox_rootfs(tmp_path / "base")
    # Nanoseconds a tar cannot keep: an unchanged file must still count as unchanged.
    os.utime(base / "bin" / "busybox", ns=(1_700_000_000_123_456_789,) * 2)
    lamina.import_image(base, "test/base:1", message="base")
    top = tmp_path / "top"
    shutil.copytree(base, top, symlinks=True)
    (top / "srv").mkdir()
    (top / "srv" / "hello").write_text("hello\n")
    (top / "bin" / "touch").unlink()
    os.chmod(top / "etc" / "passwd", 0o600)
    return lamina.import_image(
        top, "test/app:1", base="test/base:1", changes=['CMD ["/bin/cat", "/srv/hello"]']
    )


def _mounted_listing(lamina: Lamina, ref: str, where: Path) -> dict[str, tuple[object, ...]]:
    lamina.mount(ref, where)
    try:
        listing: dict[str, tuple[object, ...]] = tree_listing(where)
        return listing
    finally:
        lamina.umount(where)


def test_stacked_layer_holds_only_the_difference(lamina: Lamina, tmp_path: Path) -> None:
    _two_layer_image(lamina, tmp_path)
    base, app = lamina.resolve("test/base:1"), lamina.resolve("test/app:1")
    assert app.layers[0] == base.layers[0]
    # busybox is ~2 MB; the second layer only has a few small files and a whiteout.
    assert (app.layers[1].uncompressed_size or 0) < 20_000
    listing = _mounted_listing(lamina, "test/app:1", tmp_path / "mnt")
    assert "bin/touch" not in listing
    assert listing["etc/passwd"][1] == 0o600
    assert "srv/hello" in listing


def test_umoci_and_skopeo_read_lamina_oci_layout(lamina: Lamina, tmp_path: Path) -> None:
    _two_layer_image(lamina, tmp_path)
    layout = tmp_path / "layout"
    lamina.save(["test/app:1"], layout, "oci-dir")
    inspected = json.loads(_run("skopeo", "inspect", f"oci:{layout}:1"))
    app = lamina.resolve("test/app:1")
    assert inspected["Digest"] == app.digest
    assert inspected["Layers"] == [layer.digest for layer in app.layers]
    bundle = tmp_path / "bundle"
    _run("umoci", "unpack", "--image", f"{layout}:1", bundle)
    assert tree_listing(bundle / "rootfs") == _mounted_listing(
        lamina, "test/app:1", tmp_path / "mnt"
    )


def test_skopeo_reads_lamina_docker_archive(lamina: Lamina, tmp_path: Path) -> None:
    _two_layer_image(lamina, tmp_path)
    archive = tmp_path / "app.tar"
    lamina.save(["test/app:1", "test/base:1"], archive, "docker-archive")
    app = lamina.resolve("test/app:1")
    inspected = json.loads(_run("skopeo", "inspect", f"docker-archive:{archive}:test/app:1"))
    assert inspected["Layers"] == [layer.diff_id for layer in app.layers]
    config = json.loads(
        _run("skopeo", "inspect", "--config", f"docker-archive:{archive}:test/app:1")
    )
    assert config["config"]["Cmd"] == ["/bin/cat", "/srv/hello"]
    assert config["rootfs"]["diff_ids"] == [layer.diff_id for layer in app.layers]
    # skopeo converts it to an OCI layout, umoci unpacks that: the same tree as ours.
    _run("skopeo", "copy", f"docker-archive:{archive}:test/app:1", f"oci:{tmp_path / 'conv'}:app")
    _run("umoci", "unpack", "--image", f"{tmp_path / 'conv'}:app", tmp_path / "bundle")
    assert tree_listing(tmp_path / "bundle" / "rootfs") == _mounted_listing(
        lamina, "test/app:1", tmp_path / "mnt"
    )


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive", "oci-dir"])
def test_save_then_load_into_an_empty_store_gives_the_same_image(
    lamina: Lamina, tmp_path: Path, fmt: str
) -> None:
    image_id = _two_layer_image(lamina, tmp_path)
    out = tmp_path / f"saved-{fmt}"
    lamina.save(["test/app:1"], out, fmt)
    other = Lamina(tmp_path / "other-root")
    loaded = other.load(out)
    assert [r.image_id for r in loaded] == [image_id]
    assert loaded[0].names == ("test/app:1",)
    assert other.history("test/app:1") == lamina.history("test/app:1")
    assert _mounted_listing(other, "test/app:1", tmp_path / "m1") == _mounted_listing(
        lamina, "test/app:1", tmp_path / "m2"
    )
    # Loading again writes nothing new.
    again = other.load(out)
    assert again[0].layers_written == 0
    assert other.fsck().ok


def _buildah(storage: Path, *argv: str | Path) -> str:
    return _run(
        "buildah",
        "--root",
        storage / "root",
        "--runroot",
        storage / "run",
        "--storage-driver",
        "vfs",
        *argv,
    )


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["docker-archive", "oci"])
def test_lamina_loads_what_buildah_pushes(lamina: Lamina, tmp_path: Path, transport: str) -> None:
    storage = tmp_path / "buildah"
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "note").write_text("from buildah\n")
    container = _buildah(storage, "from", "scratch").strip()
    _buildah(storage, "copy", container, rootfs, "/")
    _buildah(storage, "config", "--cmd", "/bin/sh", container)
    _buildah(storage, "commit", container, "localhost/first:1")
    second = _buildah(storage, "from", "localhost/first:1").strip()
    _buildah(storage, "copy", second, extra / "note", "/srv/note")
    _buildah(storage, "commit", second, "localhost/second:1")
    target = tmp_path / ("second.tar" if transport == "docker-archive" else "second-oci")
    dest = (
        f"{transport}:{target}:localhost/second:1"
        if transport == "docker-archive"
        else (f"oci:{target}:second")
    )
    _buildah(storage, "push", "localhost/second:1", dest)
    loaded = lamina.load(target)
    assert len(loaded) == 1
    ref = loaded[0].image_id
    assert len(lamina.resolve(ref).layers) == 2
    # buildah's own view of the image's tree, mounted by buildah itself.
    check = _buildah(storage, "from", "localhost/second:1").strip()
    theirs = Path(_buildah(storage, "mount", check).strip())
    try:
        assert _mounted_listing(lamina, ref, tmp_path / "mnt") == tree_listing(theirs)
    finally:
        _buildah(storage, "umount", check)
        _buildah(storage, "rm", "--all")


@pytest.mark.slow
def test_deep_image_mounts_without_writing_beside_the_target(
    lamina: Lamina, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    previous = None
    for n in range(130):
        (tree / f"f{n}").write_text(str(n))
        previous = lamina.import_image(tree, f"deep/img:{n}", base=previous)
    assert len(lamina.resolve("deep/img:129").layers) == 130
    where = tmp_path / "outside" / "mnt"
    where.mkdir(parents=True)
    # Immutable: even root cannot create an entry beside the mount point.
    _run("chattr", "+i", where.parent)
    try:
        lamina.mount("deep/img:129", where)
        try:
            assert (where / "f0").read_text() == "0"
            assert (where / "f129").read_text() == "129"
        finally:
            lamina.umount(where)
    finally:
        _run("chattr", "-i", where.parent)
    assert os.listdir(where.parent) == ["mnt"]


def test_loading_a_docker_archive_reuses_the_layers_the_store_has(
    lamina: Lamina, tmp_path: Path
) -> None:
    image_id = _two_layer_image(lamina, tmp_path)
    manifest_digest = lamina.resolve("test/app:1").digest
    archive = tmp_path / "app.tar"
    lamina.save(["test/app:1"], archive, "docker-archive")
    lamina.rmi(["test/app:1"])
    blobs = tmp_path / "root" / "blobs" / "sha256"
    before = set(os.listdir(blobs))
    loaded = lamina.load(archive)
    assert loaded[0].image_id == image_id
    assert loaded[0].layers_written == 0
    # The archive's uncompressed copies are not stored beside the gzip ones, and the
    # manifest written over the stored layers is the very one the image had.
    assert set(os.listdir(blobs)) == before
    assert loaded[0].digest == manifest_digest
    usage = {u.image.id: u for u in lamina.df().images}
    assert usage[image_id].shared_size > 0
    assert lamina.fsck().ok


def test_save_to_a_file_object_writes_the_same_bytes_as_to_a_path(
    lamina: Lamina, tmp_path: Path
) -> None:
    # The api writes to the binary file object it is given (the CLI passes stdout) and
    # never to sys.stdout itself.
    import io

    _two_layer_image(lamina, tmp_path)
    buffer = io.BytesIO()
    lamina.save(["test/app:1"], buffer, "docker-archive")
    lamina.save(["test/app:1"], tmp_path / "app.tar", "docker-archive")
    assert buffer.getvalue() == (tmp_path / "app.tar").read_bytes()
    assert len(buffer.getvalue()) > 10_000
