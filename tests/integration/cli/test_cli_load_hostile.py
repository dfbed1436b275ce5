"""`lamina load` through the CLI with hostile and odd input: from a file, from stdin (a
file or a pipe), or empty. A failure is one line and exit 1, `lamina images` does not
change, `lamina fsck` stays clean, and nothing is left in the store's scratch places."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pytest
from archive_cli import GOOD
from archive_cli import assert_refused as _assert_refused
from archive_cli import docker_archive as _archive
from archive_cli import lamina as _lamina
from archive_cli import scratch_entries as _scratch
from archive_cli import tar as _tar
from archive_cli import tar_file as _file

pytestmark = pytest.mark.integration


def _dir(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info, None


def _symlink(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, None


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


def test_load_errors_name_what_was_given_not_a_copy_or_an_fd(tmp_path: Path) -> None:
    """A file, stdin redirected from a file, a pipe, gzip'd or not: the message names the file
    or stdin, never `/proc/self/fd/N` or the store's decompressed copy."""
    import gzip

    root = tmp_path / "root"
    not_image = _tar([_file("a", b"1")])
    plain, packed = tmp_path / "odd.tar", tmp_path / "odd.tar.gz"
    plain.write_bytes(not_image)
    packed.write_bytes(gzip.compress(not_image))
    junk = tmp_path / "junk.gz"
    junk.write_bytes(gzip.compress(b"junk"))
    for source, named in ((plain, "odd.tar"), (packed, "odd.tar.gz"), (junk, "junk.gz")):
        done = _lamina(root, "load", "-i", str(source))
        assert done.returncode == 1
        assert named in done.stderr, done.stderr
        with open(source, "rb") as f:
            redirected = _lamina(root, "load", stdin=f.fileno())
        piped = _lamina(root, "load", stdin=source.read_bytes())
        for done in (redirected, piped):
            assert done.returncode == 1
            assert "stdin" in done.stderr, done.stderr
        for done in (_lamina(root, "load", "-i", str(source)), redirected, piped):
            assert "/proc/self/fd" not in done.stderr and ".tmp-load" not in done.stderr
            assert "archive.tar" not in done.stderr, done.stderr
    assert "neither an OCI layout" in piped.stderr or "truncated" in piped.stderr
    assert _scratch(root) == []


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
