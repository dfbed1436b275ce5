"""The content store: ingest → commit → visible, verified reads, resumable ingest."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lamina.errors import ConflictError, DigestMismatchError, InvalidInputError, NotFoundError
from lamina.oci import sha256_digest
from lamina.store import ContentStore, Store


def corrupt(path: Path) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_commit_makes_blob_visible_and_readable(store: Store) -> None:
    data = os.urandom(3 << 20)
    digest = sha256_digest(data)
    assert not store.content.has(digest)
    with store.content.writer(digest, len(data)) as w:
        for start in range(0, len(data), 1 << 20):
            w.write(data[start : start + (1 << 20)])
        assert not store.content.has(digest)
        info = w.commit()
    assert (info.digest, info.size) == (digest, len(data))
    assert store.content.has(digest)
    assert store.content.size(digest) == len(data)
    assert store.content.path(digest) == store.root / "blobs" / "sha256" / digest[7:]
    with store.content.open(digest) as f:
        assert f.read() == data
    assert store.content.read_bytes(digest, len(data)) == data
    assert list(store.content.iter_digests()) == [digest]
    assert store.content.ingests() == []
    assert not stat.S_IMODE(store.content.path(digest).stat().st_mode) & 0o222


def test_digest_mismatch_leaves_nothing(store: Store) -> None:
    wrong = sha256_digest(b"other")
    with pytest.raises(DigestMismatchError) as err, store.content.writer(wrong) as w:
        w.write(b"hello")
        w.commit()
    assert err.value.expected == wrong
    assert err.value.actual == sha256_digest(b"hello")
    assert list(store.content.iter_digests()) == []
    assert store.content.ingests() == []


def test_size_is_bounded_while_writing(store: Store) -> None:
    too_many = pytest.raises(InvalidInputError, match="more than the expected 4 bytes")
    with too_many, store.content.writer(expected_size=4) as w:
        w.write(b"12345")
    too_few = pytest.raises(InvalidInputError, match="expected 4 bytes, got 3")
    with too_few, store.content.writer(expected_size=4) as w:
        w.write(b"123")
        w.commit()
    assert store.content.ingests() == []
    assert list(store.content.iter_digests()) == []


def test_exception_in_block_removes_temp_file(store: Store) -> None:
    with pytest.raises(RuntimeError), store.content.writer() as w:
        w.write(b"partial")
        assert len(store.content.ingests()) == 1
        raise RuntimeError("source broke")
    assert store.content.ingests() == []


def test_reingest_is_idempotent(store: Store) -> None:
    first = store.content.put_bytes(b"same")
    mtime = store.content.path(first.digest).stat().st_mtime_ns
    second = store.content.put_bytes(b"same", expected=first.digest)
    assert first == second
    assert store.content.path(first.digest).stat().st_mtime_ns == mtime
    assert list(store.content.iter_digests()) == [first.digest]
    assert store.content.ingests() == []


def test_open_detects_a_flipped_byte(store: Store) -> None:
    data = os.urandom(5 << 20)
    digest = store.content.put_bytes(data).digest
    corrupt(store.content.path(digest))
    with pytest.raises(DigestMismatchError) as err, store.content.open(digest) as f:
        while f.read(1 << 16):
            pass
    assert err.value.expected == digest
    with pytest.raises(DigestMismatchError), store.content.open(digest) as f:
        f.read()
    with pytest.raises(DigestMismatchError):
        store.content.read_bytes(digest, len(data))
    with pytest.raises(DigestMismatchError):
        store.content.verify(digest)


def test_read_bytes_is_bounded(store: Store) -> None:
    digest = store.content.put_bytes(b"x" * 100).digest
    with pytest.raises(InvalidInputError, match="100 bytes, more than the 99 allowed"):
        store.content.read_bytes(digest, 99)


def test_missing_blob_is_not_found(store: Store) -> None:
    digest = sha256_digest(b"absent")
    for call in (store.content.size, store.content.open, store.content.verify):
        with pytest.raises(NotFoundError, match=digest):
            call(digest)
    assert not store.content.delete(digest)


def test_malformed_digest_never_reaches_a_path(store: Store) -> None:
    for bad in ("sha256:../../etc/passwd", "md5:abc", "sha256:" + "A" * 64):
        with pytest.raises(InvalidInputError):
            store.content.path(bad)
        with pytest.raises(InvalidInputError):
            store.content.put_bytes(b"x", expected=bad)


def test_resumable_ingest_continues_where_it_stopped(store: Store) -> None:
    data = os.urandom(300_000)
    digest = sha256_digest(data)
    with pytest.raises(ConnectionError), store.content.writer(digest, len(data), ref="pull-1") as w:
        w.write(data[:100_000])
        raise ConnectionError("network dropped")
    assert len(store.content.ingests()) == 1
    with store.content.writer(digest, len(data), ref="pull-1") as w:
        assert w.offset == 100_000
        w.write(data[w.offset :])
        assert w.commit().digest == digest
    assert store.content.read_bytes(digest, len(data)) == data
    assert store.content.ingests() == []


def test_same_ref_cannot_be_written_twice_at_once(store: Store) -> None:
    with store.content.writer(ref="r") as w:
        w.write(b"a")
        with pytest.raises(ConflictError, match="'r'"), store.content.writer(ref="r"):
            pass


def test_resumed_ref_with_bad_prefix_fails_and_is_dropped(store: Store) -> None:
    with pytest.raises(ConnectionError), store.content.writer(ref="r") as w:
        w.write(b"garbage")
        raise ConnectionError
    good = b"good content"
    with (
        pytest.raises(DigestMismatchError),
        store.content.writer(sha256_digest(good), ref="r") as w,
    ):
        w.write(good)
        w.commit()
    assert store.content.ingests() == []


def test_stale_ingests_skip_live_writers(tmp_path: Path) -> None:
    content = ContentStore(tmp_path)
    old = content.ingest_dir / "tmp-abandoned"
    old.write_bytes(b"x")
    os.utime(old, (0, 0))
    with content.writer() as w:
        w.write(b"live")
        live = content.ingests()
        for path in live:
            os.utime(path, (0, 0))
        assert content.stale_ingests(3600) == [old]


def test_verify_checks_a_resumed_ingest_without_publishing_it(store: Store) -> None:
    # A pulled layer unpacked as it arrived: its bytes are checked, then dropped.
    data = os.urandom(200_000)
    digest = sha256_digest(data)
    with pytest.raises(ConnectionError), store.content.writer(digest, len(data), ref="p") as w:
        w.write(data[:50_000])
        raise ConnectionError("network dropped")
    with store.content.writer(digest, len(data), ref="p") as w:
        w.write(data[w.offset :])
        assert w.verify().digest == digest
    assert not store.content.has(digest)
    assert store.content.ingests() == []


@pytest.mark.parametrize("wrong", ["digest", "size"])
def test_verify_refuses_bytes_that_are_not_the_blob(store: Store, wrong: str) -> None:
    data = b"layer bytes"
    expected = sha256_digest(b"other" if wrong == "digest" else data)
    error = DigestMismatchError if wrong == "digest" else InvalidInputError
    with pytest.raises(error), store.content.writer(expected, len(data), ref="p") as w:
        w.write(data if wrong == "digest" else data[:-1])  # wrong bytes, or too few
        w.verify()
    assert not store.content.has(expected)
    assert store.content.ingests() == []
