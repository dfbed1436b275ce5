"""--chmod: octal and chmod(1)'s symbolic form, checked against the real chmod binary."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from lamina.dockerfile import parse_chmod

# BuildKit's testChmodNonOctal modes, plus the examples.
MODES = ["go-w", "u=rw,g=r,o=r", "a+X", "u+rw,g+r,o-x,o+w", "u=rwx,g=rx,o=", "+x", "+w",
         "o=u", "g+s,o+t", "a-x", "=r"]  # fmt: skip
STARTS = [0o666, 0o124, 0o700, 0o755, 0o000]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("start", STARTS)
@pytest.mark.parametrize("is_dir", [False, True])
def test_symbolic_mode_matches_chmod_binary(
    tmp_path: Path, mode: str, start: int, is_dir: bool
) -> None:
    target = tmp_path / "t"
    if is_dir:
        target.mkdir()
    else:
        target.write_text("")
    os.chmod(target, start)
    old = os.umask(0o022)
    try:
        subprocess.run(["chmod", mode, str(target)], check=True)
    finally:
        os.umask(old)
    expected = stat.S_IMODE(target.stat().st_mode)
    file_type = stat.S_IFDIR if is_dir else stat.S_IFREG
    assert parse_chmod(mode).apply(file_type | start, is_dir) == expected


@pytest.mark.parametrize("text", ["0644", "755", "0", "7777"])
def test_octal(text: str) -> None:
    assert parse_chmod(text).octal == int(text, 8)


@pytest.mark.parametrize("text", ["10000", "8", "u=q", "abc", "", "u+rw,", "9x"])
def test_invalid_is_refused_with_buildkit_words(text: str) -> None:
    """BuildKit testCopyInvalidChmod / testAddInvalidChmod: an invalid --chmod fails."""
    with pytest.raises(ValueError, match="invalid chmod parameter"):
        parse_chmod(text)
