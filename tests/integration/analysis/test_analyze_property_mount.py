"""The property, against the real merged tree: for random layer stacks (files, dirs,
hardlinks, whiteouts, opaque dirs) loaded from a docker-archive, the live bytes the
index reports equal the regular-file bytes `lamina mount` shows (each inode once), and
live + wasted equals the sum of the layers' regular-file bytes. Also: load indexes each
layer in the pass that stores it, and an old store is indexed on first use."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamina.api import Lamina

pytestmark = pytest.mark.integration

NAMES = ["a", "b", "a/x", "a/y", "b/z", "a/x/q"]
Op = tuple[str, str, int]
op = st.tuples(st.sampled_from(["file", "dir", "whiteout", "opaque", "link"]),
               st.sampled_from(NAMES), st.integers(0, 3000))  # fmt: skip


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _layer_tar(ops: list[Op], seed: int) -> tuple[bytes, int]:
    """A layer tar for `ops` (invalid combinations skipped), and its regular-file bytes."""
    kinds: dict[str, str] = {}
    members: list[tuple[tarfile.TarInfo, bytes]] = []
    files: list[str] = []
    file_bytes = 0

    def add(name: str, kind: str, data: bytes = b"", target: str = "") -> None:
        info = tarfile.TarInfo(name)
        info.mode = 0o755 if kind == "dir" else 0o644
        info.type = {"dir": tarfile.DIRTYPE, "file": tarfile.REGTYPE,
                     "link": tarfile.LNKTYPE}[kind]  # fmt: skip
        info.size = len(data)
        info.linkname = target
        members.append((info, data))

    def ensure_dirs(path: str) -> bool:
        for parent in _parents(path):
            if kinds.get(parent, "dir") != "dir":
                return False
        for parent in _parents(path):
            if parent not in kinds:
                kinds[parent] = "dir"
                add(parent, "dir")
        return True

    add(f"layer-{seed}", "dir")  # no two layers alike (seed differs per layer)
    for i, (kind, path, size) in enumerate(ops):
        if path in kinds or not ensure_dirs(path):
            continue
        if kind == "file":
            data = hashlib.sha256(f"{seed}-{i}".encode()).digest() * (size // 32 + 1)
            add(path, "file", data[:size])
            kinds[path] = "file"
            files.append(path)
            file_bytes += size
        elif kind == "dir":
            kinds[path] = "dir"
            add(path, "dir")
        elif kind == "whiteout":
            kinds[path] = "whiteout"
            head, _, base = path.rpartition("/")
            add(f"{head}/.wh.{base}" if head else f".wh.{base}", "file")
        elif kind == "opaque":
            kinds[path] = "dir"
            add(path, "dir")
            add(f"{path}/.wh..wh..opq", "file")
        elif files and files[0] != path:
            kinds[path] = "link"
            add(path, "link", target=files[0])
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return out.getvalue(), file_bytes


def write_archive(path: Path, tag: str, layers: list[bytes]) -> None:
    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"/bin/sh -c step {i}"} for i in range(len(layers))],
    }).encode()  # fmt: skip
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    names = [f"{d[7:]}/layer.tar" for d in diff_ids]
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": names}]).encode()
    members = dict([("manifest.json", manifest), (config_name, config),
                    *zip(names, layers, strict=True)])  # fmt: skip
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():  # the same layer twice is one member
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def merged_file_bytes(root: Path) -> int:
    seen: dict[tuple[int, int], int] = {}
    for top, _dirs, names in os.walk(root):
        for name in names:
            try:
                st_ = os.lstat(os.path.join(top, name))
            except FileNotFoundError:
                continue  # overlayfs lists a bottom layer's whiteout but shows no entry
            if stat.S_ISREG(st_.st_mode):
                seen[(st_.st_dev, st_.st_ino)] = st_.st_size
    return sum(seen.values())


_SLOW_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@settings(max_examples=40, deadline=None, suppress_health_check=_SLOW_OK)
@given(stack=st.lists(st.lists(op, max_size=7), min_size=1, max_size=4), seed=st.integers(0, 9))
def test_live_bytes_are_what_mount_shows(lam: Lamina, tmp_path: Path,
                                         stack: list[list[Op]], seed: int) -> None:  # fmt: skip
    built = [_layer_tar(ops, seed * 100 + i) for i, ops in enumerate(stack)]
    archive = tmp_path / "prop.tar"
    write_archive(archive, "prop:latest", [data for data, _ in built])
    lam.load(archive)
    report, _ = lam.analyze("prop")
    assert report.totals.live_bytes + report.totals.wasted_bytes == sum(n for _, n in built)
    target = tmp_path / "mnt"
    target.mkdir(exist_ok=True)
    lam.mount("prop", target)
    try:
        shown = merged_file_bytes(target)
    finally:
        lam.umount(target)
    assert report.totals.live_bytes == shown


def test_load_indexes_each_layer_in_the_pass_that_stores_it(
    lam: Lamina, tmp_path: Path, build: Callable[..., str]
) -> None:
    build("FROM busybox\nRUN head -c 4000 /dev/zero > /x\nRUN rm /x\n", "app")
    archive = tmp_path / "app.tar"
    lam.save(["app"], archive)
    other = Lamina(tmp_path / "other-root")
    try:
        other.load(archive)
        image = other.resolve("app")
        assert all(other.store.file_index.has(layer.diff_id) for layer in image.layers)
        calls: list[int] = []
        report, _ = other.analyze("app", progress=lambda done, total, d: calls.append(total))
        assert calls == []  # nothing left to index
        assert report.totals.wasted_bytes == 4000
        # No build recorded the lines here: the history's created_by stands in.
        assert "rm /x" in report.lines[0].instruction and report.lines[0].line == ""
    finally:
        other.store.close()


def test_an_old_store_is_indexed_on_first_use_with_progress(
    lam: Lamina, build: Callable[..., str]
) -> None:
    build("FROM busybox\nRUN head -c 4000 /dev/zero > /x\nRUN rm /x\n", "app")
    expected, _ = lam.analyze("app")
    lam.store.close()
    # Make it a store from before the index: schema version 2, no tables of later
    # migrations (the index's, then the registry's).
    with sqlite3.connect(lam.root / "metadata.db") as db:
        for table in ("layer_files", "layer_index", "layer_origins", "image_bases",
                      "registry_blobs", "registry_uploads"):  # fmt: skip
            db.execute(f"DROP TABLE {table}")
        db.execute("PRAGMA user_version = 2")
    reopened = Lamina(lam.root)
    try:
        calls: list[tuple[int, int]] = []
        report, _ = reopened.analyze("app", progress=lambda d, t, _id: calls.append((d, t)))
        assert calls[0] == (0, 3) and calls[-1] == (3, 3)
        assert report.totals == expected.totals
        assert report.hidden == expected.hidden
    finally:
        reopened.store.close()
