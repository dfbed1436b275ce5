"""Multi-stage builds, RUN --mount (cache, bind, secret, tmpfs) and the CLI."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lamina.api import Lamina
from lamina.errors import ToolError
from lamina.layers import open_layer_reader, read_entries

pytestmark = pytest.mark.integration

MULTI = """\
FROM busybox AS base
RUN echo base > /base

FROM base AS builder
RUN echo built-artifact > /artifact

FROM busybox AS unused
RUN echo should-not-run

FROM busybox AS other
RUN echo other > /other

FROM base AS final
COPY --from=builder /artifact /app/artifact
COPY --from=other /other /app/other
COPY --from=0 /base /app/base
"""


@pytest.mark.slow
def test_multi_stage_builds_only_what_the_target_needs(build, image_tree) -> None:  # type: ignore[no-untyped-def]
    built = build(MULTI, tags=["multi"])
    steps = " ".join(built.texts("step"))
    assert "unused" not in steps
    assert "should-not-run" not in built.output()
    with image_tree("multi") as root:
        assert (root / "app/artifact").read_text() == "built-artifact\n"
        assert (root / "app/other").read_text() == "other\n"
        assert (root / "app/base").read_text() == "base\n"
        assert (root / "base").exists()
        assert not (root / "artifact").exists()


def test_target_stops_at_the_named_stage(build, image_tree) -> None:  # type: ignore[no-untyped-def]
    built = build(MULTI, tags=["builder"], target="builder")
    steps = " ".join(built.texts("step"))
    assert "other" not in steps and "final" not in steps
    with image_tree("builder") as root:
        assert (root / "artifact").exists() and (root / "base").exists()


def test_absolute_symlink_in_a_stage_resolves_inside_that_stage(build, image_tree) -> None:  # type: ignore[no-untyped-def]
    # As BuildKit does: /link -> /lamina-real is the stage's /lamina-real, not the host's
    # (which does not exist; before, the host path was tried and refused as outside).
    assert not os.path.lexists("/lamina-real")
    text = """\
FROM busybox AS stage
RUN mkdir /lamina-real && echo inside > /lamina-real/file && ln -s /lamina-real /link
FROM busybox
COPY --from=stage /link/file /got
COPY --from=stage /link /dir
RUN --mount=type=bind,from=stage,source=/link/file,target=/m.txt cat /m.txt > /mounted
"""
    build(text, tags=["links"])
    with image_tree("links") as root:
        assert (root / "got").read_text() == "inside\n"
        assert (root / "dir" / "file").read_text() == "inside\n"
        assert (root / "mounted").read_text() == "inside\n"


def test_secret_is_mounted_but_never_stored(
    lam: Lamina,
    tmp_path: Path,
    build,  # type: ignore[no-untyped-def]
) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cr3t-value-42")
    text = """\
FROM busybox
RUN --mount=type=secret,id=token cat /run/secrets/token | wc -c > /token-length
RUN --mount=type=secret,id=token,target=/etc/token.conf test -s /etc/token.conf
"""
    built = build(text, tags=["secret"], secrets={"token": secret})
    image = lam.resolve("secret")
    for layer in image.layers:
        with lam.store.content.open(layer.digest) as f:
            for entry, content in read_entries(open_layer_reader(f)):
                assert "secrets" not in entry.name and "token.conf" not in entry.name
                assert b"s3cr3t" not in content.read()
    for raw in (lam.store.content.read_bytes(image.config_digest, 1 << 20),
                lam.store.content.read_bytes(image.digest, 1 << 20)):  # fmt: skip
        assert b"s3cr3t" not in raw
    rows = lam.store._db.conn().execute("SELECT key, value FROM cache").fetchall()
    assert all("s3cr3t" not in key + value for key, value in rows)
    assert built.texts("cached") == []


def test_cache_mount_persists_and_stays_out_of_layers(lam: Lamina, build) -> None:  # type: ignore[no-untyped-def]
    text = (
        "FROM busybox\n"
        "RUN --mount=type=cache,target=/cache echo x >> /cache/log && wc -l < /cache/log\n"
    )
    first = build(text, tags=["c1"])
    second = build(text, tags=["c2"], no_cache=True)
    assert first.output().strip() == "1"
    assert second.output().strip() == "2"
    assert len(lam.resolve("c2").layers) == len(lam.resolve("busybox").layers)


@pytest.mark.slow
def test_bind_and_tmpfs_mounts(lam: Lamina, context: Path, build, image_tree) -> None:  # type: ignore[no-untyped-def]
    (context / "input.txt").write_text("from-context\n")
    text = """\
FROM busybox AS data
RUN echo from-stage > /stage.txt
FROM busybox
RUN --mount=type=bind,source=input.txt,target=/in.txt cat /in.txt > /copied
RUN --mount=type=bind,from=data,source=/stage.txt,target=/s.txt cat /s.txt > /from-stage
RUN --mount=type=tmpfs,target=/scratch echo tmp > /scratch/x && cat /scratch/x
"""
    built = build(text, tags=["mounts"])
    assert "tmp" in built.output()
    with image_tree("mounts") as root:
        assert (root / "copied").read_text() == "from-context\n"
        assert (root / "from-stage").read_text() == "from-stage\n"
        assert not (root / "in.txt").exists() and not (root / "s.txt").exists()
        assert not (root / "scratch").exists()
    (context / "input.txt").write_text("changed\n")
    again = build(tags=["mounts"])
    assert again.texts("miss")[0].startswith("file changed: /in.txt: input.txt")


@pytest.mark.slow
def test_rw_bind_writes_are_seen_by_the_step_and_then_discarded(  # type: ignore[no-untyped-def]
    lam: Lamina, context: Path, build, image_tree
) -> None:
    (context / "dir").mkdir()
    (context / "dir" / "a.txt").write_text("a\n")
    before = sorted(p.name for p in (context / "dir").iterdir())
    text = """\
FROM busybox
RUN --mount=type=bind,source=dir,target=/work,rw echo new > /work/b.txt \\
 && echo x >> /work/a.txt && cat /work/a.txt /work/b.txt > /seen
"""
    build(text, tags=["rw"])
    with image_tree("rw") as root:
        assert (root / "seen").read_text() == "a\nx\nnew\n"
        assert not (root / "work").exists() or not any((root / "work").iterdir())
    assert sorted(p.name for p in (context / "dir").iterdir()) == before
    assert (context / "dir" / "a.txt").read_text() == "a\n"
    # Without rw the bind is read-only, as in Docker.
    with pytest.raises(ToolError):
        build("FROM busybox\nRUN --mount=type=bind,source=dir,target=/work touch /work/c\n")


def test_private_cache_mount_in_use_gets_a_fresh_dir(lam: Lamina, build) -> None:  # type: ignore[no-untyped-def]
    text = (
        "FROM busybox\n"
        "RUN --mount=type=cache,id=p,target=/cache,sharing=private "
        "ls /cache | wc -l && echo x > /cache/mark\n"
    )
    first = build(text)
    assert first.output().strip() == "0"
    second = build(text, no_cache=True)
    assert second.output().strip() == "1"  # not in use: the shared cache dir itself
    cache = _cache_dir(lam, "p")
    with open(cache.parent / (cache.name + ".lock"), "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        third = build(text, no_cache=True)  # would wait forever if it took the lock
    assert third.output().strip() == "0"


def _cache_dir(lam: Lamina, ident: str) -> Path:
    import hashlib

    return Path(lam.root) / "cache-mounts" / hashlib.sha256(ident.encode()).hexdigest()[:32]


def lamina_cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from lamina.cli import main; sys.argv[0] = 'lamina'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, "--root", str(root), *args],
        capture_output=True, text=True, check=False, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


@pytest.mark.slow
def test_cli_prints_the_image_id_last(lam: Lamina, context: Path) -> None:
    (context / "Dockerfile").write_text("FROM busybox\nRUN echo hi-from-cli\n")
    plain = lamina_cli(lam.root, "build", "--progress=plain", "-t", "cli:1", str(context))
    assert plain.returncode == 0, plain.stderr
    lines = plain.stdout.strip().splitlines()
    assert lines[-1] == lam.resolve("cli:1").id
    assert any("hi-from-cli" in line for line in lines)
    quiet = lamina_cli(lam.root, "build", "-q", str(context))
    assert quiet.stdout.strip() == lam.resolve("cli:1").id


@pytest.mark.slow
def test_cli_failure_exits_1_with_the_step(lam: Lamina, context: Path) -> None:
    (context / "Dockerfile").write_text("FROM busybox\nRUN exit 7\n")
    failed = lamina_cli(lam.root, "build", str(context))
    assert failed.returncode == 1
    assert "Dockerfile:2" in failed.stderr and "exit code: 7" in failed.stderr


def test_cli_check_lints_only(lam: Lamina, context: Path) -> None:
    (context / "Dockerfile").write_text("from busybox as Base\nRUN echo $UNDEFINED\n")
    checked = lamina_cli(lam.root, "build", "--check", str(context))
    assert "Dockerfile:1" in checked.stdout
    assert lam.store.list_images() == [lam.resolve("busybox")]
