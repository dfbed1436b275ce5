"""Archives and `lamina` runs for the CLI tests of load and import: tars made in memory
(`tar`, `tar_file`, `docker_archive`), the command run as a user runs it (`lamina`), and
the check that a refused input changed nothing (`assert_refused`)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path


def tar(members: Sequence[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def tar_file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    return info, data


def docker_archive(layers: list[bytes], tags: list[str]) -> bytes:
    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()  # fmt: skip
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    names = [f"{n}/layer.tar" for n in range(len(layers))]
    manifest = [{"Config": config_name, "RepoTags": tags, "Layers": names}]
    members = [tar_file(n, layer) for n, layer in zip(names, layers, strict=True)]
    members += [tar_file(config_name, config),
                tar_file("manifest.json", json.dumps(manifest).encode())]  # fmt: skip
    return tar(members)


def lamina(
    root: Path, *args: str, stdin: int | bytes | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "lamina", "--root", str(root), *args],
        input=stdin if isinstance(stdin, bytes) else None,
        stdin=stdin if isinstance(stdin, int) else subprocess.DEVNULL if stdin is None else None,
        capture_output=True, check=False,
    )  # fmt: skip
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def scratch_entries(root: Path) -> list[str]:
    found = []
    for place in ("tmp", "snapshots", "ingest"):
        if (root / place).is_dir():
            names = os.listdir(root / place)
            found += [f"{place}/{n}" for n in names if n.startswith((".tmp", "load"))]
    return found


def assert_refused(root: Path, done: subprocess.CompletedProcess[str], images: str) -> None:
    assert done.returncode == 1, done.stderr
    first, *rest = done.stderr.strip().splitlines()  # one error line, and a hint maybe
    assert first.startswith("Error: ") and all(r.startswith("hint: ") for r in rest), done.stderr
    assert lamina(root, "images", "--no-trunc").stdout == images
    fsck = lamina(root, "fsck")
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert scratch_entries(root) == []


GOOD = docker_archive([tar([tar_file("etc/hello", b"hi\n")])], ["good:1"])


def zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)
