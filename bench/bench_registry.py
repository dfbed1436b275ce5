"""Registry benchmarks for issue 8: lamina beside `skopeo copy` and `buildah pull`, against
the same local docker-registry (Debian's CNCF distribution) in one run.

1. push of a 5-layer image (300 MB of files, ~150 MiB of gzip layers) into an empty registry
   (lamina push from its store; skopeo copy from an OCI layout holding the same blobs).
   The store was loaded without --keep-blobs, so lamina's first push gzips each layer from
   its snapshot (deterministically, cached); the later runs send the cached blobs.
2. pull into an empty store including unpacking (lamina pull, which unpacks every layer
   into its snapshot, then mount; buildah pull into empty vfs storage, which unpacks too)
3. the second push after a change of the top layer (both tools send only that layer);
   (the bytes lamina sent minus the config's size) ÷ that layer's size is printed: 1.00 means
   nothing else went. The sizes are those of the manifest lamina pushed, read back from the
   registry: loaded without --keep-blobs, lamina sends each layer compressed its own way
   (deterministically), not as the layout's blob. The ratio is also printed for a store
   loaded with --keep-blobs, which sends the layout's blobs as they are.

Each run starts a fresh registry (new storage, new port) so nothing is known or mounted.
Run: `.venv/bin/python bench/bench_registry.py [--runs N]`. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import Row, scale, summary, timed

LAYERS = 5
LAYER_BYTES = 60 << 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Registry:
    """A docker-registry on 127.0.0.1 with its storage in `base`."""

    def __init__(self, base: Path) -> None:
        base.mkdir(parents=True)
        self.base = base
        self.host = f"127.0.0.1:{_free_port()}"
        (base / "config.yml").write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {base / 'storage'}\n"
            f"http:\n  addr: {self.host}\n  secret: {secrets.token_hex(8)}\n"
        )
        self.process = subprocess.Popen(
            ["docker-registry", "serve", str(base / "config.yml")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        host, port = self.host.split(":")
        for _ in range(400):
            try:
                with socket.create_connection((host, int(port)), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("docker-registry did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.base, ignore_errors=True)


def _layer(seed: int, size: int) -> tuple[bytes, bytes]:
    """(plain tar, gzip of it): files half random, half text, as real layers compress."""
    rng = random.Random(seed)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        per_file = 1 << 20
        for n in range(max(1, size // per_file)):
            data = rng.randbytes(per_file // 2) + b"lamina " * (per_file // 14)
            info = tarfile.TarInfo(f"layer{seed}/f{n:04d}")
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    plain = out.getvalue()
    return plain, gzip.compress(plain, compresslevel=1, mtime=0)


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_layout(path: Path, tag: str, seeds: list[int], size: int) -> None:
    """An OCI layout holding one image of `seeds` layers (added to what `path` holds)."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    layers, diff_ids = [], []
    for seed in seeds:
        plain, packed = _layer(seed, size)
        (blobs / _sha(packed)[7:]).write_bytes(packed)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": _sha(packed), "size": len(packed)})  # fmt: skip
        diff_ids.append(_sha(plain))
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()  # fmt: skip
    (blobs / _sha(config)[7:]).write_bytes(config)
    manifest = json.dumps({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _sha(config), "size": len(config)},
        "layers": layers}).encode()  # fmt: skip
    (blobs / _sha(manifest)[7:]).write_bytes(manifest)
    index_path = path / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {
        "schemaVersion": 2, "manifests": []}  # fmt: skip
    index["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": _sha(manifest), "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag}})  # fmt: skip
    index_path.write_text(json.dumps(index))
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')


def lamina(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "lamina", "--root", str(root), *args]


def _env(work: Path) -> dict[str, str]:
    home = work / "home"
    (home / ".docker").mkdir(parents=True, exist_ok=True)
    (home / ".docker" / "config.json").write_text('{"auths": {}}')
    env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}
    # An installed lamina starts from cached bytecode (pip compiles it); this machine's
    # environment forbids writing it, which would add the compiling of every module to
    # each command measured here.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _pushed_manifest(host: str, repository: str, tag: str) -> dict[str, Any]:
    """The manifest a registry holds under `repository:tag`, read straight from it."""
    accept = ("application/vnd.oci.image.manifest.v1+json, "
              "application/vnd.docker.distribution.manifest.v2+json")  # fmt: skip
    request = urllib.request.Request(
        f"http://{host}/v2/{repository}/manifests/{tag}", headers={"Accept": accept}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        doc: dict[str, Any] = json.loads(answer.read())
    return doc


def _sent_ratio(progress: str, host: str, repository: str = "bench/app") -> float:
    """(bytes lamina uploaded minus the config's size) ÷ the top layer's size, both as the
    registry holds them after the second push (`progress`: its JSON lines). 1.00 means
    only that layer and the config travelled; any other blob sent counts above 1."""
    sent = sum(json.loads(line)["bytes"] for line in progress.splitlines()
               if line.startswith("{") and '"uploading"' in line)  # fmt: skip
    second = _pushed_manifest(host, repository, "v2")
    first = _pushed_manifest(host, repository, "v1")
    changed = [d for d in second["layers"] if d["digest"] not in
               {layer["digest"] for layer in first["layers"]}]  # fmt: skip
    if len(changed) != 1 or changed[0] != second["layers"][-1]:
        raise SystemExit(f"second push: expected only the top layer to differ, got {changed}")
    return float(sent - second["config"]["size"]) / changed[0]["size"]


def run(runs: int, work: Path) -> list[Row]:
    size = max(1 << 20, int(LAYER_BYTES * scale()))
    env = _env(work)
    layout = work / "layout"
    write_layout(layout, "v1", [1, 2, 3, 4, 5], size)
    write_layout(layout, "v2", [1, 2, 3, 4, 6], size)
    store = work / "store"
    timed(lamina(store, "load", "-i", str(layout)), env)  # both images, as stored in the layout
    kept = work / "store-kept"  # the same, keeping the layout's compressed blobs
    timed(lamina(kept, "load", "--keep-blobs", "-i", str(layout)), env)
    idx = json.loads((layout / "index.json").read_text())["manifests"]
    by_tag = {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"] for m in idx}
    blobs = layout / "blobs" / "sha256"
    v1 = json.loads((blobs / by_tag["v1"][7:]).read_bytes())
    total = sum(layer["size"] for layer in v1["layers"])
    print(f"registry: image of {LAYERS} layers, {total / 2**20:.0f} MiB of gzip", flush=True)

    push_ours: list[float] = []
    push_theirs: list[float] = []
    second_ours: list[float] = []
    second_theirs: list[float] = []
    sent_ratio: list[float] = []
    kept_ratio: list[float] = []
    for n in range(runs):
        for tool in ("lamina", "skopeo") if n % 2 == 0 else ("skopeo", "lamina"):
            reg = Registry(work / f"registry-{tool}-{n}")
            try:
                ref = f"{reg.host}/bench/app"
                if tool == "lamina":
                    push_ours.append(timed(lamina(store, "push", "-q", by_tag["v1"], f"{ref}:v1"),
                                           env))  # fmt: skip
                    started = time.perf_counter()
                    done = subprocess.run(
                        lamina(store, "push", "--progress", "json", by_tag["v2"], f"{ref}:v2"),
                        env=env, capture_output=True, text=True, check=True,
                    )  # fmt: skip
                    second_ours.append(time.perf_counter() - started)
                    sent_ratio.append(_sent_ratio(done.stdout, reg.host))
                    # The same with a store that kept the layout's blobs: what it sends is
                    # the layout's own top layer.
                    timed(lamina(kept, "push", "-q", by_tag["v1"], f"{ref}-kept:v1"), env)
                    done = subprocess.run(
                        lamina(kept, "push", "--progress", "json", by_tag["v2"],
                               f"{ref}-kept:v2"),
                        env=env, capture_output=True, text=True, check=True,
                    )  # fmt: skip
                    kept_ratio.append(_sent_ratio(done.stdout, reg.host, "bench/app-kept"))
                else:
                    skopeo = ["skopeo", "--insecure-policy", "copy", "-q",
                              "--dest-tls-verify=false"]  # fmt: skip
                    push_theirs.append(timed([*skopeo, f"oci:{layout}:v1", f"docker://{ref}:v1"],
                                             env))  # fmt: skip
                    second_theirs.append(
                        timed([*skopeo, f"oci:{layout}:v2", f"docker://{ref}:v2"], env)
                    )
            finally:
                reg.stop()

    pull_ours: list[float] = []
    pull_theirs: list[float] = []
    reg = Registry(work / "registry-pull")
    try:
        ref = f"{reg.host}/bench/app:v1"
        timed(["skopeo", "--insecure-policy", "copy", "-q", "--dest-tls-verify=false",
               f"oci:{layout}:v1", f"docker://{ref}"], env)  # fmt: skip
        for n in range(runs):
            for tool in ("lamina", "buildah") if n % 2 == 0 else ("buildah", "lamina"):
                base = Path(tempfile.mkdtemp(prefix=f"pull-{tool}-", dir=work))
                if tool == "lamina":
                    mnt = base / "mnt"
                    mnt.mkdir()
                    started = time.perf_counter()
                    timed(lamina(base / "root", "pull", "-q", ref), env)
                    timed(lamina(base / "root", "mount", ref, str(mnt)), env)
                    pull_ours.append(time.perf_counter() - started)
                    timed(lamina(base / "root", "umount", str(mnt)), env)
                else:
                    pull_theirs.append(timed(["buildah", "--root", str(base / "root"),
                        "--runroot", str(base / "run"), "--storage-driver", "vfs", "pull",
                        "-q", "--tls-verify=false", f"docker://{ref}"], env))  # fmt: skip
                    subprocess.run(["buildah", "--root", str(base / "root"), "--runroot",
                                    str(base / "run"), "--storage-driver", "vfs", "rmi", "-a",
                                    "-f"], env=env, capture_output=True, check=False)  # fmt: skip
                shutil.rmtree(base, ignore_errors=True)
    finally:
        reg.stop()

    print(f"registry: push {summary(push_ours)}s vs skopeo {summary(push_theirs)}s; pull+unpack "
          f"{summary(pull_ours)}s vs buildah {summary(pull_theirs)}s; second push sent "
          f"{', '.join(f'{r:.3f}' for r in sent_ratio)} x the changed layer as pushed "
          f"({', '.join(f'{r:.3f}' for r in kept_ratio)} from a store loaded with "
          "--keep-blobs)", flush=True)
    return [
        (f"push, {LAYERS} layers, {total // 2**20} MiB, empty registry", push_ours,
         "skopeo copy", push_theirs),
        ("pull into an empty store, with unpacking", pull_ours, "buildah pull (vfs)",
         pull_theirs),
        ("second push after a top-layer change", second_ours, "skopeo copy", second_theirs),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args()
    from _bench import table

    work = Path(tempfile.mkdtemp(prefix="lamina-bench-registry-", dir="/var/tmp"))
    try:
        print(table(run(opts.runs, work)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
