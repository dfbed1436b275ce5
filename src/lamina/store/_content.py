"""The content store: immutable blobs named by their sha256 digest."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import io
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from lamina.errors import (
    ConflictError,
    DigestMismatchError,
    InvalidInputError,
    NotFoundError,
)
from lamina.oci import check_digest
from lamina.store._layout import BLOBS, blob_path
from lamina.store._rows import read_verified
from lamina.store._verified import VerifiedBlob

_CHUNK = 1 << 20
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class BlobInfo:
    """A committed blob: its digest and its size in bytes."""

    digest: str
    size: int


class BlobLease(Protocol):
    """Whatever protects a blob from gc while it is being written (a store `Lease`)."""

    def add_blob(self, digest: str) -> None: ...


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename durable: the directory entry itself must reach the disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_hex64(name: str) -> bool:
    return len(name) == 64 and set(name) <= _HEX


class ContentStore:
    """Blobs under `blobs/sha256/<hex>`, written through `ingest/`.

    Lifecycle of a blob:

    1. ingest: `writer()` opens a temporary file under `ingest/` and hashes every
       byte as it is written. Nothing is visible yet; a crash leaves only the
       temporary file, which `prune` removes after an hour.
    2. commit: `Writer.commit()` checks size and digest against what the caller
       expected, fsyncs, renames into `blobs/sha256/<hex>` and fsyncs the
       directory. A commit of a blob that exists already succeeds and drops the
       temporary file: writes are idempotent.
    3. visible: `has`, `open`, `read_bytes` see the blob. Readers verify: `open`
       raises DigestMismatchError at end of file if the bytes changed on disk.
       Blobs are never modified; `delete` is for gc only.

    A blob no metadata record or lease points at may be collected by `prune` at
    any moment: to keep one, hold a lease (`Store.lease()`) and pass it to
    `writer(lease=...)` or add the digest to it before writing.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs_dir = root / BLOBS
        self.ingest_dir = root / "ingest"
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        self.ingest_dir.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        """Where the blob lives, for zero-copy readers that verify the digest themselves."""
        return blob_path(self.root, digest)

    def has(self, digest: str) -> bool:
        """Whether the blob is committed."""
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        """Size in bytes of a committed blob; NotFoundError if absent."""
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFoundError(f"blob {digest} is not in the content store") from None

    def info(self, digest: str) -> BlobInfo:
        """BlobInfo of a committed blob; NotFoundError if absent."""
        return BlobInfo(digest, self.size(digest))

    @contextlib.contextmanager
    def writer(
        self,
        expected: str | None = None,
        expected_size: int | None = None,
        *,
        ref: str | None = None,
        lease: BlobLease | None = None,
        writeback: bool = True,
    ) -> Iterator[Writer]:
        """A Writer for one blob; the temporary file goes when the block exits.

        `ref` names a resumable ingest: the partial file survives an exception
        and a later writer with the same ref continues at `Writer.offset`.
        `lease` protects the blob from gc: `expected` is added to it before any
        byte is written, an unknown digest before the rename that publishes it.
        `writeback=False`: the bytes are likely needed only on the way (a pulled layer
        not kept), so they are not pushed to the disk ahead of a commit (which still
        fsyncs if it comes).
        """
        if expected is not None:
            check_digest(expected, "expected digest")
            if lease is not None:
                lease.add_blob(expected)
        if expected_size is not None and expected_size < 0:
            raise InvalidInputError(f"expected size {expected_size} is negative")
        w = Writer(self, expected, expected_size, ref, lease)
        w.writeback = writeback
        try:
            yield w
        except BaseException:
            w.close(keep=ref is not None)
            raise
        w.close(keep=False)

    def put_bytes(
        self, data: bytes, expected: str | None = None, *, lease: BlobLease | None = None
    ) -> BlobInfo:
        """Store `data` as a blob and return its info."""
        with self.writer(expected, len(data), lease=lease) as w:
            w.write(data)
            return w.commit()

    def open(self, digest: str, *, verify: bool = True) -> BinaryIO:
        """A reader that hashes what it returns and raises DigestMismatchError at EOF
        if the blob no longer matches its name. Not seekable. `verify=False`: nothing is
        hashed, for a reader whose receiver checks the digest itself (a registry)."""
        path = self.path(digest)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFoundError(f"blob {digest} is not in the content store") from None
        blob = VerifiedBlob(fd, 0, None, digest, "blob", str(path), verify=verify)
        return io.BufferedReader(blob, _CHUNK)

    def read_bytes(self, digest: str, max_size: int) -> bytes:
        """The verified content of a blob of at most `max_size` bytes."""
        return read_verified(self.path(digest), digest, max_size)

    def verify(self, digest: str) -> None:
        """Re-hash a blob; DigestMismatchError if it changed, NotFoundError if absent."""
        with self.open(digest) as f:
            while f.read(_CHUNK):
                pass

    def delete(self, digest: str) -> bool:
        """Remove a blob (gc only); whether it existed."""
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            return False
        return True

    def iter_digests(self) -> Iterator[str]:
        """Digests of all committed blobs, in no particular order."""
        for entry in os.scandir(self.blobs_dir):
            if _is_hex64(entry.name):
                yield "sha256:" + entry.name

    def stray_blob_files(self) -> list[Path]:
        """Files under blobs/sha256 whose name is not a digest."""
        return sorted(Path(e.path) for e in os.scandir(self.blobs_dir) if not _is_hex64(e.name))

    def stale_ingests(self, older_than: float) -> list[Path]:
        """Ingest files not written for `older_than` seconds and not held by a writer."""
        cutoff = time.time() - older_than
        stale = []
        for entry in os.scandir(self.ingest_dir):
            try:
                if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                    continue
            except FileNotFoundError:
                continue
            if not _locked(Path(entry.path)):
                stale.append(Path(entry.path))
        return sorted(stale)

    def ingests(self) -> list[Path]:
        """Every file under ingest/: partial writes, live or abandoned."""
        return sorted(Path(e.path) for e in os.scandir(self.ingest_dir))


def _locked(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


# Large blobs start their writeback as they are written, so the fsync before the
# rename waits only for the tail instead of the whole blob.
_WRITEBACK_STEP = 32 << 20
_SYNC_FILE_RANGE_WRITE = 2
_libc = ctypes.CDLL(None, use_errno=True)


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing `length` bytes at `offset` of `fd` to disk without waiting for them
    (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so a later fsync finds them written.
    Advisory only: the fsync is what makes them durable."""
    _libc.sync_file_range(fd, ctypes.c_longlong(offset), ctypes.c_longlong(length),
                          _SYNC_FILE_RANGE_WRITE)  # fmt: skip


class Writer:
    """One blob being ingested: `write` bytes, then `commit`."""

    def __init__(
        self,
        store: ContentStore,
        expected: str | None,
        expected_size: int | None,
        ref: str | None,
        lease: BlobLease | None,
    ) -> None:
        self._store = store
        self._expected = expected
        self._expected_size = expected_size
        self._lease = lease
        self._hash = hashlib.sha256()
        self._committed: BlobInfo | None = None
        self.writeback = True
        """Start writing to disk as bytes arrive (the fsync at commit waits less)."""
        if ref is None:
            self._path = store.ingest_dir / f"tmp-{secrets.token_hex(16)}"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        else:
            name = hashlib.sha256(ref.encode()).hexdigest()[:32]
            self._path = store.ingest_dir / f"ref-{name}"
            flags = os.O_RDWR | os.O_CREAT
        self._fd = os.open(self._path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            # The lock tells prune and a second writer with the same ref that this file is live.
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise ConflictError(f"ingest {ref!r} is being written by another writer") from None
        self.offset = 0
        if ref is not None:
            self._rehash_prefix()
        self._flushed = self.offset

    def _rehash_prefix(self) -> None:
        with open(self._fd, "rb", buffering=0, closefd=False) as f:
            buf = bytearray(_CHUNK)
            view = memoryview(buf)
            while n := f.readinto(buf):
                self._hash.update(view[:n])
                self.offset += n
        if self._expected_size is not None and self.offset > self._expected_size:
            os.ftruncate(self._fd, 0)
            self._hash = hashlib.sha256()
            self.offset = 0
        os.lseek(self._fd, self.offset, os.SEEK_SET)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes; InvalidInputError as soon as more than expected_size arrive."""
        if self._committed is not None:
            raise InvalidInputError(f"write to {self._path} after commit")
        view = memoryview(data)
        if self._expected_size is not None and self.offset + len(view) > self._expected_size:
            raise InvalidInputError(
                f"blob {self._expected or self._path}: more than the expected "
                f"{self._expected_size} bytes"
            )
        self._hash.update(view)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
            self.offset += n
        if self.writeback and self.offset - self._flushed >= _WRITEBACK_STEP:
            start_writeback(self._fd, self._flushed, self.offset - self._flushed)
            self._flushed = self.offset

    def read_at(self, buffer: bytearray | memoryview, offset: int) -> int:
        """Bytes already written, from `offset` into `buffer`: for a reader that follows
        this writer (a pull unpacking a blob as its download lands). A writer with a
        `ref` only (its file is opened for reading too)."""
        return os.preadv(self._fd, [buffer], offset)

    def commit(self) -> BlobInfo:
        """Check size and digest, then publish the blob; idempotent if it exists."""
        if self._committed is not None:
            return self._committed
        actual = self._checked_digest()
        if self._expected is None and self._lease is not None:
            self._lease.add_blob(actual)
        target = self._store.blobs_dir / actual[len("sha256:") :]
        if target.exists():
            self._discard()
        else:
            os.fchmod(self._fd, 0o444)
            os.fsync(self._fd)
            os.rename(self._path, target)
            fsync_dir(self._store.blobs_dir)
            os.close(self._fd)
            self._fd = -1
        self._committed = BlobInfo(actual, self.offset)
        return self._committed

    def verify(self) -> BlobInfo:
        """Check size and digest as `commit` does, without publishing the blob: its bytes
        were needed only on the way (a pulled layer unpacked as it arrived, not kept).
        The file goes when the writer's block exits."""
        actual = self._checked_digest()
        return BlobInfo(actual, self.offset)

    def _checked_digest(self) -> str:
        """The written bytes' digest, once their size and digest are the expected ones;
        otherwise the file is discarded and the mismatch raised."""
        actual = "sha256:" + self._hash.hexdigest()
        if self._expected_size is not None and self.offset != self._expected_size:
            self._discard()
            raise InvalidInputError(
                f"blob {self._expected or actual}: expected {self._expected_size} bytes, "
                f"got {self.offset}"
            )
        if self._expected is not None and actual != self._expected:
            self._discard()
            raise DigestMismatchError(f"blob of {self.offset} bytes", self._expected, actual)
        return actual

    def _discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()
        self.close(keep=True)

    def close(self, keep: bool) -> None:
        """Release the file; remove it unless `keep` (a resumable ref after an error)."""
        if self._fd >= 0:
            if not keep:
                with contextlib.suppress(FileNotFoundError):
                    self._path.unlink()
            os.close(self._fd)
            self._fd = -1
