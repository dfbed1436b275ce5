"""BuildKit's own Dockerfile frontend tests, transcribed as data and built with lamina.

Each file in buildkit_cases/ is one build from a Go test in moby/buildkit
`frontend/dockerfile/dockerfile_*_test.go` (named by `go_test` and `go_file`): the
Dockerfile, the context it creates, and what the Go test asserts about the result (files
in the exported tree, modes, owners, config fields, or the error). Base images are
`busybox` (built from busybox-static; the Go tests' `alpine` becomes `busybox` where
only a shell is needed). A case that lamina does not yet pass carries `xfail = "why"`
and runs as a strict xfail, so fixing it turns the run red until the mark is removed.

Format (TOML):
    go_test, go_file, dockerfile (or file = a context file given as -f), [build_args],
    target, [allow], {secrets}, ssh_agent = true, xfail, xfail_if + xfail_reason (a
    CONDITIONS name: a fact of this machine),
    echo_server = "reply" ({port} in the Dockerfile), git_tags = [...] (a repository over
    dumb HTTP: {server}/.git and {commit:TAG} in the Dockerfile), http_files = {path =
    content or {content, last_modified}} ({http} in the Dockerfile),
    [[then]]: later builds in the same store (dockerfile, build_args, target, tag,
              no_cache, context (replaces the context), expect)
    [context] files = {path = text}, dirs = [...], modes = {path = 0o600}, sockets = [...],
              symlinks = {path = target}, tars = {name = {compress, entries = [...]}}
    [expect] files = {path = text}, absent = [...], modes = {path = 0o644},
             owners = {path = [uid, gid]}, symlinks = {path = target},
             same_file = [[a, b]], dirs = [...], config = {Field = value}, error = "regex",
             contains / lacks = {path = [substrings]}, empty_dirs = [...],
             config_absent = [Field, ...] (null or missing),
             same_as_first = [...] (in [[then]]: the file as the first build made it),
             mtimes = {path = epoch seconds}, same_image = true (in [[then]], no_cache too)
"""

from __future__ import annotations

import email.utils
import gzip
import http.server
import io
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import tarfile
import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest

from lamina.api import build_image
from lamina.errors import LaminaError

pytestmark = pytest.mark.integration

CASES_DIR = Path(__file__).parent / "buildkit_cases"
CASES = sorted(CASES_DIR.glob("*.toml"))


def _load(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        return tomllib.load(f)


def _tar(spec: dict[str, Any]) -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in spec.get("entries", []):
            info = tarfile.TarInfo(e["name"])
            info.mode = e.get("mode", 0o644)
            info.uid, info.gid = e.get("uid", 0), e.get("gid", 0)
            kind = e.get("type", "file")
            content = e.get("content", "").encode()
            if kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, e["linkname"]
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, e["linkname"]
            else:
                info.size = len(content)
            tar.addfile(info, io.BytesIO(content) if kind == "file" else None)
    raw = data.getvalue()
    return gzip.compress(raw, mtime=0) if spec.get("compress") == "gz" else raw


def _make_context(root: Path, spec: dict[str, Any]) -> None:
    for d in spec.get("dirs", []):
        (root / d).mkdir(parents=True, exist_ok=True)
    for name, text in spec.get("files", {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for name, tar_spec in spec.get("tars", {}).items():
        (root / name).write_bytes(_tar(tar_spec))
    for name, target in spec.get("symlinks", {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, root / name)
    for name in spec.get("sockets", []):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(root / name))
        sock.close()
    for name, mode in spec.get("modes", {}).items():
        os.chmod(root / name, mode)


# Docker Hub's busybox image has every applet and these users and groups; the Go tests
# rely on them (awk, whoami, `--chown=daemon`, `--chown=1000:nobody`). The base made
# from busybox-static gets them in a few layers before each case; `app` (1000) stays as
# tests/busybox_rootfs.py has it.
HUB_BUSYBOX_ETC = """FROM busybox
RUN /bin/busybox --install -s /bin && mkdir -p /usr/bin && ln -s /bin/env /usr/bin/env
COPY <<EOF /etc/passwd
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/home:/bin/false
EOF
COPY <<EOF /etc/group
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
wheel:x:10:root
staff:x:50:app
users:x:100:
app:x:1000:
nobody:x:65534:
EOF
"""


def _git_server(repo: Path, tags: list[str]) -> tuple[str, dict[str, str]]:
    """`git init`, one commit per tag writing "foo of TAG" to foo, update-server-info;
    served over plain HTTP on 127.0.0.1 (BuildKit's testAddGit does the same)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test", *args],
                              cwd=repo, capture_output=True, text=True, check=True)  # fmt: skip
        return done.stdout.strip()

    repo.mkdir()
    git("init", "-q")
    commits = {}
    for tag in tags:
        (repo / "foo").write_text(f"foo of {tag}\n")
        git("add", "foo")
        git("commit", "-q", "-m", tag)
        git("tag", tag)
        commits[tag] = git("rev-parse", tag)
    git("update-server-info")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(repo), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}", commits


def _http_server(files: dict[str, Any]) -> str:
    """Serves `path = "content"` or `path = {content, last_modified (epoch seconds)}`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            entry = files.get(self.path)
            if entry is None:
                self.send_error(404)
                return
            spec = entry if isinstance(entry, dict) else {"content": entry}
            body = spec["content"].encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            if "last_modified" in spec:
                self.send_header("Last-Modified", email.utils.formatdate(
                    spec["last_modified"], usegmt=True))  # fmt: skip
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}"


def _echo_server(reply: bytes) -> int:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return int(server.getsockname()[1])


def _lacks_cap_sys_resource() -> bool:
    with open("/proc/self/status") as f:
        bounding = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    return not bounding >> 24 & 1


# Machine facts a case may depend on (`xfail_if`): strict xfail where they hold.
CONDITIONS = {"no CAP_SYS_RESOURCE": _lacks_cap_sys_resource}


def _config(lam: Any, ref: str) -> dict[str, Any]:
    record = lam.store.get_image(lam.resolve(ref).digest)
    return json.loads(lam.store.content.read_bytes(record.config_digest, 8 << 20))  # type: ignore[no-any-return]


@pytest.mark.parametrize("case", CASES, ids=[p.stem for p in CASES])
def test_buildkit_case(case: Path, context: Path, build, image_tree, lam) -> None:  # type: ignore[no-untyped-def]
    spec = _load(case)
    assert spec["go_test"].startswith("test") and spec["go_file"].endswith("_test.go")
    if spec.get("xfail_if") and CONDITIONS[spec["xfail_if"]]():
        spec = {**spec, "xfail": f"{spec['xfail_if']}: {spec['xfail_reason']}"}
    base_ctx = context.parent / "hub-busybox"
    base_ctx.mkdir()
    build(HUB_BUSYBOX_ETC, ctx=base_ctx, tags=["busybox"])
    _make_context(context, spec.get("context", {}))
    placeholders: dict[str, str] = {}
    if "git_tags" in spec:  # a repository behind a dumb-http server, as the Go test serves it
        server, commits = _git_server(context.parent / "gitrepo", spec["git_tags"])
        placeholders["{server}"] = server
        placeholders.update({"{commit:" + tag + "}": c for tag, c in commits.items()})
    if "http_files" in spec:  # BuildKit's httpserver.NewTestServer: path → response
        placeholders["{http}"] = _http_server(spec["http_files"])
    if "echo_server" in spec:  # BuildKit's echoserver: answers every connection, then closes
        placeholders["{port}"] = str(_echo_server(spec["echo_server"].encode()))
    expect = spec.get("expect", {})
    options: dict[str, Any] = {"tags": ["case"], "build_args": spec.get("build_args", {})}
    if spec.get("target"):
        options["target"] = spec["target"]
    if spec.get("allow"):
        options["allow"] = spec["allow"]
    if spec.get("ssh_agent"):  # the Go test's sshprovider: an agent socket to forward
        agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        agent.bind(str(context.parent / "agent.sock"))
        agent.listen(1)
        options["ssh"] = {"default": context.parent / "agent.sock"}
    if spec.get("secrets"):  # the Go test's secretsprovider.FromMap
        options["secrets"] = {k: v.encode() for k, v in spec["secrets"].items()}
    if spec.get("file"):  # -f NAME: the Dockerfile is a context file of that name
        options["dockerfile"] = Path(spec["file"])

    def build_case(text: str | None, **opts: Any) -> Any:
        if text is not None:
            for mark, value in placeholders.items():
                text = text.replace(mark, value)
            (context / "Dockerfile").write_text(text)
        return build_image(lam, context, **opts)

    try:
        _check(spec, expect, context, build_case, image_tree, lam, options)
        # Later builds of the same Go test, in the same store (cache behaviour).
        first: dict[str, bytes] = {}
        first_id = lam.resolve(options["tags"][0]).id if "error" not in expect else ""
        wanted = {rel for then in spec.get("then", [])
                  for rel in then.get("expect", {}).get("same_as_first", [])}  # fmt: skip
        if wanted:
            with image_tree(options["tags"][0]) as root:
                first = {rel: (root / rel).read_bytes() for rel in wanted}
        for then in spec.get("then", []):
            step = {**spec, **then}
            if "context" in then:  # the context as the next build sees it
                shutil.rmtree(context)
                context.mkdir()
                _make_context(context, then["context"])
            step_options = {**options, "build_args": then.get("build_args", {})}
            if "tag" in then:
                step_options["tags"] = [then["tag"]]
            if then.get("no_cache"):
                step_options["no_cache"] = True
            if then.get("target"):
                step_options["target"] = then["target"]
            elif "target" in then:
                step_options.pop("target", None)
            _check(step, then.get("expect", {}), context, build_case, image_tree, lam,
                   step_options)  # fmt: skip
            if then.get("expect", {}).get("same_image"):
                assert lam.resolve(step_options["tags"][0]).id == first_id
            same = then.get("expect", {}).get("same_as_first", [])
            if same:
                with image_tree(step_options["tags"][0]) as root:
                    for rel in same:
                        assert (root / rel).read_bytes() == first[rel], rel
    except (AssertionError, LaminaError) as exc:
        if "xfail" in spec:
            pytest.xfail(f"{spec['xfail']} ({type(exc).__name__}: {str(exc)[:200]})")
        raise
    if "xfail" in spec:
        pytest.fail(f"{case.name} passes now: remove its xfail ({spec['xfail']})")


def _check(spec: dict[str, Any], expect: dict[str, Any], context: Path, build: Any,
           image_tree: Any, lam: Any, options: dict[str, Any]) -> None:  # fmt: skip
    if "error" in expect:
        with pytest.raises(LaminaError) as info:
            build(spec.get("dockerfile"), **options)
        assert re.search(expect["error"], str(info.value)), str(info.value)
        return
    build(spec.get("dockerfile"), **options)
    if "config" in expect or "config_absent" in expect:
        config = _config(lam, options["tags"][0])["config"]
        for key, value in expect.get("config", {}).items():
            assert config.get(key) == value, (key, config.get(key))
        for key in expect.get("config_absent", []):
            assert config.get(key) is None, (key, config.get(key))
    checks = ("files", "absent", "modes", "owners", "symlinks", "same_file", "dirs", "contains",
              "lacks", "empty_dirs", "mtimes")  # fmt: skip
    if not any(k in expect for k in checks):
        return
    with image_tree(options["tags"][0]) as root:
        for rel, text in expect.get("files", {}).items():
            assert (root / rel).read_text() == text, rel
        for rel in expect.get("absent", []):
            assert not os.path.lexists(root / rel), rel
        for rel, parts in expect.get("contains", {}).items():
            text = (root / rel).read_text()
            assert all(p in text for p in parts), (rel, text)
        for rel, parts in expect.get("lacks", {}).items():
            text = (root / rel).read_text()
            assert not any(p in text for p in parts), (rel, text)
        for rel in expect.get("dirs", []):
            assert (root / rel).is_dir(), rel
        for rel, when in expect.get("mtimes", {}).items():
            assert os.lstat(root / rel).st_mtime == when, rel
        for rel in expect.get("empty_dirs", []):
            assert (root / rel).is_dir() and not list((root / rel).iterdir()), rel
        for rel, mode in expect.get("modes", {}).items():
            got = stat.S_IMODE(os.lstat(root / rel).st_mode)
            assert got == mode, f"{rel}: {got:o} != {mode:o}"
        for rel, (uid, gid) in expect.get("owners", {}).items():
            st = os.lstat(root / rel)
            assert (st.st_uid, st.st_gid) == (uid, gid), rel
        for rel, target in expect.get("symlinks", {}).items():
            assert os.readlink(root / rel) == target, rel
        for a, b in expect.get("same_file", []):
            assert os.path.samefile(root / a, root / b), (a, b)
