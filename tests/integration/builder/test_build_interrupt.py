"""Ctrl-C and SIGTERM in the middle of a RUN: no mount, container or scratch dir is left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lamina.api import Lamina

pytestmark = pytest.mark.integration

CLI = "import sys; from lamina.cli import main; sys.argv[0] = 'lamina'; main()"


def mounts_under(root: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if str(root) in line]


SINGLE = "FROM busybox\nRUN echo kept > /kept\nRUN echo started; sleep 60\n"
# The sleeping RUN is in a stage built by another thread, the target waits for it.
STAGES = (
    "FROM busybox AS slow\nRUN echo started; sleep 60\n"
    "FROM busybox\nRUN echo kept > /kept\nCOPY --from=slow /etc/passwd /p\n"
)


def _default_sigint() -> None:
    # A suite started in the background inherits an ignored SIGINT, which Python (as POSIX
    # asks of programs) keeps ignoring: the signal under test would never arrive.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "dockerfile"),
    [(signal.SIGTERM, SINGLE), (signal.SIGINT, SINGLE), (signal.SIGTERM, STAGES)],
)
def test_interrupted_build_leaves_nothing_behind(
    lam: Lamina, context: Path, signum: int, dockerfile: str
) -> None:
    (context / "Dockerfile").write_text(dockerfile)
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, "--root", str(lam.root), "build", "--progress=plain",
         "-t", "interrupted", str(context)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=_default_sigint,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.rstrip().endswith(" started"):
                break
        assert mounts_under(lam.root)  # the RUN is in progress over its overlay mount
        os.kill(proc.pid, signum)
        proc.wait(timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert mounts_under(lam.root) == []
    runc = subprocess.run(["runc", "--root", str(lam.root / "runc"), "list", "-q"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert runc.stdout.strip() == ""
    assert [p.name for p in lam.store.snapshots_dir.iterdir() if p.name.startswith(".tmp")] == []
    assert lam.store.fsck().ok
    assert [t for i in lam.store.list_images() for t in i.tags] == [
        "docker.io/library/busybox:latest"
    ]
    started = time.monotonic()
    (context / "Dockerfile").write_text("FROM busybox\nRUN echo kept > /kept\n")
    from lamina.api import build_image

    again = build_image(lam, context, on_event=None)
    assert time.monotonic() - started < 30
    if dockerfile == SINGLE:  # its first RUN had finished before the signal: still cached
        assert again.cached == 1
