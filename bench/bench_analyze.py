"""Analysis benchmark for issue 9: the file index's cost in a build, and `lamina analyze`.

The workload is the RUN image of bench_build.py: `RUN tar -xf /data.tar -C /` writing
1 GB in 50,000 files over a busybox base.

1. the build (`--no-cache`, in a child process) with the file index, against the same
   build with the index switched off (the writer gets no collector, nothing is recorded):
   the index's added cost, target <= 5%. Each build starts from the same state: the RUN
   image and its layer removed (`rmi` + `prune`, untimed: the 1 GB tree is deleted
   outside the timed part, identically for both), then `sync`, caches dropped, writeback
   waited for, and the build's input (the base's data.tar) read back into the page cache.
   The two kinds alternate (ABBA), at least 5 builds of each. Reported: wall median and
   min, and the CPU (user and sys) of the build's process tree (`os.wait4`: the build,
   runc and the container's tar, the writer's hashing process), and the paired
   difference of each round.
2. `lamina analyze run` (the terminal view), target <= 0.5 s
3. `lamina analyze run --json` (every entry with its A/M/D marker), target <= 0.5 s
4. the other modes on the same image: `--against bigbase` (50,000 files added) as text
   and JSON, `--html`, `--ci` with a `--forbid` glob, and `--store` (with `--html`)
5. peak memory (ru_maxrss) of the analyze commands, target < 200 MB

There is no other tool doing this from an index (dive re-reads every layer), so the
rows carry an empty list for the other tool. Wall times are medians; CPU time (user +
sys) is printed beside them because the machine is shared. Nothing here is a test.

Run: `.venv/bin/python bench/bench_analyze.py [--runs N] [--files N] [--file-size B]`
(`--no-build` skips step 1: only the analyze commands are timed).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import SRC, Row, drop_caches, scaled

APPLETS = ["sh", "tar", "true", "ls", "cat", "rm", "mkdir", "chmod"]

# The child that builds. `index`: as lamina builds. `no-index`: the same build with the
# index switched off, the honest baseline: the layer writer of the commit (the lean
# store's commit_dir_layer) gets no collector, so no file is hashed for the index and no
# row is made, and the store records no index (a benchmark-only switch, patched here,
# not an option of lamina); everything else (runc, the tar's hash, its tar-split record,
# the rename into the store) is the same code. `reset`: remove the RUN image and every
# layer, snapshot and index row only it held (`rmi` + `prune`), untimed, before each
# timed build: the build then commits its layer as a first build does (renamed into
# the store, indexed), never pays for deleting a copy the store already has (a commit of
# a layer the store holds removes its 1 GB directory: 50,000 unlinks, each a synchronous
# discard on this VM's journal-less ext4 mounted with `discard`, inside the timed part).
_CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, {src!r})
from lamina.api import Lamina, build_image

root, ctx, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
lam = Lamina(root)
if mode == "reset":
    try:
        lam.rmi(["run"], force=True)
    except Exception:
        pass
    lam.prune()
    sys.exit(0)
if mode == "no-index":
    import lamina.transport._lean as lean
    from lamina.store import FileIndex
    real = lean.write_layer
    def without_index(changes, out, **kwargs):
        kwargs.pop("collect", None)
        return real(changes, out, **kwargs)
    lean.write_layer = without_index
    FileIndex.put = lambda self, diff_id, entries: None
build_image(lam, ctx, tags=["run"], no_cache=True)
"""


class Usage(NamedTuple):
    """One child's wall seconds and the CPU of its process tree (those it waited for)."""

    wall: float
    user: float
    sys: float
    maxrss: int  # KiB
    read_mb: float  # read from disk by the tree (ru_inblock): page cache dropped meanwhile?

    @property
    def cpu(self) -> float:
        return self.user + self.sys


def timed(argv: list[str], stdout: int | None = subprocess.DEVNULL) -> Usage:
    """Run one child to its end: its wall time and the rusage of its process tree (with
    its own children waited for: runc's, the writer's hashing process)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv[:6])}… failed: {err.decode()[-800:]}")
    return Usage(wall, usage.ru_utime, usage.ru_stime, usage.ru_maxrss, usage.ru_inblock / 2048)


def _meminfo_kib(*keys: str) -> int:
    with open("/proc/meminfo") as f:
        return sum(int(line.split()[1]) for line in f if line.split(":")[0] in keys)


def settle(warm: Path) -> float:
    """Before a timed build: write back everything dirty (`sync`; the deleted tree's
    discards are done by then), wait until the kernel's writeback queue is empty (other
    processes on the machine write too: at most 10 s), drop the page cache, dentries and
    inodes, and read `warm` (the build's input) back, so neither build reads it from disk
    or writes back the other's bytes. Returns the seconds it took."""
    started = time.perf_counter()
    drop_caches()
    deadline = time.monotonic() + 10
    while _meminfo_kib("Writeback") > 1024 and time.monotonic() < deadline:
        time.sleep(0.1)
    with open(warm, "rb") as f:
        while f.read(1 << 20):
            pass
    return time.perf_counter() - started


def setup(work: Path, files: int, size: int) -> tuple[Path, Path, Path]:
    """A store with `bigbase` (busybox + a tar of `files` files), the RUN context, and
    the path of that tar in the base's snapshot (the build's input)."""
    sys.path.insert(0, str(SRC))
    from lamina.api import Lamina

    rootfs = work / "bigroot"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "tmp").mkdir()
    shutil.copy2("/bin/busybox", rootfs / "bin" / "busybox")
    for applet in APPLETS:
        (rootfs / "bin" / applet).symlink_to("busybox")
    with tarfile.open(rootfs / "data.tar", "w") as tar:
        for n in range(files):
            info = tarfile.TarInfo(f"out/d{n // 500:03d}/f{n:05d}")
            info.size = size
            tar.addfile(info, io.BytesIO(os.urandom(size)))
    root = work / "lamina"
    lam = Lamina(root)
    lam.import_image(rootfs, "bigbase")
    data = lam.store.snapshot_path(lam.resolve("bigbase").layers[-1].diff_id) / "data.tar"
    lam.store.close()
    shutil.rmtree(rootfs)
    ctx = work / "ctx"
    ctx.mkdir()
    # Unpack the base's snapshot once, so each measured build does the same work.
    (ctx / "Dockerfile").write_text("FROM bigbase\nRUN true\n")
    subprocess.run([sys.executable, "-c", _CHILD.format(src=str(SRC)), str(root), str(ctx),
                    "index"], check=True)  # fmt: skip
    (ctx / "Dockerfile").write_text("FROM bigbase\nRUN tar -xf /data.tar -C /\n")
    return root, ctx, data


def _cpu() -> float:
    """CPU seconds of this process (all threads) and of its children waited for (the
    writer's hashing process)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def layer_write_cpu(root: Path, runs: int) -> tuple[list[float], list[float]]:
    """CPU seconds (all threads of this process and its hashing child) of what the
    commit of the RUN layer does to its tree (the lean store: hash the tar, record its
    tar-split, nothing compressed), with the index collected and recorded, and without:
    the index's own cost, free of the noise of runc and of other processes."""
    from lamina.api import Lamina
    from lamina.layers import EntryCollector, SplitRecorder, changes_from_dir, write_layer

    lam = Lamina(root)
    diff_id = lam.resolve("run").layers[-1].diff_id
    changes = changes_from_dir(str(lam.store.snapshot_path(diff_id)))
    with_index: list[float] = []
    without: list[float] = []
    for _ in range(runs):
        started = _cpu()
        write_layer(changes, None, record=SplitRecorder(io.BytesIO()))
        without.append(_cpu() - started)
        lam.store.file_index.forget([diff_id])
        started = _cpu()
        index = EntryCollector()
        write_layer(changes, None, record=SplitRecorder(io.BytesIO()), collect=index)
        lam.store.file_index.put(diff_id, index.entries)
        with_index.append(_cpu() - started)
    lam.store.close()
    return with_index, without


# The analyze commands timed, each after IMAGE's store is built: (label, arguments).
MODES = [
    ("lamina analyze", ["analyze", "run"]),
    ("lamina analyze --json", ["analyze", "run", "--json"]),
    ("lamina analyze --against bigbase", ["analyze", "run", "--against", "bigbase"]),
    ("lamina analyze --against bigbase --json",
     ["analyze", "run", "--against", "bigbase", "--json"]),
    ("lamina analyze --html", ["analyze", "run", "--html", "{work}/report.html"]),
    ("lamina analyze --ci --forbid", ["analyze", "run", "--ci", "--min-efficiency", "0.5",
                                      "--forbid", "/var/cache/apt/archives/*.deb"]),
    ("lamina analyze --store", ["analyze", "--store"]),
    ("lamina analyze --store --html", ["analyze", "--store", "--html", "{work}/store.html"]),
]  # fmt: skip


def run(runs: int, work: Path, files: int | None = None, size: int = 20_000,
        build: bool = True) -> list[Row]:  # fmt: skip
    """The benchmark's rows (see the module docstring); `work` is a scratch directory.
    `files` defaults to 50,000 times LAMINA_BENCH_SCALE; `build=False` skips step 1."""
    files = files if files is not None else scaled(50_000)
    work.mkdir(parents=True, exist_ok=True)
    root, ctx, data = setup(work, files, size)
    child = [sys.executable, "-c", _CHILD.format(src=str(SRC)), str(root), str(ctx)]
    lamina = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(SRC)!r}); "
              "from lamina.cli import main; sys.argv[0] = 'lamina'; main()",
              "--root", str(root)]  # fmt: skip
    builds: dict[str, list[Usage]] = {"index": [], "no-index": []}
    last = "index"
    # ABBA: without, with, with, without, ...: a drift of the machine's load over the
    # rounds weighs on both alike.
    order = [("no-index", "index"), ("index", "no-index")]
    for n in range(max(runs, 5) if build else 0):
        for mode in order[n % 2]:
            reset = timed([*child, "reset"])
            waited = settle(data)
            load = os.getloadavg()[0]
            got = timed([*child, mode])
            builds[mode].append(got)
            last = mode
            print(
                f"build {mode:<8} {got.wall:6.2f}s wall {got.user:6.2f}s user "
                f"{got.sys:6.2f}s sys {got.read_mb:5.0f} MB read from disk (load {load:.1f} "
                f"before, {os.getloadavg()[0]:.1f} after; reset {reset.wall:.1f}s, "
                f"settle {waited:.1f}s)",
                flush=True,
            )
    if last != "index":  # the RUN image as lamina builds it, for the analyze commands
        timed([*child, "reset"])
        timed([*child, "index"])
    if not build:  # the RUN image, built once, untimed
        timed([*child, "index"])
    write_with, write_without = layer_write_cpu(root, runs) if build else ([], [])
    walls: dict[str, list[float]] = {label: [] for label, _ in MODES}
    cpus: dict[str, list[float]] = {label: [] for label, _ in MODES}
    peak = 0
    for _label, args in MODES:  # warm the page cache for the db and the code
        timed([*lamina, *(a.format(work=work) for a in args)])
    for _ in range(runs):
        for label, args in MODES:
            got = timed([*lamina, *(a.format(work=work) for a in args)])
            walls[label].append(got.wall)
            cpus[label].append(got.cpu)
            peak = max(peak, got.maxrss)
    gb = files * size / 1e9
    label = f"{gb:.1f} GB / {files} files RUN image"
    med = statistics.median
    rows: list[Row] = []
    if build:
        rows += _report_builds(builds, label)
        extra = med(write_with) - med(write_without)
        base_cpu = med([u.cpu for u in builds["no-index"]])
        print(
            f"layer commit (tar hash, tar-split) of that layer: {med(write_without):.2f}s cpu, "
            f"with the index {med(write_with):.2f}s cpu: +{extra:.2f}s = "
            f"{100 * extra / base_cpu:.1f}% of the build's cpu"
        )
        rows += [
            (f"layer write (cpu s), {label}, with the file index", write_with, "", []),
            (f"layer write (cpu s), {label}, without the file index", write_without, "", []),
        ]
    for mode, _ in MODES:
        target = " (target <= 0.5 s)" if mode in (MODES[0][0], MODES[1][0]) else ""
        print(f"{mode:<40} {med(walls[mode]):6.3f}s wall  {med(cpus[mode]):6.3f}s cpu{target}")
        rows.append((f"{mode}, {label}", walls[mode], "", []))
    print(f"analyze peak memory (ru_maxrss): {peak / 1024:.0f} MiB (target < 200 MB)")
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return rows


def _report_builds(builds: dict[str, list[Usage]], label: str) -> list[Row]:
    """Print the builds' wall and CPU, with and without the index, and the index's cost;
    the rows for the table (wall seconds, then CPU seconds of the build's process tree)."""
    med = statistics.median
    with_, without = builds["index"], builds["no-index"]
    for name, got in (("with index", with_), ("without index", without)):
        walls = [u.wall for u in got]
        print(
            f"build {name:<14} wall median {med(walls):6.2f}s min {min(walls):6.2f}s | "
            f"cpu median user {med([u.user for u in got]):5.2f}s sys "
            f"{med([u.sys for u in got]):5.2f}s user+sys {med([u.cpu for u in got]):5.2f}s "
            f"| disk reads median {med([u.read_mb for u in got]):.0f} MB (n={len(got)})"
        )
    for what, field in (("wall", "wall"), ("user+sys cpu", "cpu"), ("user cpu", "user")):
        a = [float(getattr(u, field)) for u in with_]
        b = [float(getattr(u, field)) for u in without]
        # Paired: build 2k and 2k+1 ran in the same round, one right after the other.
        paired = [x - y for x, y in zip(a, b, strict=True)]
        print(
            f"index cost, {what:<12}: median {100 * (med(a) / med(b) - 1):+5.1f}%, "
            f"min {100 * (min(a) / min(b) - 1):+5.1f}%, per round "
            f"{med(paired):+.2f}s median ({' '.join(f'{d:+.2f}' for d in paired)}) "
            f"(target <= 5%)"
        )
    return [
        (f"build, {label}, with the file index", [u.wall for u in with_], "", []),
        (f"build, {label}, without the file index", [u.wall for u in without], "", []),
        (f"build cpu (user+sys s), {label}, with the file index", [u.cpu for u in with_],
         "", []),
        (f"build cpu (user+sys s), {label}, without the file index",
         [u.cpu for u in without], "", []),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=None, help="default 50,000 (scaled)")
    parser.add_argument("--file-size", type=int, default=20_000)
    parser.add_argument("--tmp", type=Path, default=None, help="work dir (default: a temp dir)")
    parser.add_argument("--no-build", action="store_true",
                        help="skip the builds with/without index")  # fmt: skip
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lamina-bench-analyze-", dir=opts.tmp))
    try:
        rows = run(opts.runs, work, opts.files, opts.file_size, build=not opts.no_build)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    for name, ours, _other, _theirs in rows:
        each = " ".join(f"{t:.2f}" for t in ours)
        print(f"{name:<60} {statistics.median(ours):8.3f}s  runs {each}")


if __name__ == "__main__":
    main()
