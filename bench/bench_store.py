"""Store benchmarks for issue 2, lamina beside skopeo and buildah in one run.

1. load and save of a ~400 MB, 20,000-file image, beside `skopeo copy docker-archive: oci:`
2. ten images on one base, each adding a small layer: how much the store grows against
   the base and the ten small layers stored once each (is the base ever stored twice?)
3. the store's bytes on disk ÷ the uncompressed content, lamina and buildah

Run: `make bench` (all benchmarks) or `.venv/bin/python bench/bench_store.py [--runs N]`;
LAMINA_BENCH_SCALE=0.05 makes the images 20 times smaller. Nothing here is a test.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

from _bench import SRC, Row, scaled, script_main, timed

LAMINA = [sys.executable, "-m", "lamina"]


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
    return timed([*LAMINA, "--root", str(root), *args])


def run(runs: int, work: Path) -> list[Row]:
    """Load and save beside skopeo; the sharing ratios are printed (they are not times)."""
    files, size = scaled(20_000), 20_000
    tree = work / "tree"
    content = make_tree(tree, files, size)
    src_root = work / "src-root"
    lamina(src_root, "import", str(tree), "bench/big:1")
    shutil.rmtree(tree)
    archive = work / "big.tar"
    lamina(src_root, "save", "-o", str(archive), "bench/big:1")
    print(
        f"store: image of {files} files, {content / 1e6:.0f} MB; "
        f"docker-archive {archive.stat().st_size / 1e6:.0f} MB",
        flush=True,
    )
    load: list[float] = []
    skopeo_in: list[float] = []
    save: list[float] = []
    skopeo_out: list[float] = []
    save_gz: list[float] = []
    for n in range(runs):
        root, oci = work / f"load-root-{n}", work / f"skopeo-oci-{n}"
        load.append(lamina(root, "load", "-i", str(archive)))
        skopeo = ["skopeo", "copy", "-q"]
        skopeo_in.append(timed([*skopeo, f"docker-archive:{archive}", f"oci:{oci}:big"]))
        save.append(lamina(root, "save", "-o", str(work / f"again-{n}.tar"), "bench/big:1"))
        back = work / f"sk-{n}.tar"
        skopeo_out.append(timed([*skopeo, f"oci:{oci}:big", f"docker-archive:{back}"]))
        save_gz.append(lamina(src_root, "save", "-o", str(work / f"gz-{n}.tar"), "bench/big:1"))
        for path in (root, oci, work / f"again-{n}.tar", back, work / f"gz-{n}.tar"):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    for name, value in bench_sharing(work):
        print(f"store: {name}: {value}", flush=True)
    return [
        ("load docker-archive (vs skopeo copy docker-archive: oci:)", load, "skopeo", skopeo_in),
        ("save a loaded image (vs skopeo copy oci: docker-archive:)", save, "skopeo", skopeo_out),
        ("save an imported (gzip) image", save_gz, "", []),
    ]


def bench_sharing(work: Path) -> list[tuple[str, str]]:
    root = work / "share-root"
    base = work / "base"
    make_tree(base, scaled(2000), 20_000, seed=2)
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
    # What each distinct layer costs stored once: its blob plus its snapshot.
    sys.path.insert(0, str(SRC))
    from lamina.api import Lamina

    api = Lamina(root)
    layers = {layer.digest: layer for image in api.store.list_images() for layer in image.layers}
    once = 0
    for layer in layers.values():
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
        ("store growth ÷ (base + 10 small layers stored once)", f"{growth_ratio:.3f}"),
        (
            "bytes on disk ÷ uncompressed content, lamina vs buildah",
            f"{ratio_disk:.3f} vs {buildah_ratio(work, base):.3f}",
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
        timed([*common, "copy", ctr, str(base), "/"])
        timed([*common, "commit", "-q", ctr, "localhost/base:1"])
        for n in range(10):
            extra = work / f"own-{n}.txt"
            extra.write_bytes(os.urandom(50_000))
            content += 50_000
            c = subprocess.run(
                [*common, "from", "localhost/base:1"], capture_output=True, text=True, check=True
            ).stdout.strip()
            timed([*common, "copy", c, str(extra), "/"])
            timed([*common, "commit", "-q", c, f"localhost/child:{n}"])
        timed([*common, "rm", "--all"])
        return disk_usage(storage / "root") / content
    finally:
        subprocess.run([*common, "rm", "--all"], capture_output=True, check=False)
        subprocess.run(
            ["umount", "-R", str(storage / "root" / "overlay")], capture_output=True, check=False
        )


if __name__ == "__main__":
    script_main(run, __doc__ or "")
