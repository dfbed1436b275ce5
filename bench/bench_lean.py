"""Issue 12 (the lean store): lamina beside buildah and skopeo in one run.

1. store bytes on disk ÷ unique uncompressed content, ten images built on one base that
   was loaded from a docker-archive (buildah: the same, overlay driver)
2. load of a docker-archive, snapshots written, beside `buildah pull docker-archive:`
   (which unpacks too)
3. save as a docker-archive beside `skopeo copy oci: docker-archive:`
4. save as an OCI archive (gzip, compressed on the way out: the cache is pruned before
   each run) beside `skopeo copy --dest-compress oci: oci-archive:`
5. floors, the same work done by the simplest tools, cold, beside lamina's numbers:
   load beside `tar -xf` of the archive's layer.tar into an empty directory (after the
   same deletion as every tool here), save beside `tar -cf - snapshot | cat >/dev/null`
   (one file at a time) and beside the snapshot's files read by 32 `cat`s at once
   (many reads in flight, as lamina's save does). The ratios are lamina ÷ floor.

Run: `.venv/bin/python bench/bench_lean.py [--runs N] [--files N] [--file-size B]`, or
through `bench/run.py` (`run(runs, work)`). Medians of the runs. Not a test.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAMINA = [sys.executable, "-m", "lamina"]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import drop_caches, scaled  # noqa: E402

FILES = scaled(20_000)  # LAMINA_BENCH_SCALE shrinks it for a trial run
FILE_SIZE = 20_000

Row = tuple[str, list[float], str, list[float]]


def _run(argv: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])}… failed: {done.stderr.strip()[-600:]}")
    return elapsed


_CPU: dict[str, list[float]] = {}  # user+sys CPU seconds of the save rows, by workload


def _run_cpu(argv: list[str], cpu: list[float]) -> float:
    """`_run`, appending the user+sys CPU seconds the command (and its children) used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    elapsed = _run(argv)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return elapsed


def _save_cpu(label: str, argv: list[str]) -> float:
    """`_run_cpu`, the CPU kept under `label` in `_CPU` (the save rows)."""
    return _run_cpu(argv, _CPU.setdefault(label, []))


def _disk_usage(path: Path) -> int:
    seen: set[tuple[int, int]] = set()
    total = 0
    for top, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            st = os.lstat(os.path.join(top, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def _tree(root: Path, files: int, size: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    for n in range(files):
        d = root / f"d{n // 500:03d}"
        d.mkdir(parents=True, exist_ok=True)
        # Half random, half text-like: real layers compress about 2:1.
        data = rng.randbytes(size // 2) + (b"lamina " * (size // 14 + 1))[: size - size // 2]
        (d / f"f{n:05d}").write_bytes(data)


def _busybox(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    for applet in ("sh", "ls", "cat", "cp", "true"):
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    return root


class _Buildah:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.prefix = ["buildah", "--root", str(base / "root"), "--runroot", str(base / "run")]

    def __call__(self, *args: str) -> list[str]:
        return [*self.prefix, *args]

    def close(self) -> None:
        subprocess.run(self("rm", "--all"), capture_output=True, check=False)
        subprocess.run(["umount", "-R", "-l", str(self.base / "root" / "overlay")],
                       capture_output=True, check=False)  # fmt: skip
        shutil.rmtree(self.base, ignore_errors=True)


def _image(work: Path, files: int, size: int) -> tuple[Path, Path]:
    """A docker-archive and a plain OCI layout of busybox + `files` files of `size` bytes."""
    tree = _busybox(work / "image-tree")
    _tree(tree / "app", files, size)
    root = work / "maker"
    _run([*LAMINA, "--root", str(root), "import", str(tree), "bench/big:1"])
    archive, layout = work / "big.tar", work / "big-oci"
    _run([*LAMINA, "--root", str(root), "save", "-o", str(archive), "bench/big:1"])
    _run([*LAMINA, "--root", str(root), "save", "--format", "oci-dir", "--compression",
          "none", "-o", str(layout), "bench/big:1"])  # fmt: skip
    shutil.rmtree(tree)
    shutil.rmtree(root)
    return archive, layout


def bench_disk(work: Path, archive: Path) -> list[Row]:
    """Ten images on one base loaded from a docker-archive: bytes on disk ÷ content."""
    root = work / "disk-lamina"
    _run([*LAMINA, "--root", str(root), "load", "-i", str(archive)])
    buildah = _Buildah(work / "disk-buildah")
    try:
        pulled = subprocess.run(buildah("pull", "-q", f"docker-archive:{archive}"),
                                capture_output=True, text=True, check=True)  # fmt: skip
        image = pulled.stdout.split()[-1]
        _run(buildah("tag", image, "localhost/bench/big:1"))
        for n in range(10):
            ctx = work / f"ctx{n}"
            ctx.mkdir()
            (ctx / "own.bin").write_bytes(random.Random(n).randbytes(1 << 20))
            (ctx / "Dockerfile").write_text(f"FROM bench/big:1\nCOPY own.bin /own-{n}.bin\n")
            _run([*LAMINA, "--root", str(root), "build", "-q", "-t", f"bench/c:{n}", str(ctx)])
            _run(buildah("bud", "--layers", "--isolation", "chroot", "--pull=never", "-q",
                         "-t", f"bench/c:{n}", str(ctx)))  # fmt: skip
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        from lamina.api import Lamina

        api = Lamina(root)
        layers = {l.diff_id: l for i in api.store.list_images() for l in i.layers}  # noqa: E741
        content = sum(layer.uncompressed_size or 0 for layer in layers.values())
        api.store.close()
        ours = _disk_usage(root) / content
        theirs = _disk_usage(buildah.base / "root") / content
        mine, other = _disk_usage(root) / 1e6, _disk_usage(buildah.base / "root") / 1e6
        print(f"disk: content {content / 1e6:.0f} MB in {len(layers)} layers; "
              f"lamina {mine:.0f} MB, buildah {other:.0f} MB", flush=True)  # fmt: skip
    finally:
        buildah.close()
        shutil.rmtree(root, ignore_errors=True)
    return [("store bytes ÷ content, 10 images on one base (ratio, not s)", [ours],
             "buildah", [theirs])]  # fmt: skip


def _layer_tar(work: Path, archive: Path) -> Path:
    """The archive's one layer.tar, extracted (untimed) for the tar -xf floor."""
    import tarfile

    out = work / "floor-layer.tar"
    with tarfile.open(archive) as tf:
        member = next(m for m in tf.getmembers() if m.name.endswith("/layer.tar"))
        src = tf.extractfile(member)
        assert src is not None
        with src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return out


def _snapshot_dir(root: Path) -> Path:
    found = [p for p in (root / "snapshots").iterdir() if p.is_dir() and p.name[0] != "."]
    return max(found, key=lambda p: sum(1 for _ in p.rglob("*")))


def bench_load_save(work: Path, archive: Path, layout: Path, runs: int) -> list[Row]:
    load, pull, save, sk_save, oci, sk_oci = [], [], [], [], [], []
    untar, tar_c, cat_p = [], [], []
    cpu: dict[str, list[float]] = {"lamina load": [], "buildah pull": [], "tar -xf": []}
    root = work / "ls-lamina"
    layer_tar = _layer_tar(work, archive)
    for i in range(runs):
        # Each tool's tree is deleted right after its run, so each runs just after the
        # other's 20,000 files were deleted: on this VM's journal-less ext4, creating
        # files soon after many deletions costs more (the allocator skips recently
        # deleted inodes), and before, lamina always ran after two deletions, buildah
        # after none.
        shutil.rmtree(root, ignore_errors=True)
        drop_caches()
        load.append(_run_cpu([*LAMINA, "--root", str(root), "load", "-i", str(archive)],
                             cpu["lamina load"]))  # fmt: skip
        shutil.rmtree(root)
        buildah = _Buildah(work / f"ls-buildah-{i}")
        try:
            drop_caches()
            pull.append(_run_cpu(buildah("pull", "-q", f"docker-archive:{archive}"),
                                 cpu["buildah pull"]))  # fmt: skip
        finally:
            buildah.close()
        floor = work / "floor-x"
        floor.mkdir()
        drop_caches()
        untar.append(_run_cpu(["tar", "-xf", str(layer_tar), "-C", str(floor)], cpu["tar -xf"]))
        shutil.rmtree(floor)
    layer_tar.unlink()
    print("load, user+sys CPU (median): " + ", ".join(
        f"{tool} {statistics.median(values):.2f} s" for tool, values in cpu.items()),
        flush=True)  # fmt: skip
    _run([*LAMINA, "--root", str(root), "load", "-i", str(archive)])  # for the saves
    snapshot = _snapshot_dir(root)  # the loaded image's: the same for every save
    for _ in range(runs):
        out = work / "out.tar"
        out.unlink(missing_ok=True)
        drop_caches()
        save.append(_save_cpu("save docker-archive", [*LAMINA, "--root", str(root), "save",
                                                      "-o", str(out), "bench/big:1"]))  # fmt: skip
        out.unlink()
        drop_caches()
        tar_c.append(_save_cpu("tar -cf | cat", ["sh", "-c", 'tar -cf - -C "$1" . | cat >/dev/null',
                                                "-", str(snapshot)]))  # fmt: skip
        drop_caches()
        parallel = 'cd "$1" && find . -type f -print0 | xargs -0 -n 500 -P 32 cat >/dev/null'
        cat_p.append(_save_cpu("xargs -P 32 cat", ["sh", "-c", parallel, "-", str(snapshot)]))
        drop_caches()
        sk_save.append(_save_cpu("skopeo copy oci: docker-archive:", [
            "skopeo", "copy", "-q", f"oci:{layout}:1", f"docker-archive:{out}:bench/big:1",
        ]))  # fmt: skip
        out.unlink()
        _run([*LAMINA, "--root", str(root), "prune"])  # no compressed blob left to reuse
        drop_caches()
        oci.append(_save_cpu("save oci-archive", [
            *LAMINA, "--root", str(root), "save", "--format", "oci-archive", "-o", str(out),
            "bench/big:1",
        ]))  # fmt: skip
        out.unlink()
        drop_caches()
        sk_oci.append(_save_cpu("skopeo copy --dest-compress", [
            "skopeo", "copy", "-q", "--dest-compress", f"oci:{layout}:1",
            f"oci-archive:{out}:1"]))  # fmt: skip
        out.unlink()
    shutil.rmtree(root, ignore_errors=True)
    save_cpu = "; ".join(f"{label} {statistics.median(c):.2f} s" for label, c in _CPU.items())
    print(f"save, user+sys CPU (median): {save_cpu}", flush=True)
    return [
        ("load docker-archive, snapshots written (cold)", load, "buildah pull docker-archive:",
         pull),
        ("save docker-archive (cold)", save, "skopeo copy oci: docker-archive:", sk_save),
        ("save oci-archive, gzip on the way out (cold)", oci,
         "skopeo copy --dest-compress oci: oci-archive:", sk_oci),
        ("floor: load beside tar -xf of its layer.tar (cold)", load, "tar -xf", untar),
        ("floor: save beside tar -cf - snapshot | cat (cold)", save, "tar -cf | cat", tar_c),
        ("floor: save beside 32 parallel cats of the snapshot (cold)", save,
         "xargs -P 32 cat", cat_p),
    ]  # fmt: skip


def run(runs: int, work: Path, *, disk: bool = True) -> list[Row]:
    """The rows of this benchmark (bench/run.py's contract); `disk=False` leaves out the
    ten-image disk workload (load and save only)."""
    archive, layout = _image(work, FILES, FILE_SIZE)
    print(f"image: {FILES} files of {FILE_SIZE} B; docker-archive "
          f"{archive.stat().st_size / 1e6:.0f} MB", flush=True)  # fmt: skip
    rows = bench_disk(work, archive) if disk else []
    return rows + bench_load_save(work, archive, layout, runs)


def main() -> None:
    global FILES, FILE_SIZE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=FILES)
    parser.add_argument("--file-size", type=int, default=FILE_SIZE)
    parser.add_argument("--skip-disk", action="store_true", help="load and save only")
    opts = parser.parse_args()
    FILES, FILE_SIZE = opts.files, opts.file_size
    work = Path(tempfile.mkdtemp(prefix="lamina-bench-lean-", dir="/var/tmp"))
    try:
        rows = run(opts.runs, work, disk=not opts.skip_disk)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'workload':<62} {'lamina':>8} {'other':>8} {'ratio':>6}  other tool")
    for name, ours, tool, theirs in rows:
        a = statistics.median(ours)
        b = statistics.median(theirs) if theirs else float("nan")
        print(f"{name:<62} {a:8.3f} {b:8.3f} {a / b:6.2f}  {tool}")
    print("\nevery run (lamina | other):")
    for name, ours, _tool, theirs in rows:
        print(f"  {name}: {' '.join(f'{x:.2f}' for x in ours)} | "
              f"{' '.join(f'{x:.2f}' for x in theirs)}")  # fmt: skip


if __name__ == "__main__":
    main()
