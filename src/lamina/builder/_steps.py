"""RUN and COPY/ADD steps: their cache inputs, and running them into a layer directory."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import posixpath
import stat
import time
import urllib.parse
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from lamina.dockerfile import (
    Copy,
    Mount,
    PlannedInstruction,
    Run,
    parse_chmod,
    select_sources,
    single_heredoc,
)
from lamina.errors import DigestMismatchError, InvalidInputError, NotFoundError, ToolError
from lamina.layers import ReadAhead
from lamina.store import RACY_SECONDS

from ._copy import Owner, Selection, Stager, is_url, select, stage, summarise
from ._git import GitSource, checkout, is_git_source, parse_git_source, resolve_commit
from ._image import ImageState, ensure_snapshots
from ._keys import StepInputs, instruction_text
from ._sources import digest_context_files, file_sha256, worth_reading_ahead

if TYPE_CHECKING:
    from lamina.layers import Change

    from ._builder import Builder

View = Callable[[list[Path], Path], AbstractContextManager[Path | None]]
_MAX_DOWNLOAD = 8 << 30


class RunStep:
    """A RUN: its inputs (instruction, env, args, mounted sources) and its execution."""

    def __init__(self, b: Builder, inst: Run, step: PlannedInstruction, state: ImageState,
                 scratch: Path, number: int, argv: list[str]) -> None:  # fmt: skip
        self.b, self.inst, self.step, self.state = b, inst, step, state
        self.scratch, self.number, self.argv = scratch, number, argv

    def inputs(self) -> StepInputs:
        # Checked before the cache: a cached insecure step is refused all the same.
        if self.inst.security == "insecure" and "security.insecure" not in self.b.opts.allow:
            raise InvalidInputError(
                f"{self.step.loc}: RUN --security=insecure: entitlement security.insecure is "
                "not allowed",
                hint="build with --allow security.insecure if you trust this Dockerfile",
            )
        extra: list[tuple[str, str]] = []
        sources: list[tuple[str, str]] = []
        for n, m in enumerate(self.inst.mounts):
            if m.type == "bind" and m.from_:
                # What the step sees is the mounted path's content, not the whole stage:
                # key on that (BuildKit's testMountRWCache).
                extra.append((f"mount {m.target}", self._mounted_content(m, n)))
            elif m.type == "cache" and m.from_:
                extra.append((f"mount {m.target}", self.b.source_state(m.from_).key))
            elif m.type == "bind":
                try:
                    files = select_sources(self.b.context, [m.source or "."], self.b.ignore)
                except InvalidInputError as exc:  # the selector speaks of COPY
                    exc.message = exc.message.replace("COPY source", "RUN --mount source", 1)
                    exc.args = (exc.message,)
                    raise
                self.b.observe(files)
                digests = digest_context_files(self.b.store, str(self.b.context), files)
                for f in files:
                    content = digests.get(f.path) or f.link_target or ""
                    sources.append((f"{m.target}: {f.path}",
                                    f"{f.kind}:{stat.S_IMODE(f.mode):o}:{content}"))  # fmt: skip
        return StepInputs(
            self.state.key, instruction_text(self.inst), self.step.args, self.step.env,
            str(self.b.bp.platform), tuple(sources), tuple(extra),
        )  # fmt: skip

    def _mounted_content(self, m: Mount, n: int) -> str:
        """A digest of the tree `--mount=from=STAGE,source=PATH` shows, remembered per
        (stage key, path): that key fixes the content, so it is computed once."""
        assert m.from_ is not None
        state = self.b.source_state(m.from_)
        ident = f"{state.key}\0{m.source or '.'}"
        record = "mountsum:" + hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()
        found = self.b.store.get_cache(record)
        if found is not None and isinstance(found.value, dict) and found.value.get("digest"):
            return str(found.value["digest"])
        lowers = ensure_snapshots(self.b.store, self.b.lease, state.layers)
        h = hashlib.sha256()
        with self.b._view(lowers, self.scratch, f"mountsum-{n}") as view:
            if view is not None:
                for f in select_sources(view, [m.source or "."]):
                    content = (file_sha256(os.path.join(view, f.path)) if f.kind == "file"
                               else f.link_target or "")  # fmt: skip
                    line = f"{f.dest}\0{f.kind}\0{f.mode:o}\0{f.uid}\0{f.gid}\0{content}\n"
                    h.update(line.encode("utf-8", "surrogateescape"))
        digest = "sha256:" + h.hexdigest()
        self.b.store.put_cache(record, {"digest": digest})
        return digest

    def execute(self, lowerdirs: list[Path]) -> Path:
        from ._run import RunRequest, run_step

        cc = self.state.config.container_config
        argv, scripts = self.argv, {}
        doc = single_heredoc(self.inst) if self.inst.shell_form else None
        if doc is not None and doc.content.startswith("#!"):
            # BuildKit (dispatchRun): the body becomes /dev/pipes/NAME (run_argv runs it).
            scripts[f"/dev/pipes/{doc.name}"] = doc.content
        roots = {
            m.from_: ensure_snapshots(self.b.store, self.b.lease,
                                      self.b.source_state(m.from_).layers)
            for m in self.inst.mounts if m.type == "bind" and m.from_
        }  # fmt: skip
        network = self.inst.network if self.inst.network in ("host", "none") else None
        req = RunRequest(
            argv=argv,
            env=[f"{k}={v}" for k, v in self.step.run_env().items()],
            cwd=cc.get("WorkingDir") or "/",
            user=cc.get("User") or "",
            lowerdirs=lowerdirs,
            network=network or self.b.opts.network,
            mounts=self.inst.mounts,
            context_dir=self.b.context,
            context_ignore=self.b.ignore,
            stage_roots=roots,
            secrets=dict(self.b.opts.secrets),
            ssh=dict(self.b.opts.ssh),
            insecure=self.inst.security == "insecure",
            scripts=scripts,
        )
        text = self.step.loc.text.strip() if self.step.loc else "RUN " + " ".join(self.argv)
        where = str(self.step.loc) if self.step.loc else "Dockerfile"
        number = self.number
        started = time.monotonic()

        def output(chunk: bytes) -> None:
            # Seconds since the command started, as BuildKit's plain progress shows them.
            elapsed = time.monotonic() - started
            self.b.emit("output", number, chunk.decode("utf-8", "replace"), elapsed)

        return run_step(req, store_root=self.b.store.root, state_dir=self.b.runc_state,
                        scratch=self.scratch,
                        what=text, where=where, output=output)  # fmt: skip


class CopyStep:
    """A COPY or ADD: sources summarised for the key, then staged into a layer directory."""

    def __init__(self, b: Builder, inst: Copy, step: PlannedInstruction, state: ImageState,
                 scratch: Path) -> None:  # fmt: skip
        self.b, self.inst, self.step, self.state, self.scratch = b, inst, step, state, scratch
        try:
            self.chmod = None if inst.chmod is None else parse_chmod(inst.chmod)
        except ValueError as exc:
            raise InvalidInputError(f"{step.loc}: {exc}") from None
        self.sel: Selection | None = None
        self.src: ImageState | None = None
        self.downloads: list[tuple[str, Path, float | None]] = []
        self.gits: list[tuple[GitSource, str]] = []  # (source, commit)
        self.direct: dict[str, Change] | None = None
        self.context_paths: dict[str, str] = {}
        self.digests: dict[str, str] = {}  # context path → content digest, once computed
        self.shortcut = False
        self._stamped: tuple[str, str] | None = None  # (record, stamp) of `sel`
        self._ahead: ReadAhead | None = None

    def inputs(self, full: bool = False) -> StepInputs:
        """The step's inputs. Unless `full`, sources whose every stat matches the last build's
        give their recorded checksum (`self.shortcut`) instead of a per-file listing."""
        extra: list[tuple[str, str]] = []
        sources: list[tuple[str, str]] = []
        checksum = ""
        self.shortcut = False
        if self.inst.from_:
            self.src = self.b.source_state(self.inst.from_)
            extra.append(("from", self.src.key))
        else:
            # After a shortcut (a miss to explain): the same selection, its stamp already
            # checked against the recorded checksum; only the per-file listing is new.
            again = full and self.sel is not None and self._stamped is not None
            if not again:
                self.sel = select(self.inst, self.b.context, self.b.ignore)
                self.b.observe(self.sel.files())
                self._stamped = self._stamp()
            assert self.sel is not None and self._stamped is not None
            if self.b.opts.no_cache:
                self._read_ahead()  # a miss for sure: the copy's reads can start now
            files = self.sel.files()
            urls = self.inst.is_add and any(is_url(w) or is_git_source(w)
                                            for w in self.inst.sources)  # fmt: skip
            if urls:
                self.b.replayable = False
            record, stamp = self._stamped
            if not full and stamp and not urls:
                found = self.b.store.get_cache(record)
                if found is not None and found.value.get("stamp") == stamp:
                    checksum = str(found.value.get("checksum", ""))
                    self.shortcut = bool(checksum)
            if not checksum:
                digests = digest_context_files(self.b.store, str(self.b.context), files)
                self.digests = digests
                sources = summarise(self.sel, digests, None, self.chmod, keep_owner=False)
                if stamp and not urls and not again:
                    summary = StepInputs("", "", sources=tuple(sources)).sources_checksum()
                    self.b.store.put_cache(record, {"stamp": stamp, "checksum": summary})
        self.gits = []
        if self.inst.checksum:
            words = self.inst.sources
            if len(words) != 1:
                raise InvalidInputError(
                    f"{self.step.loc}: checksum can't be specified for multiple sources"
                )
            if not (is_url(words[0]) or is_git_source(words[0])):
                raise InvalidInputError(
                    f"{self.step.loc}: checksum requires HTTP(S) or Git sources"
                )
            if is_url(words[0]):
                self.checksum_algorithm()
        for word in self.inst.sources:
            if is_git_source(word) and not word.startswith("<<"):
                if not self.inst.is_add:
                    raise InvalidInputError(f"{self.step.loc}: source can't be a git ref for COPY")
                src = parse_git_source(word)
                if self.inst.checksum:
                    if src.checksum and src.checksum != self.inst.checksum:
                        raise InvalidInputError(
                            f"{self.step.loc}: checksum mismatch "
                            f"{self.inst.checksum!r} != {src.checksum!r}"
                        )
                    src = dataclasses.replace(src, checksum=self.inst.checksum)
                commit = resolve_commit(src)
                keep = self._keep_git_dir(src)
                self.gits.append((src, commit))
                # The commit names the content: the key needs nothing fetched.
                sources.append((word, f"git:{commit}:{src.subdir}:{keep}"))
                continue
            if self.inst.is_add and is_url(word):
                if self.inst.checksum:
                    # The checksum names the content: a hit needs no download at all.
                    sources.append((word, self.inst.checksum))
                    continue
                name, path, digest, mtime = self._download(word)
                self.downloads.append((name, path, mtime))
                sources.append((word, digest))
        if self.linked:
            # COPY --link: the layer is made on an empty tree, so what it holds depends on
            # neither the image below nor the args and env in scope (the instruction is
            # already expanded): a rebuilt base reuses it (BuildKit's merge-op layers).
            extra.append(("workdir", self.step.workdir))
            return StepInputs(
                "link", instruction_text(self.inst), (), (), str(self.b.bp.platform),
                tuple(sources), tuple(extra), checksum,
            )  # fmt: skip
        return StepInputs(
            self.state.key, instruction_text(self.inst), self.step.args, self.step.env,
            str(self.b.bp.platform), tuple(sources), tuple(extra), checksum,
        )  # fmt: skip

    def _stamp(self) -> tuple[str, str]:
        """(record key, stamp): the stamp sums every selected entry's stat, so an equal stamp
        means the same sources as when the checksum was recorded. No stamp ("") when a file
        is too fresh to trust (see RACY_SECONDS)."""
        assert self.sel is not None
        cutoff = int((time.time() - RACY_SECONDS) * 1e9)
        h = hashlib.sha256()
        for word, files, is_dir in self.sel.words:
            h.update(f"{word}\0{is_dir}\n".encode("utf-8", "surrogateescape"))
            for f in files:
                if f.mtime_ns >= cutoff and stat.S_ISREG(f.mode):
                    return "", ""
                line = (f"{f.path}\0{f.dest}\0{f.mode}\0{f.size}\0{f.mtime_ns}\0{f.inode}"
                        f"\0{f.ctime_ns}\0{f.dev}\0{f.uid}\0{f.gid}"
                        f"\0{f.link_target}\n")  # fmt: skip
                h.update(line.encode("utf-8", "surrogateescape"))
        ident = f"{self.b.context}\0{instruction_text(self.inst)}"
        record = "ctxsum:" + hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()
        return record, h.hexdigest()

    def _read_ahead(self) -> None:
        """Have the context files this COPY will copy read ahead (in layer order, from
        another process) while the step gets ready, when there are many and no earlier
        layer of this COPY gives them (its files are read instead, see previous_files).
        Stopped by ``remember_layer`` (or when the step is dropped)."""
        if self._ahead is not None or self.sel is None or not self.can_write_directly():
            return
        files = [f for f in self.sel.files() if f.kind == "file" and f.size]
        if not worth_reading_ahead([f.size for f in files]):
            return
        if self.b.store.get_cache(self._layer_record()) is not None:
            return
        files.sort(key=lambda f: f.dest.split("/"))
        root = str(self.sel.root)
        self._ahead = ReadAhead([(os.path.join(root, f.path), f.size) for f in files])

    def _keep_git_dir(self, src: GitSource) -> bool:
        if src.keep_git_dir is not None and self.inst.keep_git_dir and not src.keep_git_dir:
            raise InvalidInputError(f"{self.step.loc}: inconsistent keep-git-dir configuration")
        return bool(self.inst.keep_git_dir or src.keep_git_dir)

    def _download(self, url: str) -> tuple[str, Path, str, float | None]:
        """(file name, where it is, sha256 digest, its Last-Modified as a timestamp)."""
        import email.utils

        import httpx

        base = posixpath.basename(urllib.parse.urlparse(url).path)
        name = base if base not in ("", ".", "/") else "__unnamed__"  # BuildKit's name
        path = self.scratch / f"download-{len(self.downloads)}"
        h = hashlib.sha256()
        check = hashlib.new(self.checksum_algorithm()) if self.inst.checksum else None
        size = 0
        mtime: float | None = None
        try:
            with (
                httpx.stream("GET", url, follow_redirects=True, timeout=60) as r,
                open(path, "wb") as out,
            ):
                r.raise_for_status()
                modified = r.headers.get("last-modified")
                if modified:
                    try:
                        mtime = email.utils.parsedate_to_datetime(modified).timestamp()
                    except (TypeError, ValueError):
                        mtime = None
                for chunk in r.iter_bytes(1 << 20):
                    size += len(chunk)
                    if size > _MAX_DOWNLOAD:
                        raise InvalidInputError(f"ADD {url}: more than {_MAX_DOWNLOAD} bytes")
                    h.update(chunk)
                    if check is not None:
                        check.update(chunk)
                    out.write(chunk)
        except httpx.HTTPError as exc:
            raise ToolError(f"ADD {url}: download failed: {exc}") from None
        digest = "sha256:" + h.hexdigest()
        if check is not None and self.inst.checksum:
            got = f"{check.name}:{check.hexdigest()}"
            if self.inst.checksum != got:
                raise DigestMismatchError(f"ADD {url}", self.inst.checksum, got)
        return name, path, digest, mtime

    def checksum_algorithm(self) -> str:
        """The algorithm of `--checksum` (BuildKit's rules: one http(s) or git source, and
        an `algo:hex` digest of sha256, sha384 or sha512)."""
        checksum = self.inst.checksum or ""
        algo, sep, hexpart = checksum.partition(":")
        if not sep or not hexpart or any(c not in "0123456789abcdef" for c in hexpart):
            raise InvalidInputError(f"{self.step.loc}: invalid checksum digest format {checksum!r}")
        if algo not in ("sha256", "sha384", "sha512"):
            raise InvalidInputError(f"{self.step.loc}: unsupported digest algorithm {algo!r}")
        return algo

    def _owner(self, view: Path | None) -> Owner | None:
        if not self.inst.chown:
            return None
        from lamina.runtime import resolve_user

        root = view or self.scratch / "empty"
        root.mkdir(exist_ok=True)
        user, _, group = self.inst.chown.partition(":")
        uid = int(user) if user.isdigit() else resolve_user(root, user).uid
        if not group:
            gid = uid
        elif group.isdigit():
            gid = int(group)
        else:
            gid = resolve_user(root, f"0:{group}").gid
        return Owner(uid, gid)

    @property
    def linked(self) -> bool:
        """`--link` in force: BuildKit ignores it when --chmod is given (dispatchCopy)."""
        return self.inst.link and self.inst.chmod is None

    def can_write_directly(self) -> bool:
        """A plain COPY from the context can be written straight from the context files."""
        return not (self.inst.is_add or self.inst.from_ or self.inst.heredocs)

    def execute(self, lowerdirs: list[Path], direct: bool = False) -> Path:
        """Stage the copy; with `direct`, describe the entries in `self.direct` instead of
        copying them (only the directories above the destination are made)."""
        staging = self.scratch / "layer"
        staging.mkdir()
        os.chmod(staging, 0o755)
        marks = [s for s in self.inst.sources if s.startswith("<<")]
        heredocs = [
            (d.name, d.content.encode())
            for d in self.inst.heredocs
            if any(m.lstrip("<-").strip("'\"") == d.name for m in marks)
        ]
        if direct and self.src is None:
            self._read_ahead()
        with self.b._view(lowerdirs, self.scratch) as view:
            direct = direct and self.can_write_directly()
            # --link: the copy lands on an empty tree; the image below is not consulted.
            stager = Stager(staging, None if self.linked else view, self._owner(view),
                            self.chmod, keep_owner=self.src is not None,
                            direct=direct)  # fmt: skip
            self.direct = stager.direct
            self.context_paths = stager.context_paths
            if self.src is not None:
                src_lowers = ensure_snapshots(self.b.store, self.b.lease, self.src.layers)
                with self.b._view(src_lowers, self.scratch, "from") as src:
                    if src is None:
                        raise NotFoundError(f"{self.step.loc}: --from={self.inst.from_} is empty")
                    try:
                        sel = select(self.inst, src, None)
                    except InvalidInputError as exc:  # the selector speaks of the context
                        where = f"--from={self.inst.from_}"
                        exc.message = exc.message.replace("the build context", where)
                        exc.args = (exc.message,)
                        raise
                    stage(self.inst, sel, stager, self.step.workdir, unpack=self.inst.unpack)
            else:
                assert self.sel is not None
                if self.inst.checksum and not self.downloads:
                    for word in self.inst.sources:
                        if self.inst.is_add and is_url(word):
                            name, path, _, mtime = self._download(word)
                            self.downloads.append((name, path, mtime))
                self.sel.downloads = self.downloads
                trees = []
                for n, (repo, commit) in enumerate(self.gits):
                    top = checkout(repo, commit, self.scratch / f"git-{n}",
                                   self._keep_git_dir(repo))  # fmt: skip
                    trees.append((top, select_sources(top, ["."])))
                stage(self.inst, self.sel, stager, self.step.workdir, heredocs,
                      unpack=self.inst.unpack, trees=trees)  # fmt: skip
        return staging

    def _layer_record(self) -> str:
        """The cache record naming the layer this COPY (same context, instruction and
        workdir) made last time."""
        ident = f"{self.b.context}\0{instruction_text(self.inst)}\0{self.step.workdir}"
        return "copylayer:" + hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()

    def previous_files(self) -> dict[str, str]:
        """Layer path → the same path in the snapshot this COPY made last time, for each
        file whose content (the context's digest against that layer's file index) is the
        same and that is no part of a hardlink set there: what ``DirectCopy`` may hardlink
        instead of writing again (it checks mode, owner, mtime and xattrs itself). The old
        snapshot is held by the build's lease while it is linked from."""
        if not self.direct or not self.digests:
            return {}
        found = self.b.store.get_cache(self._layer_record())
        diff_id = found.value.get("diff_id") if found is not None else None
        if not isinstance(diff_id, str) or not self.b.store.has_layer(diff_id):
            return {}
        self.b.lease.add_snapshot(diff_id)
        if not self.b.store.has_layer(diff_id):  # pruned before the lease held it
            return {}
        cols = self.b.store.file_index.columns(diff_id)
        old: dict[str, str] = {}
        dirs: set[str] = {""}
        in_link_sets: set[str] = set()
        for path, kind, digest, link in zip(cols.paths, cols.kinds, cols.digests, cols.links,
                                            strict=True):  # fmt: skip
            if kind == "file" and digest:
                old[path] = digest
            elif kind == "dir":
                dirs.add(path.rstrip("/"))
            elif kind == "hardlink":
                in_link_sets.add(path)
                in_link_sets.add(link.lstrip("/"))
        snapshot = str(self.b.store.snapshot_path(diff_id))
        out: dict[str, str] = {}
        checked: dict[str, bool] = {}
        for rel, ctx_path in self.context_paths.items():
            digest = old.get(rel)
            if digest is None or rel in in_link_sets:
                continue
            if self.digests.get(ctx_path) != "sha256:" + digest:
                continue
            # Every directory above it is a directory of that layer: the path leads
            # through no symlink, so the link is made from inside that snapshot.
            if not _all_dirs(posixpath.dirname(rel), dirs, checked):
                continue
            out[rel] = os.path.join(snapshot, rel)
        return out

    def remember_layer(self, diff_id: str) -> None:
        """Record the layer this COPY made, for the next build's ``previous_files``."""
        if self._ahead is not None:
            self._ahead.close()
            self._ahead = None
        self.b.store.put_cache(self._layer_record(), {"diff_id": diff_id})


def _all_dirs(path: str, dirs: set[str], checked: dict[str, bool]) -> bool:
    """Whether `path` and every directory above it are in `dirs` ("" is the root)."""
    if path == "":
        return True
    known = checked.get(path)
    if known is None:
        known = path in dirs and _all_dirs(posixpath.dirname(path), dirs, checked)
        checked[path] = known
    return known


def workdir_layer(
    path: str, lowerdirs: list[Path], scratch: Path, view: View, user: str = ""
) -> Path | None:
    """WORKDIR makes its directory as a layer when the image lacks it; None otherwise.

    The directories it creates belong to the current USER (BuildKit's testWorkdirUser:
    `USER user` then `WORKDIR /mydir` gives a /mydir owned by user:user)."""
    with view(lowerdirs, scratch) as root:
        owner = None
        if user:
            from lamina.runtime import resolve_user

            found = resolve_user(root or _empty_root(scratch), user)
            owner = Owner(found.uid, found.gid)
        stager = Stager(scratch / "layer", root, owner, None, keep_owner=False)
        if root is not None and stager._image_path(path)[1]:
            return None
        (scratch / "layer").mkdir()
        os.chmod(scratch / "layer", 0o755)
        stager.make_dirs(path)
        stager.finish()
    return scratch / "layer"


def _empty_root(scratch: Path) -> Path:
    path = scratch / "empty-root"
    path.mkdir(exist_ok=True)
    return path


__all__ = ["CopyStep", "RunStep", "workdir_layer"]
