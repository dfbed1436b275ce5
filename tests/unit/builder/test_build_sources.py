"""Context hashing through the stat cache (a real store in a temp dir; no root needed)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

import lamina.builder._sources as sources
from lamina.api import parse_build_args, parse_secret
from lamina.builder import digest_context_files
from lamina.dockerfile import select_sources
from lamina.errors import InvalidInputError
from lamina.store import open_store


def test_unchanged_files_are_not_read_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(tmp_path / "root")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "old.txt").write_text("old")
    (ctx / "fresh.txt").write_text("fresh")
    then = time.time() - 60
    os.utime(ctx / "old.txt", (then, then))
    read: list[str] = []
    real = sources.file_sha256

    def spy(p: str) -> str:
        read.append(Path(p).name)
        return real(p)

    monkeypatch.setattr(sources, "file_sha256", spy)

    files = select_sources(ctx, ["."])
    first = digest_context_files(store, str(ctx), files)
    assert first["old.txt"] == "sha256:" + hashlib.sha256(b"old").hexdigest()
    assert sorted(read) == ["fresh.txt", "old.txt"]
    read.clear()
    digest_context_files(store, str(ctx), select_sources(ctx, ["."]))
    assert read == ["fresh.txt"]  # within the racy window: re-hashed

    (ctx / "old.txt").write_text("new")  # a new mtime and size: a new identity
    os.utime(ctx / "old.txt", (then + 1, then + 1))
    read.clear()
    again = digest_context_files(store, str(ctx), select_sources(ctx, ["."]))
    assert "old.txt" in read
    assert again["old.txt"] == "sha256:" + hashlib.sha256(b"new").hexdigest()
    store.close()


def test_many_small_files_are_hashed_with_a_read_ahead_beside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Enough files to read ahead: each is hashed once, right, with the reader's progress
    told to the read-ahead as it goes; few files need none."""
    store = open_store(tmp_path / "root")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    for n in range(40):
        (ctx / f"f{n:02d}").write_bytes(f"file {n}\n".encode() * (n + 1))
    made: list[list[tuple[str, int]]] = []
    told: list[int] = []

    class Spy:
        def __init__(self, files: list[tuple[str, int]]) -> None:
            made.append(list(files))

        def taken(self, total: int) -> None:
            told.append(total)

        def __enter__(self) -> Spy:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    monkeypatch.setattr(sources, "ReadAhead", Spy)
    files = select_sources(ctx, ["."])
    digests = digest_context_files(store, str(ctx), files)
    assert made == []  # 40 small files: read one by one
    monkeypatch.setattr(sources, "worth_a_process", lambda files, size: files >= 10)
    store.stat_cache_clear()
    again = digest_context_files(store, str(ctx), files)
    assert (
        again
        == digests
        == {
            f"f{n:02d}": "sha256:" + hashlib.sha256(f"file {n}\n".encode() * (n + 1)).hexdigest()
            for n in range(40)
        }
    )
    assert len(made) == 1 and sorted(p for p, _ in made[0]) == sorted(
        str(ctx.resolve() / f.path) for f in files
    )
    assert told == sorted(told) and told[-1] == sum(size for _, size in made[0])
    store.close()


def test_symlinks_and_dirs_have_no_content_digest(tmp_path: Path) -> None:
    store = open_store(tmp_path / "root")
    ctx = tmp_path / "ctx"
    (ctx / "d").mkdir(parents=True)
    (ctx / "link").symlink_to("d")
    assert digest_context_files(store, str(ctx), select_sources(ctx, ["."])) == {}
    store.close()


def test_secret_and_build_arg_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "s"
    secret.write_text("x")
    assert parse_secret(f"id=tok,src={secret}") == ("tok", secret.resolve())
    with pytest.raises(InvalidInputError):
        parse_secret("id=tok")
    with pytest.raises(InvalidInputError):
        parse_secret(f"id=tok,src={tmp_path / 'missing'}")
    monkeypatch.setenv("FROM_ENV", "e")
    monkeypatch.delenv("UNSET_ARG", raising=False)
    assert parse_build_args(["A=1", "B=", "FROM_ENV", "UNSET_ARG"]) == {
        "A": "1", "B": "", "FROM_ENV": "e"
    }  # fmt: skip
