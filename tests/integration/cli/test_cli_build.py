"""`lamina build` command-line conventions, through the real command on a busybox base.

References: the `docker build` / `docker buildx build` reference (docs.docker.com):
`-` reads the context (a tar archive, optionally compressed) or a Dockerfile with no
context from stdin; `-f -` reads the Dockerfile from stdin; `--iidfile`; `--label`;
`--platform`; `-o type=docker|oci|local|tar,dest=...` (BuildKit's exporters; `-o DIR` is
`type=local,dest=DIR`); `--progress=auto` falls back to plain output without a terminal,
where a RUN's output lines appear as `#N <seconds> <line>`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
OTHER_ARCH = "arm64" if HOST_ARCH == "amd64" else "amd64"


def lamina(
    root: Path, *args: str, stdin: bytes | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "lamina", "--root", str(root), *args],
        capture_output=True,
        input=stdin if stdin is not None else b"",
        check=False,
        cwd=cwd,
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def ok(root: Path, *args: str, stdin: bytes | None = None, cwd: Path | None = None) -> str:
    done = lamina(root, *args, stdin=stdin, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout


def image_id(out: str) -> str:
    last = out.strip().splitlines()[-1]
    assert last.startswith("sha256:"), out
    return last


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Iterator[Path]:
    store = tmp_path_factory.mktemp("build-cli") / "root"
    ok(store, "import", str(busybox_rootfs), "busybox")
    yield store


def tree_of(root: Path, *build_args: str, stdin: bytes | None = None, tmp: Path) -> Path:
    """Build and export the final tree with `-o type=local` (checked on its own below)."""
    dest = tmp / "out"
    ok(root, "build", "-q", "-o", f"type=local,dest={dest}", *build_args, stdin=stdin)
    return dest


def skopeo(*args: str) -> str:
    """skopeo, an independent reader of the archives lamina writes."""
    return subprocess.run(["skopeo", *args], capture_output=True, check=True, text=True).stdout


def make_tar(files: dict[str, bytes], *, gz: bool = False) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    data = raw.getvalue()
    return gzip.compress(data, mtime=0) if gz else data


def no_leftovers(root: Path) -> None:
    tmp = root / "tmp"
    assert not tmp.exists() or [p.name for p in tmp.iterdir() if "build-input" in p.name] == []


# -- stdin, archives ---------------------------------------------------------------------------


def test_dockerfile_on_stdin_has_no_context(root: Path, tmp_path: Path) -> None:
    dockerfile = b"FROM busybox\nRUN echo from-stdin > /made\n"
    tree = tree_of(root, "-", stdin=dockerfile, tmp=tmp_path)
    assert (tree / "made").read_text() == "from-stdin\n"
    done = lamina(root, "build", "-", stdin=b"FROM busybox\nCOPY missing.txt /x\n")
    assert done.returncode == 1
    assert "missing.txt" in done.stderr
    no_leftovers(root)


def test_dockerfile_from_stdin_with_a_context_directory(root: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("A\n")
    (ctx / "skip.txt").write_text("S\n")
    (ctx / ".dockerignore").write_text("skip.txt\n")
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo wrong-dockerfile > /which\n")
    stdin = b"FROM busybox\nCOPY . /ctx/\nRUN echo stdin-dockerfile > /which\n"
    tree = tree_of(root, "-f", "-", str(ctx), stdin=stdin, tmp=tmp_path)
    assert (tree / "which").read_text() == "stdin-dockerfile\n"
    assert sorted(p.name for p in (tree / "ctx").iterdir()) == [".dockerignore", "Dockerfile",
                                                                "a.txt"]  # fmt: skip


def test_both_from_stdin_is_refused(root: Path) -> None:
    done = lamina(root, "build", "-f", "-", "-", stdin=b"FROM busybox\n")
    assert done.returncode == 1
    assert "both" in done.stderr and "stdin" in done.stderr


CTX_FILES = {
    "Dockerfile": b"FROM busybox\nCOPY . /ctx/\nRUN cat /ctx/data.txt > /seen\n",
    "data.txt": b"tar-context\n",
    "sub/Dockerfile.alt": b"FROM busybox\nCOPY sub/other.txt /other\n",
    "sub/other.txt": b"other\n",
}


@pytest.mark.parametrize("gz", [False, True])
def test_tar_context_on_stdin(root: Path, tmp_path: Path, gz: bool) -> None:
    tree = tree_of(root, "-", stdin=make_tar(CTX_FILES, gz=gz), tmp=tmp_path)
    assert (tree / "seen").read_text() == "tar-context\n"
    assert (tree / "ctx" / "sub" / "other.txt").read_text() == "other\n"
    no_leftovers(root)


def test_tar_context_as_a_file_and_f_inside_it(root: Path, tmp_path: Path) -> None:
    archive = tmp_path / "ctx.tar.gz"
    archive.write_bytes(make_tar(CTX_FILES, gz=True))
    tree = tree_of(root, str(archive), tmp=tmp_path)
    assert (tree / "seen").read_text() == "tar-context\n"
    alt = tmp_path / "alt"
    ok(root, "build", "-q", "-f", "sub/Dockerfile.alt", "-o", str(alt), str(archive))
    assert (alt / "other").read_text() == "other\n"
    assert not (alt / "seen").exists()


def test_a_context_file_that_is_not_an_archive_is_refused(root: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    done = lamina(root, "build", str(text))
    assert done.returncode == 1
    assert "neither a directory nor a tar archive" in done.stderr


def hostile_tar(entries: list[tuple[str, str]]) -> bytes:
    """(name, symlink target or "" for a 2-byte file) entries, then a Dockerfile."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, target in entries:
            info = tarfile.TarInfo(name)
            if target:
                info.type = tarfile.SYMTYPE
                info.linkname = target
                tar.addfile(info)
            else:
                info.size = 2
                tar.addfile(info, io.BytesIO(b"x\n"))
        info = tarfile.TarInfo("Dockerfile")
        data = b"FROM busybox\nCOPY . /ctx/\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def test_context_archive_symlink_then_file_through_it_stays_inside(
    root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    data = hostile_tar([("escape", str(outside)), ("escape/pwned", "")])
    dest = tmp_path / "tree"
    ok(root, "build", "-q", "-o", str(dest), "-", stdin=data)
    assert list(outside.iterdir()) == []
    # The symlink is resolved inside the context as if it were `/` (layers' scoped resolver).
    assert os.readlink(dest / "ctx" / "escape") == str(outside)
    assert (dest / "ctx" / str(outside).lstrip("/") / "pwned").read_text() == "x\n"
    no_leftovers(root)


def test_context_archive_absolute_name_is_relative_to_the_context(
    root: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "tree"
    marker = tmp_path / "abs-pwned"
    ok(root, "build", "-q", "-o", str(dest), "-", stdin=hostile_tar([(str(marker), "")]))
    assert not marker.exists()
    assert (dest / "ctx" / str(marker).lstrip("/")).read_text() == "x\n"


def test_context_archive_dotdot_is_refused(root: Path, tmp_path: Path) -> None:
    done = lamina(root, "build", "-", stdin=hostile_tar([("../pwned-too", "")]))
    assert done.returncode == 1
    assert done.stderr.startswith("Error: build context archive: tar entry '../pwned-too'")
    assert not (root / "pwned-too").exists() and not (root / "tmp" / "pwned-too").exists()
    no_leftovers(root)


def test_a_truncated_archive_is_a_clear_error(root: Path) -> None:
    data = make_tar(CTX_FILES, gz=True)[:-40]
    done = lamina(root, "build", "-", stdin=data)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and done.stderr.startswith("Error: ")
    no_leftovers(root)


def test_dash_f_is_relative_to_the_current_directory(root: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (tmp_path / "Dockerfile.here").write_text("FROM busybox\nRUN echo cwd > /which\n")
    (ctx / "Dockerfile.ctx").write_text("FROM busybox\nRUN echo ctx > /which\n")
    dest = tmp_path / "out"
    ok(root, "build", "-q", "-f", "Dockerfile.here", "-o", str(dest), str(ctx), cwd=tmp_path)
    assert (dest / "which").read_text() == "cwd\n"
    # Not found from the current directory: lamina looks in the context.
    ok(root, "build", "-q", "-f", "Dockerfile.ctx", "-o", str(dest), str(ctx), cwd=tmp_path)
    assert (dest / "which").read_text() == "ctx\n"


# -- iidfile, labels, platform -------------------------------------------------------------------


def test_iidfile_holds_the_image_id(root: Path, tmp_path: Path) -> None:
    iid = tmp_path / "iid"
    out = ok(root, "build", "--iidfile", str(iid), "-", stdin=b"FROM busybox\nENV X=1\n")
    assert iid.read_text() == image_id(out)


def test_labels_go_on_the_image_and_change_its_id(root: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nLABEL team=core keep=1\nCOPY Dockerfile /\n")
    first = image_id(ok(root, "build", "--label", "team=edge", "--label", "empty", str(ctx)))
    labels = json.loads(ok(root, "inspect", "-f", "{{json .Config.Labels}}", first))
    assert labels == {"team": "edge", "keep": "1", "empty": ""}
    # A rebuild with other labels is not answered from the first build's record.
    second = image_id(ok(root, "build", "--label", "team=other", str(ctx)))
    assert second != first
    assert ok(root, "inspect", "-f", "{{.Config.Labels.team}}", second) == "other\n"
    plain = image_id(ok(root, "build", str(ctx)))
    assert ok(root, "inspect", "-f", "{{.Config.Labels.team}}", plain) == "core\n"


def test_another_platform_builds_without_run(root: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text("data\n")
    (ctx / "Dockerfile").write_text('FROM scratch\nCOPY f /f\nCMD ["/f"]\n')
    built = image_id(ok(root, "build", "--platform", f"linux/{OTHER_ARCH}", str(ctx)))
    shown = ok(root, "inspect", "-f", "{{.Os}}/{{.Architecture}}", built)
    assert shown == f"linux/{OTHER_ARCH}\n"
    short = image_id(ok(root, "build", "--platform", OTHER_ARCH, str(ctx)))
    assert short == built
    host = image_id(ok(root, "build", str(ctx)))
    assert host != built
    assert ok(root, "inspect", "-f", "{{.Architecture}}", host) == f"{HOST_ARCH}\n"


def test_run_for_another_platform_is_refused_naming_it(root: Path, tmp_path: Path) -> None:
    stdin = b"FROM scratch\nCOPY --from=busybox /bin/busybox /bin/sh\nRUN echo hi\n"
    done = lamina(root, "build", "--platform", f"linux/{OTHER_ARCH}", "-", stdin=stdin)
    assert done.returncode == 1
    first = done.stderr.splitlines()[0]
    assert f"RUN cannot run for linux/{OTHER_ARCH}" in first
    assert f"linux/{HOST_ARCH} only" in first and "Dockerfile:3" in first


def test_a_base_image_of_another_platform_is_refused(root: Path) -> None:
    done = lamina(root, "build", "--platform", f"linux/{OTHER_ARCH}", "-",
                  stdin=b"FROM busybox\nENV A=1\n")  # fmt: skip
    assert done.returncode == 1
    assert f"is a linux/{HOST_ARCH} image" in done.stderr


def test_the_host_platform_runs(root: Path) -> None:
    out = ok(root, "build", "--platform", f"linux/{HOST_ARCH}", "-",
             stdin=b"FROM busybox\nRUN echo fine\n")  # fmt: skip
    assert image_id(out)


def test_a_malformed_platform_is_refused(root: Path) -> None:
    done = lamina(root, "build", "--platform", "linux/", "-", stdin=b"FROM busybox\n")
    assert done.returncode == 1 and "--platform" in done.stderr


# -- -o exporters ---------------------------------------------------------------------------------

LAYERED = (
    b"FROM busybox\n"
    b"RUN mkdir -p /app/bin && echo one > /app/one && echo gone > /app/gone"
    b" && ln -s one /app/link && echo x > /app/bin/tool && chmod 0750 /app/bin/tool\n"
    b"RUN rm /app/gone\n"
)


def test_output_local_writes_the_final_tree(root: Path, tmp_path: Path) -> None:
    dest = tmp_path / "tree"
    out = ok(root, "build", "-o", f"type=local,dest={dest}", "-", stdin=LAYERED)
    assert image_id(out)
    assert (dest / "app" / "one").read_text() == "one\n"
    assert not (dest / "app" / "gone").exists()  # the later layer's whiteout applied
    assert os.readlink(dest / "app" / "link") == "one"
    assert (dest / "app" / "bin" / "tool").stat().st_mode & 0o7777 == 0o750
    assert (dest / "bin" / "busybox").is_file()
    assert not list(dest.rglob(".wh.*"))
    shorthand = tmp_path / "short"
    ok(root, "build", "-q", "-o", str(shorthand), "-", stdin=LAYERED)
    assert (shorthand / "app" / "one").read_text() == "one\n"


def test_output_tar_is_the_final_tree(root: Path, tmp_path: Path) -> None:
    dest = tmp_path / "tree.tar"
    ok(root, "build", "-q", "-o", f"type=tar,dest={dest}", "-", stdin=LAYERED)
    with tarfile.open(dest) as tar:
        names = set(tar.getnames())
    assert {"app/one", "app/link", "bin/busybox"} <= {n.removeprefix("./") for n in names}
    assert not any("gone" in n or ".wh." in n for n in names)


def test_output_docker_archive_reads_with_skopeo(root: Path, tmp_path: Path) -> None:
    dest = tmp_path / "image.tar"
    out = ok(root, "build", "-t", "exported:1", "-o", f"type=docker-archive,dest={dest}", "-",
             stdin=LAYERED)  # fmt: skip
    built = image_id(out)
    seen = json.loads(skopeo("inspect", "--config", f"docker-archive:{dest}"))
    assert len(seen["rootfs"]["diff_ids"]) == 3
    other = tmp_path / "root2"
    loaded = ok(other, "load", "-i", str(dest))
    assert "exported:1" in loaded
    assert ok(other, "inspect", "-f", "{{.Id}}", "exported:1").strip() == built
    docker_alias = tmp_path / "alias.tar"
    ok(root, "build", "-q", "-o", f"type=docker,dest={docker_alias}", "-", stdin=LAYERED)
    assert docker_alias.stat().st_size > 0


def test_output_oci_archive_reads_with_skopeo(root: Path, tmp_path: Path) -> None:
    dest = tmp_path / "image.oci.tar"
    out = ok(root, "build", "-o", f"type=oci-archive,dest={dest}", "-", stdin=LAYERED)
    built = image_id(out)
    raw_config = skopeo("inspect", "--raw", "--config", f"oci-archive:{dest}")
    assert "sha256:" + hashlib.sha256(raw_config.encode()).hexdigest() == built
    assert json.loads(skopeo("inspect", "--config", f"oci-archive:{dest}"))["os"] == "linux"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("type=zip,dest=x", "unknown exporter type 'zip'"),
        ("type=local", "needs dest=PATH"),
        ("type=docker,dest=-", "needs dest=PATH"),
        ("type=local,dest=x,compression=gzip", "unknown option 'compression'"),
    ],
)
def test_a_bad_output_is_refused_before_building(root: Path, spec: str, message: str) -> None:
    done = lamina(root, "build", "-o", spec, "-", stdin=b"FROM busybox\nRUN echo never\n")
    assert done.returncode == 1
    assert message in done.stderr
    assert "never" not in done.stdout


# -- progress and --explain ---------------------------------------------------------------------


def test_auto_progress_without_a_terminal_streams_run_output(root: Path) -> None:
    dockerfile = (
        b"FROM busybox\n"
        # Both streams are one pipe from the process to lamina (fds 1 and 2 of the RUN
        # process, nothing copying in between): writes with no delay keep their order.
        b"RUN echo o1; echo e1 >&2; echo o2; echo e2 >&2; echo o3; sleep 1; echo after-sleep;"
        b" i=0; while [ $i -lt 50 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done;"
        b" printf no-newline\n"
    )
    out = ok(root, "build", "--no-cache", "-", stdin=dockerfile)
    lines = out.splitlines()
    run_step = next(line.split()[0] for line in lines if "RUN echo o1" in line)
    output = [line.split(" ", 2) for line in lines if line.startswith(run_step + " ")]
    timed = [o for o in output if len(o) == 3 and re.fullmatch(r"\d+\.\d{3}", o[1])]
    printed = [(float(seconds), text) for _n, seconds, text in timed]
    texts = [text for _s, text in printed]
    interleaved = [f"{kind}{i}" for i in range(50) for kind in ("out", "err")]
    assert texts == ["o1", "e1", "o2", "e2", "o3", "after-sleep", *interleaved, "no-newline"]
    seconds = dict((text, s) for s, text in printed)
    # Lines appear as they come: the one after `sleep 1` is stamped a second later.
    assert seconds["after-sleep"] - seconds["o1"] >= 0.9
    assert any(line.startswith(f"{run_step} DONE ") for line in lines)


def test_no_cache_explain_names_no_cache(root: Path) -> None:
    dockerfile = b"FROM busybox\nRUN echo explained > /e\n"
    ok(root, "build", "-", stdin=dockerfile)
    out = ok(root, "build", "--no-cache", "--explain", "-", stdin=dockerfile)
    misses = [line for line in out.splitlines() if "cache miss" in line]
    assert misses and all("--no-cache" in line for line in misses)
    assert "cache entry was removed" not in out


def test_a_relative_root_builds_a_run_step(tmp_path: Path, busybox_rootfs: Path) -> None:
    # Found trying `--root root`: overlayfs refused the relative lower dirs.
    ok(Path("rel-root"), "import", str(busybox_rootfs), "busybox", cwd=tmp_path)
    out = ok(Path("rel-root"), "build", "-q", "-", cwd=tmp_path,
             stdin=b"FROM busybox\nRUN echo relative > /r\n")  # fmt: skip
    assert image_id(out)
    assert (tmp_path / "rel-root" / "metadata.db").is_file()


def test_explain_names_the_changed_file_of_a_tar_context(root: Path) -> None:
    files = {**CTX_FILES, "Dockerfile": b"FROM busybox\nCOPY data.txt /d\n"}
    ok(root, "build", "-q", "-", stdin=make_tar(files))
    changed = {**files, "data.txt": b"edited\n"}
    out = ok(root, "build", "--explain", "-", stdin=make_tar(changed))
    assert "cache miss: file changed: data.txt (modified)" in out
