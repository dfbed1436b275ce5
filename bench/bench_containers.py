"""Container benchmarks (issue 10): lamina beside plain runc, in one run.

1. `lamina run --rm IMAGE true`, start to exit (whole command: create, mount, bundle,
   runc run --detach under the command itself, exit, unmount, remove), beside `runc run` of
   a bundle prepared once over the same overlay mount (runc alone: no store, no records),
   each command started after the machine sat idle for `PAUSE` (as a command typed at a
   shell is). The order of the two alternates from one pair to the next.
2. The same pair in CPU seconds (user + sys of every process each started, runc's and any
   monitor's included): less sensitive than wall time to a machine that other work loads.
3. The pair of 1 back to back, without the pause (as measured before it): runc, lamina,
   runc, … each started as the other's run ended (runc ~5 ms after lamina's own runc).
4. `lamina ps` with 100 containers (exited), no other tool.

Why the pause: on this VM an idle vCPU halts to the host at once (cpuidle `haltpoll` with
`guest_halt_poll_ns=0`), and runc (Go threads, `runc init`: some 450 context switches)
runs markedly faster right after another runc ran than from an idle machine: `runc run`
alone, started 0 / 5 / 20 / 50 / 200 / 500 ms after the previous one ended, took
27 / 33 / 36 / 40 / 40 / 38 ms (medians of 25). Back to back (3), plain runc always starts
warm from lamina's runc; lamina's own runc never does (the command's Python start comes
first). From idle, both start alike: runc's own part inside `lamina run` then takes what
runc alone does (`runc run --detach`, 21 alternate runs each after 0.1 s idle: 32.7 ms
inside lamina, 31.0 ms alone).

The image is made from Debian's busybox-static with `lamina import`. Nothing here is a test.

Run: `.venv/bin/python bench/bench_containers.py [--runs N]` (or `bench/run.py`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from _bench import Row, script_main, timed  # noqa: E402

LAMINA = str(Path(sys.executable).with_name("lamina"))
# As installed: with bytecode caches. (A PYTHONDONTWRITEBYTECODE environment would make
# every lamina command compile its modules again, about 0.2 s of each measurement.)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _time(argv: list[str]) -> float:
    return timed(argv, env=ENV)


_PR_SET_CHILD_SUBREAPER = 36
PAUSE = 0.1  # seconds idle before each command of rows 1-2


def _timed_cpu(argv: list[str]) -> tuple[float, float]:
    """(wall seconds to the command's exit, CPU seconds of it and all its descendants).

    This process is made a subreaper first, so a double-forked monitor is reaped (and its
    CPU counted) here once it ends."""
    import ctypes

    ctypes.CDLL(None).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        err = child.stderr.read().decode(errors="replace") if child.stderr else ""
        raise SystemExit(f"{' '.join(argv[:6])}… failed: {err.strip()[-800:]}")
    cpu = usage.ru_utime + usage.ru_stime
    while True:  # the orphans reparented here: the monitor (and runc's, reaped by it)
        try:
            _, _, rest = os.wait4(-1, 0)
        except ChildProcessError:
            break
        cpu += rest.ru_utime + rest.ru_stime
    if child.stderr:
        child.stderr.close()
    return wall, cpu


def run(runs: int, work: Path) -> list[Row]:
    from busybox_rootfs import make_busybox_rootfs

    from lamina.api import Lamina
    from lamina.runtime import bundle_config, write_bundle
    from lamina.snapshots import mounted, overlay_mount

    root = work / "root"
    rootfs = make_busybox_rootfs(work / "rootfs")
    lamina = [LAMINA, "--root", str(root)]
    subprocess.run([*lamina, "import", str(rootfs), "bench"], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    _time([*lamina, "run", "--rm", "bench", "true"])  # unpack the snapshot once
    lam = Lamina(root)
    image = lam.resolve("bench")
    lowers = [lam.store.snapshot_path(x.diff_id) for x in image.layers][::-1]
    ours: list[float] = []
    theirs: list[float] = []
    plain = work / "plain"
    for d in ("upper", "work", "merged", "bundle", "state"):
        (plain / d).mkdir(parents=True)
    with mounted(overlay_mount(lowers, plain / "upper", plain / "work",
                               extra_options=("nodev",)), plain / "merged"):  # fmt: skip
        config = bundle_config(["true"], bundle_dir=plain / "bundle", rootfs=plain / "merged")
        write_bundle(plain / "bundle", plain / "merged", config)
        runc = [shutil.which("runc") or "runc", "--root", str(plain / "state"), "run",
                "--bundle", str(plain / "bundle")]  # fmt: skip
        ours_cpu: list[float] = []
        theirs_cpu: list[float] = []
        ours_hot: list[float] = []
        theirs_hot: list[float] = []
        for i in range(runs):
            pair = [("runc", [*runc, f"bench-{i}"]),
                    ("lamina", [*lamina, "run", "--rm", "bench", "true"])]  # fmt: skip
            for who, argv in pair if i % 2 == 0 else pair[::-1]:
                time.sleep(PAUSE)
                wall, cpu = _timed_cpu(argv)
                (theirs if who == "runc" else ours).append(wall)
                (theirs_cpu if who == "runc" else ours_cpu).append(cpu)
        for i in range(runs):  # as measured before the pause: runc, lamina, runc, …
            theirs_hot.append(_timed_cpu([*runc, f"bench-hot-{i}"])[0])
            ours_hot.append(_timed_cpu([*lamina, "run", "--rm", "bench", "true"])[0])
    rows = [
        ("run --rm IMAGE true (start to exit, from idle)", ours, "runc run", theirs),
        ("run --rm IMAGE true (CPU, user+sys)", ours_cpu, "runc run", theirs_cpu),
        ("run --rm IMAGE true (start to exit, back to back)", ours_hot, "runc run", theirs_hot),
    ]
    for _ in range(100):
        subprocess.run([*lamina, "run", "-d", "bench", "true"], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
    _time([*lamina, "ps", "-a"])  # every exit folded
    ps = [_time([*lamina, "ps", "-a"]) for _ in range(runs)]
    rows.append(("ps -a with 100 containers", ps, "", []))
    lam.store.close()
    _time([*lamina, "container", "prune"])
    return rows


if __name__ == "__main__":
    script_main(run, (__doc__ or "").splitlines()[0])
