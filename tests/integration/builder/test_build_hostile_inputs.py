"""Hostile build contexts and broken Dockerfiles through `lamina build`: symlinks out of the
context, `..` sources, archives with traversal members, .dockerignore patterns that make a
backtracking matcher hang, expansions that grow without bound or nest without end. Each
either builds what Docker builds (nothing read or written outside the context and the
store) or is one `Error:` line with exit 1, leaving `lamina images` and fsck as they were."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from lamina._rmtree import remove_tree

pytestmark = pytest.mark.integration

SECRET = "lamina-secret-outside-the-context"


def _lamina(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lamina", "--root", str(root), *args],
                          capture_output=True, text=True, check=False, timeout=120)  # fmt: skip


def _tar(*members: tuple[str, str, str]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, value in members:
            info = tarfile.TarInfo(name)
            data = value.encode() if kind == "file" else None
            if kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, value
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, value
            else:
                info.size = len(value)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _listing(top: Path, skip: Path) -> list[tuple[str, str]]:
    """Every path under ``top`` but ``skip`` (the store), with its content or link target."""
    rows = []
    for path in sorted([top, *top.rglob("*")]):
        if path == skip or skip in path.parents:
            continue
        body = os.readlink(path) if path.is_symlink() else path.read_bytes().hex() if (
            path.is_file()) else ""  # fmt: skip
        rows.append((str(path), body))
    return rows


Setup = Callable[[Path, Path], None]  # (context, outside)


def _links_out(ctx: Path, outside: Path) -> None:
    (ctx / "d").mkdir()
    (ctx / "d" / "f").write_text("inside")
    os.symlink(outside, ctx / "d" / "abs")  # an absolute link out of the context
    os.symlink("../../outside/secret", ctx / "d" / "rel")  # a relative one
    os.symlink(outside, ctx / "dirlink")


def _archive(*members: tuple[str, str, str]) -> Setup:
    def setup(ctx: Path, outside: Path) -> None:
        (ctx / "evil.tar").write_bytes(
            _tar(*[(n, k, v.replace("@OUT@", str(outside))) for n, k, v in members])
        )

    return setup


def _ignore(text: str, names: tuple[str, ...] = ("x",)) -> Setup:
    def setup(ctx: Path, outside: Path) -> None:
        (ctx / ".dockerignore").write_text(text)
        for name in names:
            (ctx / name).write_text("x")

    return setup


def _nothing(ctx: Path, outside: Path) -> None:
    (ctx / "x").write_text("x")


PATHOLOGICAL = "*a" * 20 + "*b"
REFUSED: dict[str, tuple[Setup, str, str]] = {
    "COPY ../ a file outside": (_nothing, "FROM scratch\nCOPY ../outside/secret /s\n",
                                "outside the build context"),
    "COPY .. the parent": (_nothing, "FROM scratch\nCOPY .. /s\n", "outside the build context"),
    "COPY through a symlinked directory out": (
        _links_out, "FROM scratch\nCOPY dirlink/secret /s\n", "not found in the build context"),
    "ADD of a tar with a .. member": (
        _archive((f"../../../{SECRET}", "file", "pwned")), "FROM scratch\nADD evil.tar /\n",
        "'..' in a layer path"),
    "ADD of a tar with a hardlink out": (
        _archive(("h", "hardlink", "@OUT@/secret")), "FROM scratch\nADD evil.tar /\n",
        "does not exist"),
    "ADD of a tar with a hardlink through its own symlink": (
        _archive(("l", "symlink", "@OUT@"), ("h", "hardlink", "l/secret")),
        "FROM scratch\nADD evil.tar /\n", "does not exist"),
    "a bad .dockerignore pattern": (_ignore("[\n"), "FROM scratch\nCOPY . /c\n", "bad pattern"),
    "an unterminated heredoc": (_nothing, "FROM scratch\nCOPY <<EOF /x\nhello\n",
                                "unterminated heredoc"),
    "a NUL in the Dockerfile": (_nothing, "FROM scratch\nLABEL a=b\0c\n", "NUL"),
    "a 1 MB line": (_nothing, "FROM scratch\nLABEL a=" + "x" * (1 << 20) + "\n",
                    "max allowed size"),
    "substitutions nested 5000 deep": (
        _nothing, "FROM scratch\nENV B=" + "${A:-" * 5000 + "x" + "}" * 5000 + "\n",
        "nested more than"),
    "an expansion that doubles into gigabytes": (
        _nothing,
        "FROM scratch\nARG A=" + "a" * 64 + "\n" + "".join(
            f"ENV {v}=" + f"${p}" * 10 + "\n" for p, v in zip("ABCDEFG", "BCDEFGH", strict=True))
        , "longer than"),
    "a config too big to read back": (
        _nothing,
        "FROM scratch\nARG A=" + "a" * 60000 + "\n" + "".join(
            f"LABEL l{n}=${{A}}${{A}}${{A}}${{A}}${{A}}${{A}}${{A}}${{A}}\n" for n in range(20)),
        "more than the 8388608 lamina reads back"),
}  # fmt: skip


@pytest.fixture
def arena(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(root, context, a directory beside the context with a secret in it)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text(SECRET)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    return tmp_path / "root", ctx, outside


def _no_secret_in(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 1 << 20:
            assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_hostile_build_input_is_refused(arena: tuple[Path, Path, Path], case: str) -> None:
    root, ctx, outside = arena
    setup, dockerfile, message = REFUSED[case]
    setup(ctx, outside)
    (ctx / "Dockerfile").write_text(dockerfile)
    before = _listing(ctx.parent, root)
    done = _lamina(root, "build", "--progress", "plain", "-t", "evil:1", str(ctx))
    assert done.returncode == 1, done.stdout + done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1 and message in error[0], done.stderr
    assert "Traceback" not in done.stderr
    assert _listing(ctx.parent, root) == before
    assert not (ctx.parent.parent / SECRET).exists() and not Path(f"/{SECRET}").exists()
    assert "evil" not in _lamina(root, "images").stdout
    assert _lamina(root, "fsck").returncode == 0
    _no_secret_in(root)


def test_symlinks_out_of_the_context_are_copied_as_links(arena: tuple[Path, Path, Path]) -> None:
    """Docker copies a symlink inside a copied directory as the link itself, never what it
    points at. An ignore pattern that would make a backtracking matcher run for hours, a
    COPY wildcard and ${A%%...} / ${A//...} patterns of the same shape build at once."""
    root, ctx, outside = arena
    _links_out(ctx, outside)
    (ctx / ".dockerignore").write_text(f"d/{PATHOLOGICAL}\n")
    (ctx / "d" / ("a" * 100)).write_text("kept: the pattern needs a final b")
    (ctx / "d" / ("a" * 100 + "b")).write_text("ignored")
    (ctx / "Dockerfile").write_text(
        f"FROM scratch\nARG A={'a' * 200}\nCOPY d /d\nCOPY d/{PATHOLOGICAL[:-2]}a /w/\n"
        f"ENV T=${{A%%{PATHOLOGICAL}}} R=${{A//{PATHOLOGICAL}/x}}\n"
    )
    done = _lamina(root, "build", "-q", "-t", "links:1", str(ctx))
    assert done.returncode == 0, done.stderr
    mounted = arena[0].parent / "mnt"
    mounted.mkdir()
    env = _lamina(root, "inspect", "--format", "{{json .Config.Env}}", "links:1").stdout
    assert f'"T={"a" * 200}"' in env and f'"R={"a" * 200}"' in env
    assert _lamina(root, "mount", "links:1", str(mounted)).returncode == 0
    try:
        assert os.readlink(mounted / "d" / "abs") == str(outside)
        assert os.readlink(mounted / "d" / "rel") == "../../outside/secret"
        assert (mounted / "d" / "f").read_text() == "inside"
        assert (mounted / "d" / ("a" * 100)).exists()
        assert not (mounted / "d" / ("a" * 100 + "b")).exists()
        assert (mounted / "w" / ("a" * 100)).exists()
    finally:
        assert _lamina(root, "umount", str(mounted)).returncode == 0
    assert (outside / "secret").read_text() == SECRET
    _no_secret_in(root)
    assert _lamina(root, "fsck").returncode == 0


DEEP = "i=0; while [ $i -lt 1200 ]; do mkdir d && cd d || exit 1; i=$((i+1)); done; echo x > f"


def test_a_step_that_makes_a_tree_too_deep_is_refused_and_cleaned_up(
    tmp_path: Path, busybox_rootfs: Path
) -> None:
    """A RUN (or a container) can make a tree deeper than Python's recursion limit: the
    step is one clear error, its scratch dir is removed however deep (it was left behind,
    and every later command then crashed removing it), a container holding one is removed,
    and the store works on."""
    root = tmp_path / "root"
    try:
        assert _lamina(root, "import", str(busybox_rootfs), "busybox").returncode == 0
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM busybox\nRUN {DEEP}\n")
        done = _lamina(root, "build", "-q", "-t", "deep:1", str(ctx))
        assert done.returncode == 1, done.stderr
        error = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
        assert len(error) == 1 and "more than 512 components" in error[0], done.stderr
        assert "Traceback" not in done.stderr
        assert [p.name for p in (root / "snapshots").iterdir() if p.name.startswith(".")] == []
        fsck = _lamina(root, "fsck")
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
        run = _lamina(root, "run", "--name", "deep", "busybox", "sh", "-c", DEEP)
        assert run.returncode == 0, run.stderr
        assert _lamina(root, "rm", "deep").returncode == 0
        assert not (root / "containers").exists() or list((root / "containers").iterdir()) == []
        deep = tmp_path / "deepctx"  # a context (or a directory to import) as deep
        deep.mkdir()
        fd = os.open(deep, os.O_RDONLY | os.O_DIRECTORY)
        for _ in range(1200):
            os.mkdir("d", dir_fd=fd)
            below = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = below
        os.close(fd)
        (deep / "Dockerfile").write_text("FROM scratch\nCOPY . /c\n")
        for args in (["build", "-q", str(deep)], ["import", str(deep), "deepdir:1"]):
            done = _lamina(root, *args)
            assert done.returncode == 1 and "more than 512 components" in done.stderr, done.stderr
            assert "Traceback" not in done.stderr
        assert [p.name for p in (root / "snapshots").iterdir() if p.name.startswith(".")] == []
        (ctx / "Dockerfile").write_text("FROM busybox\nRUN mkdir -p /a/b/c && echo ok > /a/b/c/f\n")
        assert _lamina(root, "build", "-q", "-t", "ok:1", str(ctx)).returncode == 0
    finally:
        # pytest removes old temporary dirs with shutil.rmtree, which a tree this deep
        # breaks (for every later session on the machine): never leave one behind.
        _lamina(root, "rm", "-f", "deep")
        remove_tree(tmp_path)
        tmp_path.mkdir()


@pytest.mark.parametrize(
    "name, dockerfile",
    [
        # BuildKit's parser appends each continuation line to a string (quadratic: this
        # took minutes); lamina hands it long runs already joined.
        ("400,000 continuation lines",
         "FROM scratch\nLABEL a=b \\\n" + "".join(f"  k{i}=v \\\n" for i in range(400_000))
         + "  end=1\n"),
        # --check planned each stage expanding every FROM again (minutes).
        ("20,000 stages", "".join(f"FROM scratch AS s{i}\n" for i in range(20_000))),
    ],
)  # fmt: skip
def test_check_of_a_huge_dockerfile_answers_within_the_command_timeout(
    tmp_path: Path, name: str, dockerfile: str
) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(dockerfile)
    done = _lamina(tmp_path / "root", "build", "--check", str(context))  # 120 s at most
    assert done.returncode == 0, done.stderr[-2000:]
    assert "error" not in done.stdout.lower() + done.stderr.lower()
