"""Store benchmarks for issue 2, lamina beside skopeo and buildah in one run.

1. load and save of a ~400 MB, 20,000-file image, beside `skopeo copy docker-archive: oci:`
2. ten images on one base, each adding a small layer: how much the store grows against
   the base and the ten small layers stored once each (is the base ever stored twice?)
3. the store's bytes on disk ÷ the uncompressed content, lamina and buildah

Run: `make bench` or `.venv/bin/python bench/bench_store.py [--files N] [--file-size B]`.
Prints one table; nothing here is a test.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAMINA = [sys.executable, "-m", "lamina"]


def run(argv: list[str], env: dict[str, str] | None = None) -> float:
    """Run a command to completion; return its wall time in seconds."""
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{argv[:4]}… failed: {done.stderr.strip()[-500:]}")
    return elapsed


def disk_usage(path: Path) -> int:
    """Bytes allocated under `path`, each inode once (hard links shared)."""
    st = os.lstat(path)
    if not os.path.isdir(path):
        return st.st_blocks * 512
    seen: set[tuple[int, int]] = set()
    total = st.st_blocks * 512
    for top, dirs, files in os.walk(path):
        for name in dirs + files:
            st = os.lstat(os.path.join(top, name))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def make_tree(root: Path, files: int, size: int, seed: int = 1) -> int:
    rng = random.Random(seed)
    per_dir = 500
    total = 0
    for n in range(files):
        d = root / f"d{n // per_dir:03d}"
        d.mkdir(parents=True, exist_ok=True)
        # Half random, half text-like: layers of real images compress about 2:1.
        data = rng.randbytes(size // 2) + (b"lamina " * (size // 14 + 1))[: size - size // 2]
        (d / f"f{n:05d}").write_bytes(data)
        total += len(data)
    return total


def lamina(root: Path, *args: str) -> float:
    return run([*LAMINA, "--root", str(root), *args])


def bench_load_save(work: Path, files: int, size: int) -> list[tuple[str, float, float]]:
    tree = work / "tree"
    content = make_tree(tree, files, size)
    src_root = work / "src-root"
    lamina(src_root, "import", str(tree), "bench/big:1")
    archive = work / "big.tar"
    t_save = lamina(src_root, "save", "-o", str(archive), "bench/big:1")
    t_load = lamina(work / "load-root", "load", "-i", str(archive))
    t_skopeo = run(
        ["skopeo", "copy", "-q", f"docker-archive:{archive}", f"oci:{work / 'skopeo-oci'}:big"]
    )
    t_save_back = lamina(work / "load-root", "save", "-o", str(work / "again.tar"), "bench/big:1")
    t_skopeo_back = run(
        [
            "skopeo",
            "copy",
            "-q",
            f"oci:{work / 'skopeo-oci'}:big",
            f"docker-archive:{work / 'sk.tar'}",
        ]
    )
    print(
        f"image: {files} files, {content / 1e6:.0f} MB; "
        f"docker-archive {archive.stat().st_size / 1e6:.0f} MB"
    )
    shutil.rmtree(tree)
    return [
        ("load docker-archive (vs skopeo copy docker-archive: oci:)", t_load, t_skopeo),
        (
            "save docker-archive of a loaded image (vs skopeo copy oci: docker-archive:)",
            t_save_back,
            t_skopeo_back,
        ),
        ("save docker-archive of an imported gzip image", t_save, float("nan")),
    ]


def bench_sharing(work: Path) -> list[tuple[str, float, float]]:
    root = work / "share-root"
    base = work / "base"
    make_tree(base, 2000, 20_000, seed=2)
    lamina(root, "import", str(base), "bench/base:1")
    tree = work / "child"
    for n in range(10):
        if tree.exists():
            shutil.rmtree(tree)
        shutil.copytree(base, tree, symlinks=True)
        (tree / f"own-{n}.txt").write_bytes(os.urandom(50_000))
        lamina(root, "import", "--base", "bench/base:1", str(tree), f"bench/child:{n}")
    empty = work / "empty-root"
    lamina(empty, "images")
    store_bytes = disk_usage(root) - disk_usage(empty)
    # What each distinct layer costs stored once: its snapshot (and a blob, if kept).
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from lamina.api import Lamina

    api = Lamina(root)
    layers = {layer.digest: layer for image in api.store.list_images() for layer in image.layers}
    once = 0
    for layer in layers.values():
        if api.store.content.has(layer.digest):  # the lean store keeps no layer blob
            once += disk_usage(api.store.content.path(layer.digest))
        snap = api.store.snapshot_path(layer.diff_id)
        if snap.exists():
            once += disk_usage(snap)
    content = sum(layer.uncompressed_size or 0 for layer in layers.values())
    ratio_disk = disk_usage(root) / content
    api.store.close()
    # The whole store (less an empty store's db) against each distinct layer stored once:
    # configs, manifests and metadata are what may push it past 1.0.
    growth_ratio = store_bytes / once
    print(
        f"ten images on one base: {len(layers)} distinct layers, "
        f"store {disk_usage(root) / 1e6:.1f} MB, "
        f"content {content / 1e6:.1f} MB"
    )
    return [
        ("store growth ÷ (base + 10 small layers stored once)", growth_ratio, float("nan")),
        (
            "store bytes on disk ÷ uncompressed content (lamina)",
            ratio_disk,
            buildah_ratio(work, base),
        ),
    ]


def buildah_ratio(work: Path, base: Path) -> float:
    """buildah's storage ÷ content for the same ten images (overlay driver)."""
    storage = work / "buildah"
    common = ["buildah", "--root", str(storage / "root"), "--runroot", str(storage / "run")]
    content = sum(f.stat().st_size for f in base.rglob("*") if f.is_file())
    try:
        ctr = subprocess.run(
            [*common, "from", "scratch"], capture_output=True, text=True, check=True
        ).stdout.strip()
        run([*common, "copy", ctr, str(base), "/"])
        run([*common, "commit", "-q", ctr, "localhost/base:1"])
        for n in range(10):
            extra = work / f"own-{n}.txt"
            extra.write_bytes(os.urandom(50_000))
            content += 50_000
            c = subprocess.run(
                [*common, "from", "localhost/base:1"], capture_output=True, text=True, check=True
            ).stdout.strip()
            run([*common, "copy", c, str(extra), "/"])
            run([*common, "commit", "-q", c, f"localhost/child:{n}"])
        run([*common, "rm", "--all"])
        return disk_usage(storage / "root") / content
    finally:
        subprocess.run([*common, "rm", "--all"], capture_output=True, check=False)
        subprocess.run(
            ["umount", "-R", str(storage / "root" / "overlay")], capture_output=True, check=False
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--file-size", type=int, default=20_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lamina-bench-", dir="/var/tmp"))
    try:
        rows = bench_load_save(work, args.files, args.file_size) + bench_sharing(work)
    finally:
        subprocess.run(
            ["umount", "-R", str(work / "buildah" / "root" / "overlay")],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'workload':<78} {'lamina':>9} {'other':>9} {'ratio':>7}")
    for name, ours, theirs in rows:
        ratio = ours / theirs if theirs == theirs and theirs else float("nan")
        print(f"{name:<78} {ours:>9.3f} {theirs:>9.3f} {ratio:>7.2f}")


if __name__ == "__main__":
    main()
