"""`run -it` and `exec -it` with a stdin that is no terminal: Docker's one-line refusal,
exit 1, before anything is created (it used to exit 125 with no message)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _lamina(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lamina", "--root", str(root), *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [
        ["run", "-it", "no-such-image", "sh"],
        ["run", "--rm", "-i", "-t", "no-such-image", "sh"],
        ["exec", "-it", "no-such-container", "sh"],
    ],
)
def test_interactive_tty_without_a_terminal_is_refused(tmp_path: Path, args: list[str]) -> None:
    done = _lamina(tmp_path / "root", *args)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().endswith("the input device is not a TTY")
    assert done.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["run", "-t", "no-such-image", "sh"],  # no stdin attached: a tty is still allocated
        ["run", "-i", "no-such-image", "sh"],
        ["run", "-dit", "no-such-image", "sh"],  # detached: nothing attaches
    ],
)
def test_other_combinations_reach_the_image_lookup(tmp_path: Path, args: list[str]) -> None:
    done = _lamina(tmp_path / "root", *args)
    assert "not a TTY" not in done.stderr
    assert "no-such-image" in done.stderr
