"""SIGKILL `lamina load`, `build`, `commit`, `rmi` and `image prune` at ten random moments
each. After every kill the next command cleans up after the dead one: `lamina images`
lists only whole images, nothing is left mounted under the root, `lamina fsck` is clean,
and the killed command, run again, works. Registry-free: the base is busybox-static."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from busybox_rootfs import make_busybox_rootfs

from lamina.api import Lamina
from lamina.transport import verify_layer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROUNDS = 10


def _argv(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "lamina", "--root", str(root), *args]


def _lamina(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_argv(root, *args), capture_output=True, text=True, check=False)


def _ok(root: Path, *args: str) -> str:
    done = _lamina(root, *args)
    assert done.returncode == 0, f"lamina {' '.join(args)}: {done.stderr}"
    return done.stdout


def _mounts_under(root: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == str(root) or p.startswith(f"{root}/")]


def _assert_consistent(root: Path) -> None:
    """What the next command must find after a kill (it runs recovery first)."""
    rows = _ok(root, "image", "ls", "--format", "json", "--no-trunc").splitlines()
    assert _mounts_under(root) == []
    lamina = Lamina(root)
    try:
        report = lamina.fsck()
        assert report.ok, report.problems
        listed = {image.id for image in lamina.images()}
        assert {json.loads(row)["ID"] for row in rows} == listed
        for image_id in listed:  # listed means whole: every layer there and verifiable
            record = lamina.resolve(image_id)
            assert len(record.layers) == len(lamina.config(record).diff_ids)
            for layer in record.layers:
                verify_layer(lamina.store, layer.diff_id)
    finally:
        lamina.store.close()


def _kill_rounds(
    root: Path, argv: Callable[[int], list[str]], prepare: Callable[[int], None], seed: int
) -> int:
    """Time one whole run, then kill ten more at random moments in that span; returns how
    many kills landed (the command had not finished)."""
    prepare(0)
    started = time.monotonic()
    done = subprocess.run(argv(0), capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"the first run failed: {done.stderr[-2000:]}"
    full = time.monotonic() - started
    _assert_consistent(root)
    rng = random.Random(seed)
    landed = 0
    for n in range(1, ROUNDS + 1):
        prepare(n)
        proc = subprocess.Popen(argv(n), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, full))  # past the interpreter's start, before the end
        proc.send_signal(signal.SIGKILL)
        landed += proc.wait() == -signal.SIGKILL
        _assert_consistent(root)
    # And the command works again on what the kills left.
    prepare(ROUNDS + 1)
    done = subprocess.run(argv(ROUNDS + 1), capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"the run after the kills failed: {done.stderr[-2000:]}"
    _assert_consistent(root)
    return landed


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    lamina = Lamina(root)
    lamina.import_image(make_busybox_rootfs(tmp_path / "bb"), "busybox:latest")
    lamina.store.close()
    return root


def _archive(tmp_path: Path, root: Path) -> Path:
    """A docker-archive of busybox plus a few megabytes in two layers."""
    context = tmp_path / "archive-ctx"
    context.mkdir()
    rng = random.Random(3)
    for n in range(2):
        (context / f"blob{n}").write_bytes(rng.randbytes(4 << 20))
    (context / "Dockerfile").write_text("FROM busybox\nCOPY blob0 /a\nCOPY blob1 /b\n")
    _ok(root, "build", "-q", "-t", "big:1", str(context))
    out = tmp_path / "big.tar"
    _ok(root, "save", "-o", str(out), "big:1")
    _ok(root, "rmi", "big:1")
    _ok(root, "prune")
    return out


def test_sigkill_load(tmp_path: Path, root: Path) -> None:
    archive = _archive(tmp_path, root)

    def prepare(n: int) -> None:
        _lamina(root, "rmi", "big:1")
        _ok(root, "prune")

    landed = _kill_rounds(root, lambda n: _argv(root, "load", "-i", str(archive)), prepare, 1)
    assert landed, "no kill landed during a load; the test proved nothing"
    assert "big" in _ok(root, "images")


def test_sigkill_build(tmp_path: Path, root: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "data").write_bytes(random.Random(5).randbytes(3 << 20))
    (context / "Dockerfile").write_text(
        "FROM busybox\nARG N\nCOPY data /data\nRUN cp /data /copy && echo $N > /n\n"
    )
    landed = _kill_rounds(
        root,
        lambda n: _argv(
            root, "build", "--no-cache", "--build-arg", f"N={n}", "-t", f"b:{n}", str(context)
        ),
        lambda n: None,
        2,
    )
    assert landed, "no kill landed during a build; the test proved nothing"


def test_sigkill_commit(root: Path) -> None:
    _ok(root, "run", "--name", "ctr", "busybox", "sh", "-c",
        "head -c 6000000 /dev/urandom > /big; mkdir -p /d; seq 1 3000 > /d/n")  # fmt: skip
    landed = _kill_rounds(root, lambda n: _argv(root, "commit", "ctr", f"c:{n}"), lambda n: None, 3)
    assert landed, "no kill landed during a commit; the test proved nothing"
    assert f"{ROUNDS + 1}" in _ok(root, "images", "c")


def _images_to_remove(root: Path, tmp_path: Path, n: int) -> None:
    tree = tmp_path / f"tree{n}"
    for d in range(4):
        (tree / f"d{d}").mkdir(parents=True)
        for i in range(60):
            (tree / f"d{d}" / f"f{i}").write_bytes(random.Random(n * 1000 + i).randbytes(8 << 10))
    _ok(root, "import", str(tree), f"gone:{n}")
    _ok(root, "tag", f"gone:{n}", f"other:{n}")


def test_sigkill_rmi(tmp_path: Path, root: Path) -> None:
    landed = _kill_rounds(
        root,
        lambda n: _argv(root, "rmi", f"gone:{n}", f"other:{n}"),
        lambda n: _images_to_remove(root, tmp_path, n),
        4,
    )
    assert "busybox" in _ok(root, "images")
    assert landed, "no kill landed during an rmi; the test proved nothing"


def test_sigkill_image_prune(tmp_path: Path, root: Path) -> None:
    def prepare(n: int) -> None:
        _images_to_remove(root, tmp_path, n)
        _ok(root, "rmi", f"other:{n}")
        tree = tmp_path / f"tree{n}"
        (tree / "more").write_text(str(n))
        _ok(root, "import", str(tree), f"gone:{n}")  # the first one is dangling now

    landed = _kill_rounds(root, lambda n: _argv(root, "image", "prune", "-a", "-f"), prepare, 5)
    assert "busybox" not in _ok(root, "images")  # -a removes every image no container uses
    assert landed, "no kill landed during a prune; the test proved nothing"
