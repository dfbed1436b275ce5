"""COPY's layer copied straight into its snapshot (commit_copy_layer) is the layer the
tar-then-apply path (commit_changes_layer) makes: same diff_id, same tar-split record,
same file index, same snapshot tree."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from xattr_probe import xattrs_supported

from lamina.errors import LaminaError
from lamina.layers import Change, ChangeKind, changes_from_dir, sort_changes
from lamina.store import LayerRecord, Store, open_store
from lamina.transport import commit_changes_layer, commit_copy_layer, verify_layer

MTIME = 1_600_000_000_123_456_789


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    old, new = open_store(tmp_path / "old"), open_store(tmp_path / "new")
    yield old, new
    old.close()
    new.close()


def make_context(ctx: Path) -> bool:
    """Files, dirs, symlinks, hardlinks, empty and sparse files, long and non-ASCII names,
    setuid bits, xattrs where the file system has them. Returns whether it has xattrs."""
    (ctx / "src" / "sub" / "deeper").mkdir(parents=True)
    src = ctx / "src"
    (src / "a.txt").write_bytes(b"alpha\n" * 1000)
    (src / "empty").write_bytes(b"")
    (src / "sub" / "big.bin").write_bytes(os.urandom(3 << 20) + b"tail")
    (src / "sub" / "deeper" / "x").write_bytes(b"x")
    (src / "hard1").write_bytes(b"shared content\n")
    os.link(src / "hard1", src / "sub" / "hard2")
    (src / "link").symlink_to("a.txt")
    (src / "sub" / "longlink").symlink_to("t" * 150)  # a PAX linkpath
    (src / "dangling").symlink_to("/nowhere/at/all")
    long_dir = src / ("d" * 120) / ("e" * 90)
    long_dir.mkdir(parents=True)
    (long_dir / ("f" * 200)).write_bytes(b"long name\n")  # a PAX path
    (src / "naïve-ünïcode").write_bytes(b"utf-8 name\n")
    (src / "suid").write_bytes(b"#!/bin/sh\n")
    os.chmod(src / "suid", 0o4755)
    (src / "private").write_bytes(b"secret\n")
    os.chmod(src / "private", 0o600)
    with open(src / "sparse", "wb") as f:
        f.seek(64 << 20)
        f.write(b"end")
    xattrs = xattrs_supported(src)
    if xattrs:
        os.setxattr(src / "a.txt", "user.mime", b"text/plain")
        os.setxattr(src / "sub", "user.dir", b"yes")
    for top, dirs, files in os.walk(src):
        for name in dirs + files:
            os.utime(os.path.join(top, name), ns=(MTIME, MTIME), follow_symlinks=False)
    os.utime(src, ns=(MTIME, MTIME))
    return xattrs


def _owned(st: os.stat_result, uid: int, gid: int, mode: int | None = None) -> os.stat_result:
    reduced: Any = st.__reduce__()
    fields, hidden = reduced[1]
    values = list(fields)
    if mode is not None:
        values[0] = stat.S_IFMT(st.st_mode) | mode
    values[4], values[5] = uid, gid
    return os.stat_result(values, hidden)


def copy_changes(ctx: Path, staging: Path) -> list[Change]:
    """What COPY src/ /app/ hands the commit: the dirs above the destination made in the
    staging dir, each context entry described where it is (owner replaced, as --chown)."""
    (staging / "app").mkdir(parents=True)
    os.chmod(staging / "app", 0o755)
    entries: dict[str, Change] = {}
    src = ctx / "src"
    for top, dirs, files in os.walk(src):
        for name in dirs + files:
            path = os.path.join(top, name)
            rel = "app/" + os.path.relpath(path, src)
            st = os.lstat(path)
            mode = None if stat.S_ISLNK(st.st_mode) or name != "private" else 0o640
            entries[rel] = Change(rel, ChangeKind.ADD, path, _owned(st, 1000, 1001, mode))
    # The destination dir itself comes from the context too (its metadata wins).
    entries["app"] = Change("app", ChangeKind.ADD, str(src), _owned(os.lstat(src), 1000, 1001))
    merged = {c.path: c for c in changes_from_dir(staging)}
    merged.update(entries)
    return sort_changes(list(merged.values()))


def tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """Everything a mount of the snapshot shows, hardlinks as groups."""
    out: dict[str, tuple[Any, ...]] = {}
    inodes: dict[int, str] = {}
    for top, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = os.path.join(top, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            xattrs = tuple(
                sorted((n, os.getxattr(path, n, follow_symlinks=False))
                       for n in os.listxattr(path, follow_symlinks=False))
            )  # fmt: skip
            if stat.S_ISREG(st.st_mode):
                body = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                group = inodes.setdefault(st.st_ino, rel)
            elif stat.S_ISLNK(st.st_mode):
                body, group = os.readlink(path), rel
            else:
                body, group = "", rel
            out[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_size,
                        body, group, xattrs)  # fmt: skip
    return out


def commit_both(
    stores: tuple[Store, Store], ctx: Path, sde: int | None
) -> tuple[LayerRecord, LayerRecord]:
    old_store, new_store = stores
    old_changes = copy_changes(ctx, Path(tempfile.mkdtemp(dir=old_store.snapshots_dir)))
    with old_store.lease() as lease:
        old = commit_changes_layer(old_store, lease, old_changes, source_date_epoch=sde)
    staging = Path(tempfile.mkdtemp(dir=new_store.snapshots_dir))
    new_changes = copy_changes(ctx, staging)
    with new_store.lease() as lease:
        new = commit_copy_layer(new_store, lease, staging, new_changes, source_date_epoch=sde)
    return old, new


@pytest.mark.parametrize("sde", [None, 1_500_000_000])
def test_copy_straight_into_the_snapshot_gives_the_tar_of_the_tar_then_apply_path(
    stores: tuple[Store, Store], tmp_path: Path, sde: int | None
) -> None:
    has_xattrs = make_context(tmp_path / "ctx")
    old, new = commit_both(stores, tmp_path / "ctx", sde)
    old_store, new_store = stores

    assert new == old  # diff_id, size, media type
    assert (
        new_store.record_path(new.diff_id).read_bytes()
        == old_store.record_path(old.diff_id).read_bytes()
    )
    assert new_store.file_index.entries(new.diff_id) == old_store.file_index.entries(old.diff_id)
    assert len(new_store.file_index.entries(new.diff_id)) > 15
    assert new_store.snapshot_entries(new.diff_id) == old_store.snapshot_entries(old.diff_id)
    new_tree = tree(new_store.snapshot_path(new.diff_id))
    assert new_tree == tree(old_store.snapshot_path(old.diff_id))
    verify_layer(new_store, new.diff_id)  # the snapshot rebuilds the tar it was hashed as

    # What went in is really there, as the tar says.
    hard1, hard2 = new_tree["app/hard1"], new_tree["app/sub/hard2"]
    assert hard1[6] == hard2[6] == "app/hard1"
    assert new_tree["app/private"][0] & 0o7777 == 0o640
    assert new_tree["app/suid"][0] & 0o7777 == 0o4755
    assert new_tree["app/a.txt"][1:3] == (1000, 1001)
    mtime = MTIME // 10**9 if sde is None else sde
    assert new_tree["app/a.txt"][3] == new_tree["app/sub"][3] == mtime * 10**9
    if has_xattrs:
        assert ("user.mime", b"text/plain") in new_tree["app/a.txt"][7]
    sparse = os.lstat(new_store.snapshot_path(new.diff_id) / "app" / "sparse")
    assert sparse.st_size == (64 << 20) + 3
    assert sparse.st_blocks * 512 < 1 << 20  # holes stay holes


def test_a_source_that_shrank_fails_and_lists_no_layer(
    stores: tuple[Store, Store], tmp_path: Path
) -> None:
    make_context(tmp_path / "ctx")
    _, new_store = stores
    staging = Path(tempfile.mkdtemp(dir=new_store.snapshots_dir))
    changes = copy_changes(tmp_path / "ctx", staging)
    (tmp_path / "ctx" / "src" / "sub" / "big.bin").write_bytes(b"short now")
    with new_store.lease() as lease, pytest.raises(LaminaError, match="shrank"):
        commit_copy_layer(new_store, lease, staging, changes, source_date_epoch=None)
    left = {p.name for p in new_store.snapshots_dir.iterdir() if not p.name.startswith(".")}
    assert left == {staging.name}  # no snapshot, no record: the builder's scratch goes too


def test_a_copy_that_cannot_be_made_fails_the_commit(
    stores: tuple[Store, Store], tmp_path: Path
) -> None:
    """A file whose copy cannot be made (here made right away; a copy of many files has
    them made by a process, tests/unit/layers/test_layers_stagecopy.py): its failure is
    the commit's, and no layer is listed."""
    make_context(tmp_path / "ctx")
    _, new_store = stores
    staging = Path(tempfile.mkdtemp(dir=new_store.snapshots_dir))
    changes = copy_changes(tmp_path / "ctx", staging)
    staged_dir = staging / "app" / "sub" / "deeper"

    from lamina.layers import DirectCopy

    real_place = DirectCopy.place

    def place(self: DirectCopy, change: Change, st: os.stat_result, xattrs: Any) -> Any:
        made = real_place(self, change, st, xattrs)
        if change.path == "app/sub/deeper":
            os.rmdir(staged_dir)  # no directory left for deeper/x
        return made

    with new_store.lease() as lease, pytest.raises(FileNotFoundError):
        DirectCopy.place = place  # type: ignore[method-assign]
        try:
            commit_copy_layer(new_store, lease, staging, changes, source_date_epoch=None)
        finally:
            DirectCopy.place = real_place  # type: ignore[method-assign]
    left = {p.name for p in new_store.snapshots_dir.iterdir() if not p.name.startswith(".")}
    assert left == {staging.name}


@pytest.mark.parametrize("sde", [None, 1_500_000_000])
def test_files_linked_from_a_previous_snapshot_give_the_same_layer(
    stores: tuple[Store, Store], tmp_path: Path, sde: int | None
) -> None:
    """`previous` names earlier copies of the sources: those whose metadata is exactly the
    header's are hardlinked; one that differs (mtime), or is gone, is copied. The layer is
    byte for byte the one made without `previous`, and its tar has no hardlink it would
    not have had."""
    make_context(tmp_path / "ctx")
    old, first = commit_both(stores, tmp_path / "ctx", sde)
    _, store = stores
    before = store.snapshot_path(first.diff_id)
    # Another commit of the same changes must not be dropped as "already held": a store
    # that only knows the first layer's files, as the previous build's snapshot.
    other = open_store(tmp_path / "other")
    try:
        staging = Path(tempfile.mkdtemp(dir=other.snapshots_dir))
        changes = copy_changes(tmp_path / "ctx", staging)
        previous = {
            c.path: str(before / c.path) for c in changes
            if c.st is not None and stat.S_ISREG(c.st.st_mode)
        }  # fmt: skip
        os.utime(before / "app" / "private", ns=(0, 0))  # no longer what the header says
        previous["app/sub/deeper/x"] = str(tmp_path / "gone")
        with other.lease() as lease:
            again = commit_copy_layer(other, lease, staging, changes, source_date_epoch=sde,
                                      previous=previous)  # fmt: skip
        assert again == old
        assert (
            other.record_path(again.diff_id).read_bytes()
            == store.record_path(first.diff_id).read_bytes()
        )
        snap = other.snapshot_path(again.diff_id)
        ino = {rel: os.lstat(snap / rel).st_ino for rel in previous}
        assert ino["app/a.txt"] == os.lstat(before / "app" / "a.txt").st_ino
        assert ino["app/private"] != os.lstat(before / "app" / "private").st_ino
        assert ino["app/sub/deeper/x"] != 0 and (snap / "app/sub/deeper/x").read_bytes() == b"x"
        # Members of the context's hardlink set are never linked from elsewhere.
        assert ino["app/hard1"] == ino["app/sub/hard2"] != os.lstat(before / "app/hard1").st_ino
        verify_layer(other, again.diff_id)
        assert other.file_index.entries(again.diff_id) == store.file_index.entries(first.diff_id)
    finally:
        other.close()
