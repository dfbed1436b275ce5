"""`lamina import` as `docker import` takes a tarball: from a file or from stdin (`-`),
plain or compressed with gzip, zstd, bzip2 or xz, with moby's history entry (no CREATED
BY; the message, else "Imported from -")."""

from __future__ import annotations

import bz2
import gzip
import lzma
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from archive_cli import (
    lamina,
    tar,
    tar_file,
    zstd,
)

pytestmark = pytest.mark.integration

ROOTFS = tar([tar_file("etc/hello", b"hi\n"), tar_file("bin/tool", b"#!/bin/sh\n")])
PACK: dict[str, Callable[[bytes], bytes]] = {
    "plain": lambda b: b, "gzip": gzip.compress, "zstd": zstd, "bzip2": bz2.compress,
    "xz": lzma.compress,
}  # fmt: skip


def _history(root: Path, ref: str) -> list[str]:
    done = lamina(root, "history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}", ref)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize("kind", sorted(PACK))
def test_import_reads_a_tarball_from_stdin(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "root"
    done = lamina(root, "import", "-", "piped:1", stdin=PACK[kind](ROOTFS))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("sha256:")
    assert _history(root, "piped:1") == ["|Imported from -"]
    out = tmp_path / "out.tar"
    assert lamina(root, "save", "-o", str(out), "piped:1").returncode == 0
    assert b"etc/hello" in out.read_bytes() and b"bin/tool" in out.read_bytes()


def test_import_of_a_file_gives_the_image_stdin_gives(tmp_path: Path) -> None:
    root = tmp_path / "root"
    path = tmp_path / "rootfs.tar.xz"
    path.write_bytes(lzma.compress(ROOTFS))
    from_file = lamina(root, "import", "-m", "from a file", str(path), "a:1")
    with open(path, "rb") as f:
        from_stdin = subprocess.run(
            [sys.executable, "-m", "lamina", "--root", str(root), "import", "-", "b:1"],
            stdin=f, capture_output=True, text=True, check=False,
        )  # fmt: skip
    assert from_file.returncode == 0 and from_stdin.returncode == 0, from_stdin.stderr
    assert _history(root, "a:1") == ["|from a file"]
    refs = ("a:1", "b:1")  # (bare "a" or "b" would be read as an image ID prefix)
    layers = [lamina(root, "inspect", "--format", "{{json .RootFS}}", r).stdout for r in refs]
    assert layers[0] == layers[1]  # the same layer, whichever way it came


def test_import_of_a_broken_stream_is_one_error_line(tmp_path: Path) -> None:
    root = tmp_path / "root"
    packed = gzip.compress(ROOTFS)
    done = lamina(root, "import", "-", "bad:1", stdin=packed[: len(packed) // 2])
    assert done.returncode == 1
    assert done.stderr.startswith("Error: ") and len(done.stderr.strip().splitlines()) <= 2
    assert "bad" not in lamina(root, "images").stdout
