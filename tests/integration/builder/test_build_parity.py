"""Defects and forms of issue 11, each checked against what Docker/BuildKit document or test.

Sources are cited per test; BuildKit's own frontend cases live in buildkit_cases/ and run
through test_build_buildkit_cases.py.
"""

from __future__ import annotations

import email.utils
import gzip
import http.server
import io
import os
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.errors import InvalidInputError

pytestmark = pytest.mark.integration


def _tar_gz() -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("pkg/file.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"data\n"))
    return gzip.compress(data.getvalue())


def test_add_archive_into_missing_dest_without_slash(context: Path, build, image_tree) -> None:  # type: ignore[no-untyped-def]
    """Docker's ADD reference: a local tar "is unpacked as a directory" at <dest>; BuildKit's
    unpack() creates <dest> (MkdirAll) and untars into it, slash or not."""
    (context / "a.tar.gz").write_bytes(_tar_gz())
    build("FROM busybox\nADD a.tar.gz /dest\nADD a.tar.gz /other/\n", tags=["arch"])
    with image_tree("arch") as root:
        assert (root / "dest/pkg/file.txt").read_text() == "data\n"
        assert (root / "other/pkg/file.txt").read_text() == "data\n"
        assert not (root / "pkg").exists()


def test_add_unpack_false_copies_the_archive(context: Path, build, image_tree) -> None:  # type: ignore[no-untyped-def]
    """Dockerfile reference, ADD --unpack: `--unpack=false` copies a local archive as is."""
    (context / "a.tar.gz").write_bytes(_tar_gz())
    build("FROM busybox\nADD --unpack=false a.tar.gz /kept.tgz\n", tags=["kept"])
    with image_tree("kept") as root:
        assert (root / "kept.tgz").read_bytes() == (context / "a.tar.gz").read_bytes()


def test_gzip_that_holds_no_tar_is_copied_as_a_file(context: Path, build, image_tree) -> None:  # type: ignore[no-untyped-def]
    """BuildKit's isArchivePath reads a tar header from the decompressed stream."""
    (context / "notes.gz").write_bytes(gzip.compress(b"just text\n"))
    build("FROM busybox\nADD notes.gz /n.gz\n", tags=["gz"])
    with image_tree("gz") as root:
        assert gzip.decompress((root / "n.gz").read_bytes()) == b"just text\n"


@pytest.mark.parametrize(
    ("dockerfile", "where"),
    [
        # Dockerfile reference, COPY: "If <dest> doesn't end with a trailing slash, it will
        # be considered a regular file" / "If <dest> ends with a trailing slash /, it will be
        # considered a directory".
        ("COPY f1 /d1", "d1"),
        ("COPY f1 /d2/", "d2/f1"),
        # An existing directory takes the file in (BuildKit copy: dest exists and is a dir).
        ("COPY f1 /etc", "etc/f1"),
        # A wildcard matching one file copies it as <dest> (BuildKit testCopyWildcards
        # `COPY f*.go foo2.go`).
        ("COPY f? /single", "single"),
        ("COPY f? /into/", "into/f1"),
        # A directory's contents land in <dest>, created when missing.
        ("COPY sub /subdest", "subdest/inner"),
        # An empty destination is the working directory (BuildKit testEmptyDestDir).
        ('WORKDIR /w\nENV empty=""\nCOPY f1 $empty', "w/f1"),
        # Several directory sources merge into <dest> (BuildKit's copy of each in turn).
        ("COPY sub sub2 /merged", "merged/inner2"),
    ],
)
def test_copy_destination_rules(  # type: ignore[no-untyped-def]
    dockerfile: str, where: str, context: Path, build, image_tree
) -> None:
    (context / "f1").write_text("one\n")
    (context / "sub").mkdir()
    (context / "sub/inner").write_text("in\n")
    (context / "sub2").mkdir()
    (context / "sub2/inner2").write_text("in2\n")
    build(f"FROM busybox\n{dockerfile}\n", tags=["dest"])
    with image_tree("dest") as root:
        assert (root / where).is_file(), where


def test_copy_through_symlink_destination(context: Path, build, image_tree) -> None:  # type: ignore[no-untyped-def]
    """A file copied onto a symlink is written where the link points, inside the image
    (BuildKit resolves <dest> in the root: testSymlinkDestination does it for a directory)."""
    (context / "f1").write_text("new\n")
    build("FROM busybox\nRUN mkdir /real && ln -s /real/file /link\nCOPY f1 /link\n",
          tags=["sym"])  # fmt: skip
    with image_tree("sym") as root:
        assert os.readlink(root / "link") == "/real/file"
        assert (root / "real/file").read_text() == "new\n"


def test_several_files_into_a_file_destination_are_refused(context: Path, build) -> None:  # type: ignore[no-untyped-def]
    """Dockerfile reference: with several sources "<dest> must be a directory, and it must
    end with a slash"."""
    (context / "f1").write_text("1")
    (context / "f2").write_text("2")
    with pytest.raises(InvalidInputError, match="must be a directory and end with a /"):
        build("FROM busybox\nCOPY f1 f2 /nodir\n")
    with pytest.raises(InvalidInputError, match="must be a directory and end with a /"):
        build("FROM busybox\nCOPY f* /nodir\n")


def test_in_place_edit_with_mtime_restored_is_noticed(context: Path, build, image_tree) -> None:  # type: ignore[no-untyped-def]
    """Issue 11: an edit that keeps size and mtime (`touch -r`) must not be missed; the
    stat identity holds the ctime, as git's index does."""
    f = context / "data.txt"
    f.write_text("version-1\n")
    past = time.time() - 600
    os.utime(f, (past, past))
    os.utime(context, (past, past))
    build("FROM busybox\nCOPY data.txt /data.txt\n", tags=["edit"])
    st = f.stat()
    time.sleep(0.01)
    f.write_text("version-2\n")  # same size
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert f.stat().st_mtime_ns == st.st_mtime_ns and f.stat().st_size == st.st_size
    build(tags=["edit"])
    with image_tree("edit") as root:
        assert (root / "data.txt").read_text() == "version-2\n"


@pytest.fixture
def dated_server(tmp_path: Path) -> Iterator[tuple[str, float]]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "file.txt").write_text("served\n")
    modified = 1_600_000_000.0
    os.utime(root / "file.txt", (modified, modified))  # SimpleHTTPRequestHandler sends it

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", modified
    httpd.shutdown()


def test_add_url_mtime_from_last_modified(dated_server, build, image_tree) -> None:  # type: ignore[no-untyped-def]
    """BuildKit's HTTP source gives the file the response's Last-Modified time."""
    url, modified = dated_server
    assert email.utils.formatdate(modified, usegmt=True)  # what the server sends
    build(f"FROM busybox\nADD {url}/file.txt /f.txt\n", tags=["url"])
    with image_tree("url") as root:
        assert (root / "f.txt").read_text() == "served\n"
        assert (root / "f.txt").stat().st_mtime == modified


def test_copy_link_reuses_its_layer_over_a_changed_base(  # type: ignore[no-untyped-def]
    context: Path, build, image_tree
) -> None:
    """Dockerfile reference, COPY --link: "the layer does not depend on the previous state",
    so a rebuild with a changed base reuses it; the tree is the one COPY would make."""
    (context / "f").write_text("payload\n")
    first = build("FROM busybox\nRUN echo 1 > /base\nCOPY --link f /app/f\n", tags=["l1"])
    second = build("FROM busybox\nRUN echo 2 > /base\nCOPY --link f /app/f\n", tags=["l2"])
    assert second.texts("cached") == ["CACHED"]  # the COPY, not the changed RUN
    plain = build("FROM busybox\nRUN echo 2 > /base\nCOPY f /app/f\n", tags=["l3"])
    assert plain.texts("cached") == ["CACHED"]  # the RUN only
    with image_tree("l2") as linked, image_tree("l3") as copied:
        for rel in ("app", "app/f", "base"):
            a, b = (linked / rel).stat(), (copied / rel).stat()
            assert (a.st_mode, a.st_uid, a.st_gid) == (b.st_mode, b.st_uid, b.st_gid), rel
        assert (linked / "app/f").read_text() == "payload\n"
        assert (linked / "base").read_text() == "2\n"
    assert first.id != second.id


def test_secret_as_env_and_file(tmp_path: Path, build) -> None:  # type: ignore[no-untyped-def]
    """BuildKit testSecretAsEnviron / testSecretAsEnvironWithFileMount / testSecretFileParams."""
    secret = tmp_path / "pw"
    secret.write_text("pw")
    built = build(
        "FROM busybox\nENV SECRET_ENV=foo\n"
        'RUN --mount=type=secret,id=mysecret,env=SECRET_ENV [ "$SECRET_ENV" = "pw" ] '
        "&& [ ! -f /run/secrets/mysecret ]\n"
        "RUN --mount=type=secret,id=mysecret,target=/run/secrets/secret,env=SECRET_ENV "
        '[ "$SECRET_ENV" = "pw" ] && [ -f /run/secrets/secret ]\n'
        "RUN --mount=type=secret,required=false,mode=741,uid=100,gid=102,target=/mysecret "
        '[ "$(stat -c "%u %g %a" /mysecret)" = "100 102 741" ]\n'
        "RUN [ ! -f /mysecret ]\n",
        secrets={"mysecret": secret},
    )
    assert built.id
    assert secret.stat().st_mode & 0o777 != 0o741  # the user's file is never changed


def test_secret_from_environment_variable(build, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """`--secret id=X,env=VAR` (buildx): the value of VAR at build time."""
    from lamina.api import parse_secret

    monkeypatch.setenv("MY_TOKEN", "tok3n")
    ident, value = parse_secret("id=tok,env=MY_TOKEN")
    assert (ident, value) == ("tok", b"tok3n")
    build('FROM busybox\nRUN --mount=type=secret,id=tok [ "$(cat /run/secrets/tok)" = tok3n ]\n',
          secrets={ident: value})  # fmt: skip


def test_required_secret_missing(build) -> None:  # type: ignore[no-untyped-def]
    """BuildKit testSecretRequiredWithoutValue: "secret mysecret: not found"."""
    from lamina.errors import NotFoundError

    with pytest.raises(NotFoundError, match="secret mysecret: not found"):
        build("FROM busybox\nRUN --mount=type=secret,required,id=mysecret true\n")


def test_run_security_insecure_needs_allow(build) -> None:  # type: ignore[no-untyped-def]
    """BuildKit testRunSecurityInsecure: refused without the entitlement; with it the
    step holds every capability lamina may grant, the next step Docker's default set."""
    insecure = "FROM busybox\nRUN --security=insecure grep CapBnd /proc/self/status > /capbnd\n"
    with pytest.raises(InvalidInputError, match=r"entitlement security\.insecure is not allowed"):
        build(insecure)
    built = build(
        insecure + 'RUN [ "$(grep CapBnd /proc/self/status)" = "CapBnd:\t00000000a80425fb" ]\n'
        "RUN cat /capbnd\n",
        allow=["security.insecure"],
        no_cache=True,
    )
    with open("/proc/self/status") as f:
        mine = next(line.split()[1] for line in f if line.startswith("CapBnd:"))
    assert built.output().strip().endswith(mine)


def test_run_network_none_and_host(build) -> None:  # type: ignore[no-untyped-def]
    """BuildKit testRunNoNetwork / testRunHostNetwork: --network=none leaves only lo."""
    built = build(
        "FROM busybox\nRUN --network=none ls /sys/class/net > /none\nRUN cat /none\n"
        "RUN --network=host ls /sys/class/net | wc -l > /host\nRUN cat /host\n",
        no_cache=True,
    )
    lines = built.output().split()
    assert lines[0] == "lo"
    assert int(lines[-1]) >= 1


def test_ssh_mount_socket_params(tmp_path: Path, build) -> None:  # type: ignore[no-untyped-def]
    """BuildKit testSSHSocketParams: the step's SSH_AUTH_SOCK is a socket with the mount's
    mode/uid/gid; the user's agent socket is left as it was."""
    import socket as socketlib

    path = tmp_path / "agent.sock"
    server = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    before = path.stat()
    build(
        "FROM busybox\nRUN --mount=type=ssh,mode=741,uid=100,gid=102 "
        '[ "$(stat -c "%u %g %f" $SSH_AUTH_SOCK)" = "100 102 c1e1" ]\n',
        ssh={"default": path},
    )
    after = path.stat()
    server.close()
    assert (before.st_mode, before.st_uid) == (after.st_mode, after.st_uid)


def test_ssh_mount_without_agent(build) -> None:  # type: ignore[no-untyped-def]
    from lamina.errors import NotFoundError

    with pytest.raises(NotFoundError, match="no SSH key 'default' forwarded"):
        build("FROM busybox\nRUN --mount=type=ssh,required=true true\n")


def test_onbuild_heredoc(build, image_tree) -> None:  # type: ignore[no-untyped-def]
    """BuildKit testOnBuildHeredoc: `ONBUILD RUN <<EOF ... EOF` runs in the child build."""
    build('FROM busybox\nONBUILD RUN <<EOF\necho "hello world" >> /dest\nEOF\n', tags=["obbase"])
    build("FROM obbase\n", tags=["obchild"])
    with image_tree("obchild") as root:
        assert (root / "dest").read_text() == "hello world\n"


def test_healthcheck_start_interval(build, lam) -> None:  # type: ignore[no-untyped-def]
    """Dockerfile reference, HEALTHCHECK --start-interval: Healthcheck.StartInterval in ns."""
    import json

    built = build(
        "FROM busybox\nHEALTHCHECK --interval=30s --start-period=5s --start-interval=2s "
        "--retries=3 CMD true\n",
        tags=["hc"],
    )
    record = lam.store.get_image(lam.resolve("hc").digest)
    config = json.loads(lam.store.content.read_bytes(record.config_digest, 1 << 20))
    assert config["config"]["Healthcheck"] == {
        "Test": ["CMD-SHELL", "true"], "Interval": 30_000_000_000,
        "StartPeriod": 5_000_000_000, "StartInterval": 2_000_000_000, "Retries": 3,
    }  # fmt: skip
    assert built.id


def _git(repo: Path, *args: str) -> str:
    import subprocess

    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A local repository (path ends in .git, as BuildKit's git URLs do)."""
    path = tmp_path / "project.git"
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    (path / "README").write_text("v1\n")
    (path / "sub").mkdir()
    (path / "sub/inner.txt").write_text("inner\n")
    _git(path, "add", ".")
    _git(path, "commit", "-q", "-m", "one")
    _git(path, "tag", "v1")
    return path


def test_add_git_repository(repo: Path, build, image_tree) -> None:  # type: ignore[no-untyped-def]
    """Dockerfile reference, ADD from a git repository: `#ref:subdir`, `--keep-git-dir`;
    the checkout lands as the destination's contents, without .git unless asked."""
    url = f"file://{repo}"
    build(
        f"FROM busybox\nADD {url}#v1 /src\nADD {url}#main:sub /only-sub\n"
        f"ADD --keep-git-dir=true {url} /with-git\n",
        tags=["git"],
    )
    with image_tree("git") as root:
        assert (root / "src/README").read_text() == "v1\n"
        assert (root / "src/sub/inner.txt").read_text() == "inner\n"
        assert not (root / "src/.git").exists()
        assert sorted(p.name for p in (root / "only-sub").iterdir()) == ["inner.txt"]
        assert (root / "with-git/.git").is_dir()


def test_add_git_is_cached_by_commit(repo: Path, build, image_tree) -> None:  # type: ignore[no-untyped-def]
    """The ref resolves to a commit first (git ls-remote): same commit, cache hit; a new
    commit on the branch, a miss with the new content."""
    dockerfile = f"FROM busybox\nADD file://{repo}#main /src\n"
    build(dockerfile, tags=["g1"])
    again = build(dockerfile, tags=["g1"])
    assert again.texts("cached") == ["CACHED"]
    (repo / "README").write_text("v2\n")
    _git(repo, "commit", "-q", "-am", "two")
    changed = build(dockerfile, tags=["g2"])
    assert changed.texts("cached") == []
    with image_tree("g2") as root:
        assert (root / "src/README").read_text() == "v2\n"


def test_git_source_errors(repo: Path, build) -> None:  # type: ignore[no-untyped-def]
    """BuildKit's dispatchCopy: "source can't be a git ref for COPY"; a missing ref and a
    --checksum that is not the commit are refused."""
    from lamina.errors import DigestMismatchError, NotFoundError

    with pytest.raises(InvalidInputError, match="can't be a git ref for COPY"):
        build(f"FROM busybox\nCOPY file://{repo} /x\n")
    with pytest.raises(NotFoundError, match="no ref 'nope'"):
        build(f"FROM busybox\nADD file://{repo}#nope /x\n")
    with pytest.raises(DigestMismatchError):
        build(f"FROM busybox\nADD --checksum=0123abcd file://{repo}#v1 /x\n")
