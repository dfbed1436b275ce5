"""lamina's archives against independent tools: skopeo, umoci and buildah read what lamina
writes, and lamina reads what they write, with the same digests and diff_ids."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest

from lamina.oci import (
    Descriptor,
    History,
    ImageConfig,
    Manifest,
    host_platform,
    media_types,
    parse_reference,
)
from lamina.transport import (
    ArchiveReader,
    SaveImage,
    atomic_output,
    open_archive,
    write_docker_archive,
    write_oci_archive,
    write_oci_layout_dir,
)

pytestmark = pytest.mark.integration
BUSYBOX = Path("/bin/busybox")


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _run(*args: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd, check=False
    )
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return done.stdout


def _skopeo(*args: str | Path) -> str:
    return _run("skopeo", "--insecure-policy", *args)


def _busybox_layer() -> bytes:
    """A root filesystem: busybox and a few applets as symlinks, made with tarfile."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("bin", "etc"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        data = BUSYBOX.read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        for applet in ("sh", "ls", "cat", "echo"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    return buf.getvalue()


def _app_layer() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = b"root:x:0:0:root:/root:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class Store:
    """A BlobProvider over files: what lamina's store would hand the writers."""

    root: Path

    def put(self, data: bytes) -> str:
        digest = _sha(data)
        (self.root / digest[7:]).write_bytes(data)
        return digest

    def open_blob(self, digest: str) -> BinaryIO:
        return open(self.root / digest[7:], "rb")

    def blob_size(self, digest: str) -> int:
        return (self.root / digest[7:]).stat().st_size


@dataclass
class Images:
    store: Store
    images: list[SaveImage]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    root = tmp_path_factory.mktemp("store")
    store = Store(root)
    raw = [_busybox_layer(), _app_layer()]
    stored = [raw[0], gzip.compress(raw[1], mtime=0)]  # one plain, one gzip layer
    types = [media_types.OCI_LAYER, media_types.OCI_LAYER_GZIP]
    diff_ids = [_sha(r) for r in raw]
    arch = host_platform().architecture
    config = ImageConfig.new(architecture=arch, created="2024-01-01T00:00:00Z")
    config = config.with_container_config(Cmd=["/bin/sh"], Env=["PATH=/bin"])
    made = []
    for n, name in enumerate(["lamina-test/busybox:1", "localhost:5000/app:v2"]):
        layers = n + 1
        cfg = ImageConfig(config.to_json())
        for diff_id in diff_ids[:layers]:
            cfg = cfg.with_layer(diff_id, History(created_by=f"layer {diff_id[7:19]}"))
        config_bytes = cfg.to_bytes()
        store.put(config_bytes)
        descs = tuple(
            Descriptor(t, store.put(s), len(s))
            for t, s in zip(types[:layers], stored[:layers], strict=True)
        )
        manifest = Manifest(
            Descriptor(media_types.OCI_CONFIG, _sha(config_bytes), len(config_bytes)), descs
        )
        manifest_bytes = manifest.to_bytes()
        made.append(
            SaveImage(
                (parse_reference(name),),
                manifest_bytes,
                manifest,
                config_bytes,
                tuple(diff_ids[:layers]),
                tuple(len(r) for r in raw[:layers]),
            )
        )
    return Images(store, made)


def _read_everything(archive: ArchiveReader) -> None:
    """Stream every blob through the verified reader (DigestMismatchError if one lies)."""
    for image in archive.images():
        for desc in (image.manifest.config, *image.manifest.layers):
            with archive.open_blob(desc) as stream:
                while stream.read(1 << 20):
                    pass


# (1) lamina writes an OCI layout; skopeo and umoci read it ------------------------------


def test_skopeo_and_umoci_read_lamina_oci_layout(images: Images, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    write_oci_layout_dir(layout, images.images, images.store)
    busybox, app = images.images
    info = json.loads(_skopeo("inspect", f"oci:{layout}:1"))
    assert info["Digest"] == busybox.manifest_digest
    assert info["Layers"] == [d.digest for d in busybox.manifest.layers]
    info = json.loads(_skopeo("inspect", f"oci:{layout}:v2"))
    assert info["Digest"] == app.manifest_digest
    assert info["Env"] == ["PATH=/bin"]
    _run("umoci", "unpack", "--image", f"{layout}:v2", tmp_path / "bundle")
    rootfs = tmp_path / "bundle" / "rootfs"
    assert (rootfs / "bin" / "busybox").read_bytes() == BUSYBOX.read_bytes()
    assert os.readlink(rootfs / "bin" / "sh") == "busybox"
    assert (rootfs / "etc" / "passwd").read_bytes().startswith(b"root:x:0:0")


def test_skopeo_reads_lamina_oci_archive(images: Images, tmp_path: Path) -> None:
    path = tmp_path / "oci.tar"
    with atomic_output(path) as out:
        write_oci_archive(out, images.images, images.store)
    info = json.loads(_skopeo("inspect", f"oci-archive:{path}:v2"))
    assert info["Digest"] == images.images[1].manifest_digest


# (2) lamina writes a docker-archive; skopeo reads and converts it ----------------------


def test_skopeo_reads_and_converts_lamina_docker_archive(images: Images, tmp_path: Path) -> None:
    path = tmp_path / "docker.tar"
    with atomic_output(path) as out:
        write_docker_archive(out, images.images, images.store)
    busybox, app = images.images
    info = json.loads(_skopeo("inspect", f"docker-archive:{path}:localhost:5000/app:v2"))
    assert info["Layers"] == list(app.diff_ids)  # uncompressed: digest == diff_id
    assert info["Name"] == "localhost:5000/app"
    config = json.loads(
        _skopeo("inspect", "--config", f"docker-archive:{path}:lamina-test/busybox:1")
    )
    assert config["rootfs"]["diff_ids"] == list(busybox.diff_ids)
    out_dir = tmp_path / "converted"
    _skopeo("copy", f"docker-archive:{path}:localhost:5000/app:v2", f"oci:{out_dir}:app")
    with open_archive(out_dir) as archive:
        (image,) = archive.images()
        assert image.diff_ids == app.diff_ids
        # converting schema2 to OCI, skopeo re-encodes the config: compare what it says
        ours = ImageConfig.from_bytes(app.config_bytes)
        theirs = ImageConfig.from_bytes(image.config_bytes)
        assert theirs.container_config == ours.container_config
        assert theirs.history == ours.history
        _read_everything(archive)


# (3) skopeo writes; lamina reads -------------------------------------------------------


@pytest.mark.parametrize("dest", ["docker-archive", "oci-archive"])
def test_lamina_reads_what_skopeo_writes(images: Images, tmp_path: Path, dest: str) -> None:
    layout = tmp_path / "layout"
    write_oci_layout_dir(layout, images.images, images.store)
    app = images.images[1]
    path = tmp_path / "out.tar"
    target = (
        f"{dest}:{path}:localhost:5000/app:v2"
        if dest == "docker-archive"
        else (f"{dest}:{path}:v2")
    )
    _skopeo("copy", f"oci:{layout}:v2", target)
    with open_archive(path) as archive:
        assert archive.format == dest
        (image,) = archive.images()
        assert image.diff_ids == app.diff_ids
        assert image.config_digest == app.manifest.config.digest
        if dest == "docker-archive":
            assert [n.familiar() for n in image.names] == ["localhost:5000/app:v2"]
            assert image.synthesized
        else:
            # skopeo gzips the plain layer for an OCI destination: a new manifest, same image
            assert image.ref_name == "v2"
            assert [d.media_type for d in image.manifest.layers] == [media_types.OCI_LAYER_GZIP] * 2
        _read_everything(archive)


# (4) buildah builds and pushes; lamina reads -------------------------------------------


@pytest.fixture(scope="module")
def buildah_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[str], Path]]:
    base = tmp_path_factory.mktemp("buildah")
    flags = ["--root", str(base / "root"), "--runroot", str(base / "run"),
             "--storage-driver", "vfs"]  # fmt: skip
    (base / "ctx").mkdir()
    (base / "ctx" / "hello.txt").write_text("hello from buildah\n")
    container = _run("buildah", *flags, "from", "scratch").strip()
    _run("buildah", *flags, "copy", container, str(BUSYBOX), "/bin/busybox")
    _run("buildah", *flags, "copy", container, str(base / "ctx" / "hello.txt"), "/hello.txt")
    _run("buildah", *flags, "config", "--cmd", "/bin/busybox cat /hello.txt", container)
    _run("buildah", *flags, "commit", container, "lamina-test/hello:1")
    yield flags, base
    _run("buildah", *flags, "rm", "--all")
    _run("buildah", *flags, "rmi", "--all", "--force")


@pytest.mark.slow
@pytest.mark.parametrize("dest", ["docker-archive", "oci"])
def test_lamina_reads_what_buildah_pushes(
    buildah_image: tuple[list[str], Path], tmp_path: Path, dest: str
) -> None:
    flags, _ = buildah_image
    path = tmp_path / ("x.tar" if dest == "docker-archive" else "dir")
    _run("buildah", *flags, "push", "lamina-test/hello:1", f"{dest}:{path}")
    inspect = json.loads(
        _run("buildah", *flags, "inspect", "--type", "image", "lamina-test/hello:1")
    )
    diff_ids = inspect["OCIv1"]["rootfs"]["diff_ids"]
    with open_archive(path) as archive:
        (image,) = archive.images()
        assert list(image.diff_ids) == diff_ids
        assert image.config_digest == "sha256:" + inspect["FromImageID"]
        _read_everything(archive)
        layer = image.manifest.layers[-1]
        with archive.open_blob(layer) as stream:
            data = stream.read()
        if layer.media_type.endswith("gzip"):
            data = gzip.decompress(data)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:  # our own bytes, already verified
            names = [m.name.lstrip("./") for m in tar.getmembers()]
        assert "hello.txt" in names
