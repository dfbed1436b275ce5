"""`lamina load` killed with SIGKILL at random moments: the store stays consistent,
no partial image is ever listed, and the next load succeeds."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lamina.api import Lamina

pytestmark = pytest.mark.integration

LAYERS = 6


def _archive(tmp_path: Path) -> Path:
    """A docker-archive of one image with several multi-megabyte layers."""
    lamina = Lamina(tmp_path / "maker")
    previous = None
    tree = tmp_path / "tree"
    tree.mkdir()
    rng = random.Random(7)
    for n in range(LAYERS):
        (tree / f"blob{n}").write_bytes(rng.randbytes(3 << 20))
        image = lamina.import_image(tree, f"crash/img:{n}", base=previous)
        previous = image
    out = tmp_path / "img.tar"
    lamina.save([f"crash/img:{LAYERS - 1}"], out, "docker-archive")
    lamina.store.close()
    return out


def _load_command(root: Path, archive: Path) -> list[str]:
    return [sys.executable, "-m", "lamina", "--root", str(root), "load", "-i", str(archive)]


@pytest.mark.slow
def test_sigkill_during_load_leaves_no_partial_image(tmp_path: Path) -> None:
    archive = _archive(tmp_path)
    root = tmp_path / "root"
    started = time.monotonic()
    subprocess.run(
        _load_command(tmp_path / "timing-root", archive), check=True, capture_output=True
    )
    full = time.monotonic() - started
    rng = random.Random(20)
    completed = 0
    for _ in range(20):
        proc = subprocess.Popen(
            _load_command(root, archive), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0, full))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        completed += proc.returncode == 0
        lamina = Lamina(root)
        try:
            assert lamina.fsck().ok, lamina.fsck().problems
            for summary in lamina.images():
                image = lamina.resolve(summary.id)
                # Listed means whole: every layer there and verifiable.
                assert len(image.layers) == LAYERS
                for layer in image.layers:
                    lamina.store.content.verify(layer.digest)
        finally:
            lamina.store.close()
    lamina = Lamina(root)
    result = lamina.load(archive)
    assert result[0].names == (f"crash/img:{LAYERS - 1}",)
    assert lamina.fsck().ok
    assert os.path.isdir(root)
    assert completed < 20, "no kill landed during the load; the test proved nothing"
