"""`lamina save` into a file, onto stdout that is a file, appended, or down a pipe: one
archive, byte for byte (into a file each layer writes itself at its offsets)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _save(root: Path, *args: str, stdout: int | None = None) -> bytes:
    done = subprocess.run(
        [sys.executable, "-m", "lamina", "--root", str(root), "save", *args, "t/save:1"],
        stdout=subprocess.PIPE if stdout is None else stdout,
        stderr=subprocess.PIPE,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout or b""


def test_every_kind_of_output_gets_the_same_archive(tmp_path: Path) -> None:
    tree, root = tmp_path / "tree", tmp_path / "root"
    rng = random.Random(11)
    for d in range(3):
        (tree / f"d{d}").mkdir(parents=True)
        for n in range(40):
            (tree / f"d{d}" / f"f{n}").write_bytes(rng.randbytes(rng.randrange(0, 9000)))
    (tree / "big").write_bytes(rng.randbytes(5 << 20))  # ranges of its own
    with open(tree / "sparse", "wb") as f:
        f.write(b"start")
        f.seek(9 << 20)
        f.write(b"end")  # a hole between
    done = subprocess.run(
        [sys.executable, "-m", "lamina", "--root", str(root), "import", str(tree), "t/save:1"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for fmt in ("docker-archive", "oci-archive"):
        named = tmp_path / f"named.{fmt}"
        _save(root, "--format", fmt, "-o", str(named))
        reference = named.read_bytes()
        assert len(reference) > 14 << 20 or fmt == "oci-archive"
        piped = _save(root, "--format", fmt)
        redirected = tmp_path / f"stdout.{fmt}"
        with open(redirected, "wb") as out:
            _save(root, "--format", fmt, stdout=out.fileno())
        appended = tmp_path / f"appended.{fmt}"
        appended.write_bytes(b"kept")
        fd = os.open(appended, os.O_WRONLY | os.O_APPEND)
        try:
            _save(root, "--format", fmt, stdout=fd)
        finally:
            os.close(fd)
        assert piped == reference
        assert redirected.read_bytes() == reference
        assert appended.read_bytes() == b"kept" + reference
