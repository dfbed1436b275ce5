"""Fixtures for analysis tests: a store holding busybox (nothing pulled), a build helper,
and the CLI run as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lamina.api import Lamina, build_image


@pytest.fixture
def lam(tmp_path: Path, busybox_rootfs: Path) -> Iterator[Lamina]:
    lamina = Lamina(tmp_path / "root")
    lamina.import_image(busybox_rootfs, "busybox")
    yield lamina
    lamina.store.close()


@pytest.fixture
def build(lam: Lamina, tmp_path: Path) -> Callable[..., str]:
    """build(dockerfile_text, tag) → image ID; each build in a context of its own."""

    def run(dockerfile: str, tag: str) -> str:
        ctx = tmp_path / f"ctx-{tag.replace(':', '-')}"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(dockerfile)
        return build_image(lam, ctx, tags=[tag]).image.id

    return run


@pytest.fixture
def cli(lam: Lamina, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """cli(*args, cwd=None) → the finished `lamina --root ROOT ...` process."""

    def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lamina", "--root", str(lam.root), *args],
            capture_output=True, text=True, cwd=cwd or tmp_path, timeout=300,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "COLUMNS": "80"},
        )  # fmt: skip

    return run
