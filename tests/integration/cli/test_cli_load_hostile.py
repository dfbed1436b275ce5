"""`lamina load` through the CLI with hostile and odd input: from a file, from stdin (a
file or a pipe), or empty. A failure is one line and exit 1, `lamina images` does not
change, `lamina fsck` stays clean, and nothing is left in the store's scratch places."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _tar(members: Sequence[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    return info, data


def _dir(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info, None


def _symlink(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, None


def _archive(layers: list[bytes], tags: list[str]) -> bytes:
    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()  # fmt: skip
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    names = [f"{n}/layer.tar" for n in range(len(layers))]
    manifest = [{"Config": config_name, "RepoTags": tags, "Layers": names}]
    members = [_file(n, layer) for n, layer in zip(names, layers, strict=True)]
    members += [_file(config_name, config), _file("manifest.json", json.dumps(manifest).encode())]
    return _tar(members)


def _lamina(
    root: Path, *args: str, stdin: int | bytes | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "lamina", "--root", str(root), *args],
        input=stdin if isinstance(stdin, bytes) else None,
        stdin=stdin if isinstance(stdin, int) else subprocess.DEVNULL if stdin is None else None,
        capture_output=True, check=False,
    )  # fmt: skip
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


GOOD = _archive([_tar([_file("etc/hello", b"hi\n")])], ["good:1"])


def _scratch(root: Path) -> list[str]:
    found = []
    for place in ("tmp", "snapshots", "ingest"):
        if (root / place).is_dir():
            names = os.listdir(root / place)
            found += [f"{place}/{n}" for n in names if n.startswith((".tmp", "load"))]
    return found


def _assert_refused(root: Path, done: subprocess.CompletedProcess[str], images: str) -> None:
    assert done.returncode == 1, done.stderr
    first, *rest = done.stderr.strip().splitlines()  # one error line, and a hint maybe
    assert first.startswith("Error: ") and all(r.startswith("hint: ") for r in rest), done.stderr
    assert _lamina(root, "images", "--no-trunc").stdout == images
    fsck = _lamina(root, "fsck")
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert _scratch(root) == []


def test_load_reads_stdin_from_a_file_and_from_a_pipe(tmp_path: Path) -> None:
    root = tmp_path / "root"
    archive = tmp_path / "good.tar"
    archive.write_bytes(GOOD)
    with open(archive, "rb") as f:
        done = _lamina(root, "load", stdin=f.fileno())
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Loaded image: good:1\n"
    assert _lamina(root, "rmi", "good:1").returncode == 0
    done = _lamina(root, "load", stdin=GOOD)  # a pipe
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Loaded image: good:1\n"
    assert "good" in _lamina(root, "images").stdout
    assert _scratch(root) == []
    assert _lamina(root, "fsck").returncode == 0


def test_load_of_empty_stdin_is_one_clear_line(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert _lamina(root, "load", "-i", str(_write(tmp_path, GOOD))).returncode == 0
    images = _lamina(root, "images", "--no-trunc").stdout
    done = _lamina(root, "load", stdin=b"")
    _assert_refused(root, done, images)
    assert "stdin is empty" in done.stderr


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / f"{hashlib.sha256(data).hexdigest()[:12]}.tar"
    path.write_bytes(data)
    return path


HOSTILE = {
    "file written through a symlink of the layer": (
        _archive([_tar([_symlink("evil", "/tmp"), _file("evil/planted", b"x")])], ["bad:1"]),
        "a symlink of this same layer"),
    "a path given as a file and a directory": (
        _archive([_tar([_file("a", b"1"), _dir("a/")])], ["bad:1"]), "second entry"),
    "a RepoTag with a digest": (_archive([_tar([_file("a", b"1")])], ["x@sha256:" + "0" * 64]),
                                "invalid tag"),
    "truncated": (GOOD[: len(GOOD) // 2], "truncated"),
    "a manifest.json of no image": (_tar([_file("manifest.json", b"[]")]), "holds no image"),
    "an OCI index of no image": (
        _tar([_file("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
              _file("index.json", b'{"schemaVersion": 2, "manifests": []}')]),
        "holds no image"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("via", ["file", "stdin"])
def test_hostile_load_changes_nothing(tmp_path: Path, case: str, via: str) -> None:
    root = tmp_path / "root"
    assert _lamina(root, "load", "-i", str(_write(tmp_path, GOOD))).returncode == 0
    images = _lamina(root, "images", "--no-trunc").stdout
    data, message = HOSTILE[case]
    if via == "file":
        done = _lamina(root, "load", "-i", str(_write(tmp_path, data)))
    else:
        done = _lamina(root, "load", stdin=data)
    _assert_refused(root, done, images)
    assert message in done.stderr
    assert not Path("/tmp/planted").exists()


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([_file("a", b"1"), _dir("a/")], "second entry"),
        ([_symlink("evil", "/tmp"), _file("evil/planted", b"x")], "a symlink of this same layer"),
    ],
)
def test_import_of_a_tarball_that_cannot_be_kept_changes_nothing(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], message: str
) -> None:
    """`lamina import TAR` keeps the tarball as its layer: one the store could not give
    back byte for byte is refused (it was stored, and fsck then found it broken)."""
    root = tmp_path / "root"
    assert _lamina(root, "load", "-i", str(_write(tmp_path, GOOD))).returncode == 0
    images = _lamina(root, "images", "--no-trunc").stdout
    done = _lamina(root, "import", str(_write(tmp_path, _tar(members))), "imp:1")
    _assert_refused(root, done, images)
    assert message in done.stderr
    assert not Path("/tmp/planted").exists()
