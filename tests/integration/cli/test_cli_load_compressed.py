"""`lamina load` of a compressed archive: gzip, zstd, bzip2 and xz, from a file or down a
pipe, as `docker load` takes them (the docs: "even if compressed with gzip, bzip2, xz or
zstd"); a corrupt or truncated one, or one that decompresses beyond the limits, is one
error line and leaves the store as it was."""

from __future__ import annotations

import bz2
import gzip
import lzma
from collections.abc import Callable
from pathlib import Path

import pytest
from archive_cli import (
    GOOD,
    assert_refused,
    docker_archive,
    lamina,
    scratch_entries,
    tar,
    tar_file,
    zstd,
)

pytestmark = pytest.mark.integration


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress, "zstd": zstd, "bzip2": bz2.compress, "xz": lzma.compress,
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_a_compressed_archive_loads_from_a_file_and_from_a_pipe(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "root"
    packed = COMPRESSORS[kind](GOOD)
    archive = tmp_path / f"good.tar.{kind}"
    archive.write_bytes(packed)
    done = lamina(root, "load", "-i", str(archive))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Loaded image: good:1\n"
    listed = lamina(root, "images", "--no-trunc").stdout
    assert lamina(root, "rmi", "good:1").returncode == 0
    done = lamina(root, "load", stdin=packed)  # a pipe
    assert done.returncode == 0, done.stderr
    assert lamina(root, "images", "--no-trunc").stdout == listed  # the same image again
    with open(archive, "rb") as f:  # stdin from the file itself
        assert lamina(root, "load", stdin=f.fileno()).returncode == 0
    saved = tmp_path / "saved.tar"
    assert lamina(root, "save", "-o", str(saved), "good:1").returncode == 0
    assert b"etc/hello" in saved.read_bytes()  # the layer's content made it in
    assert scratch_entries(root) == []
    assert lamina(root, "fsck").returncode == 0


@pytest.mark.parametrize("how", ["truncated", "corrupt"])
def test_a_broken_compressed_archive_is_refused(tmp_path: Path, how: str) -> None:
    root = tmp_path / "root"
    assert lamina(root, "load", stdin=GOOD).returncode == 0
    images = lamina(root, "images", "--no-trunc").stdout
    packed = gzip.compress(GOOD)
    broken = packed[: len(packed) // 2] if how == "truncated" else (
        packed[:20] + bytes(b ^ 0x5A for b in packed[20:60]) + packed[60:])  # fmt: skip
    path = tmp_path / "broken.tar.gz"
    path.write_bytes(broken)
    done = lamina(root, "load", "-i", str(path))
    assert_refused(root, done, images)
    assert str(path) in done.stderr and "gzip" in done.stderr
    done = lamina(root, "load", stdin=broken)
    assert_refused(root, done, images)
    assert "stdin" in done.stderr


def test_a_compressed_archive_bigger_than_the_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    assert lamina(root, "load", stdin=GOOD).returncode == 0
    images = lamina(root, "images", "--no-trunc").stdout
    big = docker_archive([tar([tar_file("zeros", bytes(8 << 20))])], ["big:1"])  # 8 MiB of zeros
    path = tmp_path / "big.tar.gz"
    path.write_bytes(gzip.compress(big))
    monkeypatch.setenv("LAMINA_MAX_LAYER_SIZE", "4M")  # (`_lamina`'s command inherits it)
    done = lamina(root, "load", "-i", str(path))
    assert_refused(root, done, images)
    assert "more than" in done.stderr and "LAMINA_MAX_LAYER_SIZE" in done.stderr
