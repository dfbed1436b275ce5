"""ADD of a git repository, through the system `git`, keyed by the commit it resolves to.

A source is a git URL when BuildKit's dfgitutil would call it one: `git@host:path`,
`git://`, `ssh://`, or an `http(s)://` (or, for local repositories, `file://`) URL whose
path ends in `.git`, with an optional fragment `#ref[:subdir]` and query keys `ref`,
`tag`, `branch`, `subdir`, `keep-git-dir`, `checksum`. The ref is resolved with
`git ls-remote` first, so the cache key is the commit id: an unchanged branch is a hit
without fetching anything. The checkout keeps `.git` only with `--keep-git-dir`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from lamina.errors import DigestMismatchError, InvalidInputError, NotFoundError, ToolError

_SHA = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")
_SCP = re.compile(r"^[\w.-]+@[\w.-]+:[^/].*")
_TIMEOUT = 600


@dataclass(frozen=True)
class GitSource:
    """A parsed git source: remote, ref (None: the remote's HEAD), subdir, options."""

    remote: str
    ref: str | None
    subdir: str
    keep_git_dir: bool | None
    checksum: str | None


def is_git_source(word: str) -> bool:
    if _SCP.match(word) or word.startswith(("git://", "ssh://", "git@")):
        return True
    if word.startswith(("http://", "https://", "file://")):
        path = urllib.parse.urlsplit(word).path
        return path.endswith(".git") or path.endswith(".git/")
    return False


def parse_git_source(word: str) -> GitSource:
    """Split `word` into remote, ref, subdir and options; InvalidInputError when malformed."""
    base, _, fragment = word.partition("#")
    remote, _, query = base.partition("?") if "://" in base else (base, "", "")
    ref: str | None = None
    subdir = ""
    keep: bool | None = None
    checksum: str | None = None
    if fragment:
        ref_part, _, subdir = fragment.partition(":")
        ref = ref_part or None
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if key in ("ref", "tag", "branch"):
            ref = value or ref
        elif key == "subdir":
            subdir = value
        elif key == "keep-git-dir":
            keep = value.lower() in ("", "1", "true")
        elif key == "checksum":
            checksum = value
        else:
            raise InvalidInputError(f"git source {word!r}: unknown query key {key!r}")
    subdir = subdir.strip("/")
    if ".." in subdir.split("/"):
        raise InvalidInputError(f"git source {word!r}: subdir {subdir!r} leaves the repository")
    if ref is not None and (ref.startswith("-") or any(c.isspace() for c in ref)):
        raise InvalidInputError(f"git source {word!r}: bad ref {ref!r}")
    return GitSource(remote, ref, subdir, keep, checksum)


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=_TIMEOUT, env=env, check=False)  # fmt: skip
    except FileNotFoundError:
        raise ToolError("ADD of a git repository needs git", hint="apt-get install git") from None
    except subprocess.TimeoutExpired:
        raise ToolError(f"git {args[0]} took longer than {_TIMEOUT} s") from None
    if done.returncode != 0:
        raise ToolError(f"git {' '.join(args[:1])} failed: {done.stderr.strip()[-400:]}")
    return done.stdout


def resolve_commit(src: GitSource) -> str:
    """The commit id `src.ref` names on the remote (a full id is taken as it is)."""
    if src.ref is not None and _SHA.match(src.ref):
        commit = src.ref
    else:
        wanted = src.ref or "HEAD"
        lines = _git("ls-remote", "--", src.remote, wanted).splitlines()
        refs = {name: sha for sha, _, name in (line.partition("\t") for line in lines)}
        commit = ""
        # An annotated tag's commit is the peeled entry (^{}); branches before tags.
        for name in (f"refs/tags/{wanted}^{{}}", f"refs/heads/{wanted}", f"refs/tags/{wanted}",
                     wanted):  # fmt: skip
            if name in refs:
                commit = refs[name]
                break
        if not commit:
            raise NotFoundError(f"git source {src.remote}: no ref {wanted!r}")
    if src.checksum and not commit.startswith(src.checksum):
        raise DigestMismatchError(f"git source {src.remote}", src.checksum, commit)
    return commit


def checkout(src: GitSource, commit: str, where: Path, keep_git_dir: bool) -> Path:
    """Fetch `commit` into `where` (created) and return the directory to copy from."""
    where.mkdir()
    _git("init", "-q", str(where))
    # By name when there is one (a dumb-http server serves refs, not arbitrary commits),
    # shallow when the transport allows it; the commit is checked either way.
    wanted = commit if src.ref is None or _SHA.match(src.ref) else src.ref
    base = ["-c", "protocol.file.allow=always", "fetch", "-q"]
    try:
        _git(*base, "--depth=1", "--", src.remote, wanted, cwd=where)
    except ToolError:
        _git(*base, "--", src.remote, wanted, cwd=where)
    fetched = _git("rev-parse", "FETCH_HEAD^{commit}", cwd=where).strip()
    if fetched != commit:
        raise DigestMismatchError(f"git source {src.remote}#{wanted}", commit, fetched)
    _git("-c", "advice.detachedHead=false", "checkout", "-q", "FETCH_HEAD", cwd=where)
    if not keep_git_dir:
        shutil.rmtree(where / ".git")
    top = where / src.subdir if src.subdir else where
    real = top.resolve()
    if real != where.resolve() and where.resolve() not in real.parents:
        raise InvalidInputError(f"git source {src.remote}: subdir {src.subdir!r} leaves it")
    if not real.is_dir():
        raise NotFoundError(f"git source {src.remote}: no directory {src.subdir!r} at {commit}")
    return real
