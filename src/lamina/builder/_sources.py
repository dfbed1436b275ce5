"""Content digests of build-context files, made cheap by the store's stat cache.

A file whose identity (path, size, mtime_ns, inode, mode, and git's ctime_ns, dev,
uid, gid) matches the stat cache is not
read again. One modified within `RACY_SECONDS` of now is hashed and not remembered: its
mtime could still change without its size or mtime moving (git's "racy" timestamps).
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from lamina.dockerfile import ContextFile
from lamina.layers import ReadAhead, worth_a_process
from lamina.store import RACY_SECONDS, FileIdentity, Store

_BIG_FILE = 4 << 20
_CHUNK = 1 << 20


def worth_reading_ahead(sizes: Sequence[int]) -> bool:
    """Whether files of these sizes are many (or big) enough to be read ahead by another
    process (``ReadAhead``) rather than one at a time."""
    return worth_a_process(len(sizes), sum(sizes))


def file_sha256(path: str) -> str:
    """`sha256:<hex>` of a file's content, without following a symlink at `path`."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        h = hashlib.sha256()
        while chunk := os.read(fd, _CHUNK):
            h.update(chunk)
        return "sha256:" + h.hexdigest()
    finally:
        os.close(fd)


def _hash_all(paths: list[str], sizes: list[int]) -> list[str]:
    # Small files: one thread (a pool's hand-offs cost more than the hashing), the files
    # read ahead by another process, so a cold context has many reads in flight, not one
    # file's at a time. Big files: hashlib drops the GIL on large buffers, so two threads
    # keep two cores busy.
    big = [i for i, size in enumerate(sizes) if size >= _BIG_FILE]
    out = ["" for _ in paths]
    if len(big) > 1:
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            for i, digest in zip(big, pool.map(file_sha256, [paths[i] for i in big]), strict=True):
                out[i] = digest
    small = [i for i, digest in enumerate(out) if not digest]
    ahead = [(paths[i], sizes[i]) for i in small if sizes[i]]
    if not worth_reading_ahead([size for _, size in ahead]):
        for i in small:
            out[i] = file_sha256(paths[i])
        return out
    with ReadAhead(ahead) as reader:
        taken = 0
        for i in small:
            taken += sizes[i]
            reader.taken(taken)
            out[i] = file_sha256(paths[i])
    return out


def digest_context_files(
    store: Store, context_dir: str, files: Sequence[ContextFile], *, now: float | None = None
) -> dict[str, str]:
    """context-relative path → content digest, for every regular file in `files`."""
    root = os.path.realpath(context_dir)
    identities = {
        f.path: FileIdentity(
            os.path.join(root, f.path),
            f.size,
            f.mtime_ns,
            f.inode,
            f.mode,
            f.ctime_ns,
            f.dev,
            f.uid,
            f.gid,
        )
        for f in files
        if stat.S_ISREG(f.mode)
    }
    if not identities:
        return {}
    known = store.stat_cache_get(list(identities.values()))
    digests: dict[str, str] = {}
    todo: list[tuple[str, FileIdentity]] = []
    for rel, ident in identities.items():
        found = known.get(ident.path)
        if found is not None:
            digests[rel] = found
        else:
            todo.append((rel, ident))
    if not todo:
        return digests
    hashed = _hash_all([ident.path for _, ident in todo], [ident.size for _, ident in todo])
    cutoff_ns = int(((time.time() if now is None else now) - RACY_SECONDS) * 1e9)
    remember: list[tuple[FileIdentity, str]] = []
    for (rel, ident), digest in zip(todo, hashed, strict=True):
        digests[rel] = digest
        if ident.mtime_ns < cutoff_ns:
            remember.append((ident, digest))
    if remember:
        store.stat_cache_put(remember)
    return digests
