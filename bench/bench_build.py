"""Build benchmarks for issue 4: lamina beside `buildah bud --layers --isolation chroot`.

1. a fully cached rebuild of a 12-step Dockerfile (start-up cost matters here)
2. a cold build of `COPY . /app` from a context of 20,000 files / 400 MB
3. the rebuild after editing one file of that context
4. the re-check of the unchanged context (every step cached)
5. a RUN that writes 1 GB in 50,000 files

Both tools start from the same busybox-static image (lamina imports it; buildah pulls
it from an OCI layout lamina saved). Times are wall clock of the whole command; lamina's
peak memory is ru_maxrss of its process. Nothing here is a test.

Run: `.venv/bin/python bench/bench_build.py [--files N] [--file-size B] [--run-files N]`.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

LAMINA_CODE = "import sys; from lamina.cli import main; sys.argv[0] = 'lamina'; main()"
APPLETS = "sh ls cat id echo touch rm mkdir ln chmod stat wc sleep head tar true env".split()  # noqa: SIM905

TWELVE_STEPS = """\
FROM busybox
ENV APP=/srv/app
WORKDIR /srv/app
COPY small/ ./
RUN echo one > one.txt
RUN echo two > two.txt
LABEL purpose=bench
COPY small/a.txt /etc/a.txt
RUN mkdir -p /var/data && echo data > /var/data/x
USER app
EXPOSE 8080
CMD ["sh"]
"""


def lamina_cmd(root: Path, *args: str) -> list[str]:
    """The installed `lamina` once it has `build`; until then the CLI with it registered."""
    exe = Path(sys.executable).parent / "lamina"
    probe = subprocess.run([str(exe), "build", "--help"], capture_output=True, check=False)
    if exe.exists() and probe.returncode == 0:
        return [str(exe), "--root", str(root), *args]
    return [sys.executable, "-c", LAMINA_CODE, "--root", str(root), *args]


def timed_child(argv: list[str]) -> tuple[float, int]:
    """Wall time and ru_maxrss (KiB) of one child process."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:8])}… failed: {err.decode()[-800:]}")
    return elapsed, usage.ru_maxrss


def busybox_rootfs(path: Path) -> Path:
    (path / "bin").mkdir(parents=True)
    (path / "etc").mkdir()
    (path / "tmp").mkdir()
    os.chmod(path / "tmp", 0o1777)
    shutil.copy2("/bin/busybox", path / "bin" / "busybox")
    for applet in APPLETS:
        (path / "bin" / applet).symlink_to("busybox")
    (path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n")
    (path / "etc" / "group").write_text("root:x:0:\napp:x:1000:\n")
    return path


def make_tree(root: Path, files: int, size: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    for n in range(files):
        d = root / f"d{n // 500:03d}"
        d.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(size // 2) + (b"lamina " * (size // 14 + 1))[: size - size // 2]
        (d / f"f{n:05d}").write_bytes(data)


def make_tar(path: Path, files: int, size: int) -> None:
    with tarfile.open(path, "w") as tar:
        for n in range(files):
            info = tarfile.TarInfo(f"out/d{n // 500:03d}/f{n:05d}")
            info.size = size
            tar.addfile(info, io.BytesIO(os.urandom(size)))


def age(root: Path) -> None:
    then = time.time() - 60
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            os.utime(os.path.join(top, name), (then, then), follow_symlinks=False)
    os.utime(root, (then, then))


class Buildah:
    def __init__(self, base: Path) -> None:
        self.prefix = ["buildah", "--root", str(base / "root"), "--runroot", str(base / "run"),
                       "--storage-driver", "vfs"]  # fmt: skip

    def argv(self, *args: str) -> list[str]:
        return [*self.prefix, *args]

    def out(self, *args: str) -> str:
        done = subprocess.run(self.argv(*args), capture_output=True, text=True, check=True)
        return done.stdout

    def bud(self, tag: str, ctx: Path) -> list[str]:
        return self.argv("bud", "--layers", "--isolation", "chroot", "--pull=never", "-q",
                         "-t", tag, str(ctx))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--file-size", type=int, default=20_000)
    parser.add_argument("--run-files", type=int, default=50_000)
    parser.add_argument("--run-file-size", type=int, default=20_000)
    parser.add_argument("--tmp", type=Path, default=None, help="work dir (default: a temp dir)")
    opts = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from lamina.api import Lamina

    work = Path(tempfile.mkdtemp(prefix="lamina-bench-build-", dir=opts.tmp))
    rows: list[tuple[str, float, float, float]] = []
    peak = 0
    try:
        rootfs = busybox_rootfs(work / "rootfs")
        lam_root = work / "lamina"
        lam = Lamina(lam_root)
        lam.import_image(rootfs, "busybox")
        big = busybox_rootfs(work / "bigroot")
        make_tar(big / "data.tar", opts.run_files, opts.run_file_size)
        lam.import_image(big, "bigbase")
        lam.save(["busybox"], work / "busybox-oci", fmt="oci-dir")
        lam.save(["bigbase"], work / "bigbase-oci", fmt="oci-dir")
        lam.store.close()
        shutil.rmtree(big)
        b = Buildah(work / "buildah")
        for name in ("busybox", "bigbase"):
            image = b.out("pull", "-q", f"oci:{work / (name + '-oci')}").strip().splitlines()[-1]
            b.out("tag", image, f"docker.io/library/{name}:latest")

        def both(label: str, ours: list[str], theirs: list[str]) -> None:
            nonlocal peak
            # Each command starts with nothing left to write back from the one before.
            os.sync()
            t_ours, rss = timed_child(ours)
            peak = max(peak, rss)
            os.sync()
            t_theirs, _ = timed_child(theirs)
            rows.append((label, t_ours, t_theirs, t_ours / t_theirs))
            print(f"{label:<44} lamina {t_ours:7.2f}s  buildah {t_theirs:7.2f}s  "
                  f"ratio {t_ours / t_theirs:5.2f}  (lamina rss {rss / 1024:.0f} MiB)",
                  flush=True)  # fmt: skip

        # 1. twelve steps, fully cached
        ctx = work / "twelve"
        (ctx / "small").mkdir(parents=True)
        for n in "abc":
            (ctx / "small" / f"{n}.txt").write_text(n * 100)
        (ctx / "Dockerfile").write_text(TWELVE_STEPS)
        age(ctx)
        timed_child(lamina_cmd(lam_root, "build", "-q", "-t", "twelve", str(ctx)))
        timed_child(b.bud("twelve", ctx))
        both(
            "12-step Dockerfile, fully cached rebuild",
            lamina_cmd(lam_root, "build", "-q", "-t", "twelve", str(ctx)),
            b.bud("twelve", ctx),
        )

        # 2-4. a big context
        ctx = work / "bigctx"
        make_tree(ctx / "src", opts.files, opts.file_size)
        (ctx / "Dockerfile").write_text("FROM busybox\nCOPY src/ /app/\n")
        age(ctx)
        mb = opts.files * opts.file_size / 1e6
        both(
            f"cold COPY . /app ({opts.files} files, {mb:.0f} MB)",
            lamina_cmd(lam_root, "build", "-q", "-t", "big", str(ctx)),
            b.bud("big", ctx),
        )
        victim = ctx / "src" / "d000" / "f00000"
        victim.write_bytes(b"edited" + victim.read_bytes()[6:])
        then = time.time() - 30
        os.utime(victim, (then, then))
        both(
            "rebuild after editing one file",
            lamina_cmd(lam_root, "build", "-q", "-t", "big", str(ctx)),
            b.bud("big", ctx),
        )
        both(
            "re-check of the unchanged context",
            lamina_cmd(lam_root, "build", "-q", "-t", "big", str(ctx)),
            b.bud("big", ctx),
        )

        # 5. a RUN writing 1 GB in many files (the base's snapshot is unpacked beforehand)
        ctx = work / "runctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text("FROM bigbase\nRUN true\n")
        timed_child(lamina_cmd(lam_root, "build", "-q", str(ctx)))
        (ctx / "Dockerfile").write_text("FROM bigbase\nRUN tar -xf /data.tar -C /\n")
        gb = opts.run_files * opts.run_file_size / 1e9
        both(
            f"RUN writing {gb:.1f} GB in {opts.run_files} files",
            lamina_cmd(lam_root, "build", "-q", "-t", "run", str(ctx)),
            b.bud("run", ctx),
        )
    finally:
        subprocess.run(["umount", "-R", "-l", str(work / "buildah" / "root")],
                       capture_output=True, check=False)  # fmt: skip
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"{'workload':<44} {'lamina':>9} {'buildah':>9} {'ratio':>7}")
    for label, ours, theirs, ratio in rows:
        print(f"{label:<44} {ours:8.2f}s {theirs:8.2f}s {ratio:7.2f}")
    print(f"lamina peak memory (ru_maxrss): {peak / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
