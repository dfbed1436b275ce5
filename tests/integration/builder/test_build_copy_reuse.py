"""A COPY rebuilt after an edit hardlinks the files it copied last time whose content and
metadata are unchanged, from that committed snapshot: the layer (its tar, diff_id, file
index) is exactly the one a fresh copy gives, both snapshots stay whole, and neither
depends on the other."""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path

import pytest

from lamina.api import Lamina, build_image
from lamina.transport import open_layer_tar

# Whole builds (one under runc): `make test-fast` leaves them to `make test`.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOCKERFILE = "FROM busybox\nCOPY src/ /app/\n"
EPOCH = "1700000000"


@pytest.fixture(autouse=True)
def _fixed_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    # New directories above the destination get the build's clock as mtime; clamped, two
    # builds of the same context give the same diff_id (compared below).
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def _context(ctx: Path) -> Path:
    src = ctx / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"alpha\n" * 500)
    (src / "b.txt").write_bytes(b"bravo\n" * 500)
    (src / "sub" / "c.bin").write_bytes(os.urandom(200_000))
    (src / "empty").write_bytes(b"")
    (src / "hard1").write_bytes(b"shared\n")
    os.link(src / "hard1", src / "sub" / "hard2")
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    for top, dirs, files in os.walk(ctx):
        for name in dirs + files:
            _age(Path(top) / name, 60)
    return ctx


def _build(lam: Lamina, ctx: Path, tag: str, **opts: object) -> str:
    result = build_image(lam, ctx, tags=[tag], **opts)  # type: ignore[arg-type]
    return result.image.layers[-1].diff_id


def _snap(lam: Lamina, diff_id: str) -> Path:
    return lam.store.snapshot_path(diff_id) / "app"


def _ino(path: Path) -> int:
    return os.lstat(path).st_ino


def _members(lam: Lamina, diff_id: str) -> list[tuple[str, bytes, str]]:
    with open_layer_tar(lam.store, diff_id) as tar:
        data = tar.read()
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return [(m.name, m.type, m.linkname) for m in t.getmembers()]


def _fresh_diff_id(tmp_path: Path, busybox_rootfs: Path, ctx: Path) -> str:
    """The COPY's diff_id from a store that never built it: nothing to link from."""
    other = Lamina(tmp_path / "fresh-root")
    try:
        other.import_image(busybox_rootfs, "busybox")
        return _build(other, ctx, "fresh")
    finally:
        other.store.close()


@pytest.fixture
def ctx(context: Path) -> Path:
    return _context(context)


def test_an_edit_rebuild_links_unchanged_files_and_gives_the_fresh_copy_layer(
    lam: Lamina, ctx: Path, tmp_path: Path, busybox_rootfs: Path
) -> None:
    first = _build(lam, ctx, "v1")
    (ctx / "src" / "b.txt").write_bytes(b"BRAVO\n" * 500)
    _age(ctx / "src" / "b.txt", 50)
    second = _build(lam, ctx, "v2")
    assert second != first
    old, new = _snap(lam, first), _snap(lam, second)
    # Unchanged files: the same inode in both snapshots; the edited one: its own.
    assert _ino(new / "a.txt") == _ino(old / "a.txt")
    assert _ino(new / "sub" / "c.bin") == _ino(old / "sub" / "c.bin")
    assert _ino(new / "b.txt") != _ino(old / "b.txt")
    assert (new / "b.txt").read_bytes() == b"BRAVO\n" * 500
    assert (old / "b.txt").read_bytes() == b"bravo\n" * 500
    # A hardlink set of the context is copied afresh, still one inode within the layer.
    assert _ino(new / "hard1") == _ino(new / "sub" / "hard2") != _ino(old / "hard1")
    # The tar holds one hardlink entry, the context's own: the links between snapshots
    # never show up as hardlinks in a layer.
    links = [(n, ln) for n, t, ln in _members(lam, second) if t == tarfile.LNKTYPE]
    assert links == [("app/sub/hard2", "app/hard1")]
    assert _members(lam, second) == _members(lam, first)
    # Exactly the layer a store that never built this context makes.
    assert second == _fresh_diff_id(tmp_path, busybox_rootfs, ctx)
    # The file index of the new layer names the edited content.
    index = {e.path: e for e in lam.store.file_index.entries(second)}
    assert index["app/a.txt"].kind == "file" and index["app/a.txt"].digest
    assert (
        index["app/b.txt"].digest
        != {e.path: e for e in lam.store.file_index.entries(first)}["app/b.txt"].digest
    )
    report = lam.fsck()
    assert report.ok, report.problems


def test_removing_the_old_image_keeps_the_new_one_whole(lam: Lamina, ctx: Path) -> None:
    first = _build(lam, ctx, "v1")
    (ctx / "src" / "b.txt").write_bytes(b"changed\n")
    _age(ctx / "src" / "b.txt", 50)
    second = _build(lam, ctx, "v2")
    assert _ino(_snap(lam, second) / "a.txt") == _ino(_snap(lam, first) / "a.txt")
    lam.rmi(["v1"])
    lam.prune()
    assert not lam.store.snapshot_path(first).exists()
    assert (_snap(lam, second) / "a.txt").read_bytes() == b"alpha\n" * 500
    assert os.lstat(_snap(lam, second) / "a.txt").st_nlink == 1
    report = lam.fsck()
    assert report.ok, report.problems


def test_a_run_writing_a_linked_file_leaves_the_other_snapshot_alone(
    lam: Lamina, ctx: Path
) -> None:
    first = _build(lam, ctx, "v1")
    (ctx / "src" / "b.txt").write_bytes(b"changed\n")
    _age(ctx / "src" / "b.txt", 50)
    second = _build(lam, ctx, "v2")
    shared = _snap(lam, second) / "a.txt"
    assert _ino(shared) == _ino(_snap(lam, first) / "a.txt")
    (ctx / "Dockerfile").write_text("FROM v2\nRUN echo more >> /app/a.txt\n")
    result = build_image(lam, ctx, tags=["v3"])
    top = result.image.layers[-1].diff_id
    assert (lam.store.snapshot_path(top) / "app" / "a.txt").read_bytes() == (
        b"alpha\n" * 500 + b"more\n"
    )
    # overlayfs copied the file up: both snapshots still hold the original.
    assert (_snap(lam, first) / "a.txt").read_bytes() == b"alpha\n" * 500
    assert shared.read_bytes() == b"alpha\n" * 500
    report = lam.fsck()
    assert report.ok, report.problems


def test_changed_metadata_is_copied_not_linked(
    lam: Lamina, ctx: Path, tmp_path: Path, busybox_rootfs: Path
) -> None:
    os.utime(ctx / "src" / "b.txt", (1_600_000_000, 1_600_000_000))  # before the epoch
    first = _build(lam, ctx, "v1")
    os.chmod(ctx / "src" / "a.txt", 0o600)  # same content, another mode
    _age(ctx / "src" / "a.txt", 60)
    os.utime(ctx / "src" / "b.txt", (1_600_000_100, 1_600_000_100))  # another mtime
    second = _build(lam, ctx, "v2")
    old, new = _snap(lam, first), _snap(lam, second)
    assert _ino(new / "a.txt") != _ino(old / "a.txt")
    assert _ino(new / "b.txt") != _ino(old / "b.txt")
    assert _ino(new / "sub" / "c.bin") == _ino(old / "sub" / "c.bin")
    assert os.lstat(new / "a.txt").st_mode & 0o777 == 0o600
    assert os.lstat(old / "a.txt").st_mode & 0o777 == 0o644
    assert second == _fresh_diff_id(tmp_path, busybox_rootfs, ctx)
    report = lam.fsck()
    assert report.ok, report.problems


def test_no_cache_rebuild_keeps_the_layer_the_store_holds(lam: Lamina, ctx: Path) -> None:
    first = _build(lam, ctx, "v1")
    before = _ino(_snap(lam, first) / "a.txt")
    again = _build(lam, ctx, "v1", no_cache=True)
    assert again == first
    # The held snapshot was not replaced, and the fresh copy (links) is gone.
    assert _ino(_snap(lam, first) / "a.txt") == before
    assert os.lstat(_snap(lam, first) / "a.txt").st_nlink == 1
    leftovers = [p.name for p in lam.store.snapshots_dir.iterdir() if p.name.startswith(".tmp")]
    assert leftovers == []
    report = lam.fsck()
    assert report.ok, report.problems
