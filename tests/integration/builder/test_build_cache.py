"""The build cache: hits, explained misses, what a cached rebuild must not do, failures."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from lamina.api import Lamina
from lamina.builder import StepFailedError
from lamina.errors import NotFoundError

# Every test here runs whole builds under runc: `make test-fast` leaves them to `make test`.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOCKERFILE = """\
FROM busybox
COPY app.txt /app/
RUN cat /app/app.txt > /app/copy.txt
COPY other.txt /app/
CMD ["cat", "/app/copy.txt"]
"""


def age(path: Path, seconds: float = 10.0) -> None:
    """Make a file's mtime old enough for the stat cache to trust it."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_touch_hits_the_cache_and_edit_misses_with_the_reason(
    lam: Lamina,
    context: Path,
    build,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    (context / "app.txt").write_text("one\n")
    (context / "other.txt").write_text("other\n")
    age(context / "app.txt")
    age(context / "other.txt")
    first = build(DOCKERFILE, tags=["cached"])
    assert first.texts("cached") == []

    # Only the mtime moves: same content, so every step is a hit, and nothing runs: a
    # runc that always fails would break the build if it were started.
    os.utime(context / "app.txt", (time.time() - 5, time.time() - 5))
    monkeypatch.setenv("LAMINA_RUNC", "/bin/false")
    touched = build(tags=["cached"])
    assert touched.texts("cached") == ["CACHED", "CACHED", "CACHED"]
    assert touched.id == first.id

    (context / "app.txt").write_text("two\n")
    monkeypatch.delenv("LAMINA_RUNC")
    edited = build(tags=["cached"])
    assert edited.texts("cached") == []
    misses = edited.texts("miss")
    assert misses[0] == "file changed: app.txt (modified)"
    assert misses[1] == "the previous step changed"
    assert edited.id != first.id


def test_cached_rebuild_reads_no_unchanged_file(
    lam: Lamina,
    context: Path,
    build,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    (context / "app.txt").write_text("one\n")
    (context / "other.txt").write_text("other\n")
    age(context / "app.txt")
    age(context / "other.txt")
    build(DOCKERFILE)
    import lamina.builder._sources as sources

    hashed: list[str] = []
    real = sources.file_sha256

    def spy(p: str) -> str:
        hashed.append(p)
        return real(p)

    monkeypatch.setattr(sources, "file_sha256", spy)
    again = build(DOCKERFILE)
    assert again.texts("cached") == ["CACHED"] * 3
    assert hashed == []
    (context / "other.txt").write_text("fresh\n")  # too recent to trust: hashed every time
    build(DOCKERFILE)
    build(DOCKERFILE)
    assert [Path(p).name for p in hashed] == ["other.txt", "other.txt"]


def test_build_arg_change_is_explained(build) -> None:  # type: ignore[no-untyped-def]
    text = "FROM busybox\nARG V=1\nRUN echo $V > /v\n"
    build(text, build_args={"V": "1"})
    changed = build(text, build_args={"V": "2"})
    assert changed.texts("miss") == ["build arg changed: V"]


def test_no_cache_rebuilds_every_step(build) -> None:  # type: ignore[no-untyped-def]
    build("FROM busybox\nRUN echo x > /x\n")
    again = build(no_cache=True)
    assert again.texts("cached") == []


def test_failing_run_reports_and_keeps_earlier_steps(
    lam: Lamina,
    context: Path,
    build,  # type: ignore[no-untyped-def]
) -> None:
    text = "FROM busybox\nRUN echo first > /first\nRUN echo oops; echo to-stderr >&2; exit 3\n"
    with pytest.raises(StepFailedError) as caught:
        build(text, tags=["broken"])
    err = caught.value
    assert err.code == 3
    assert err.where == "Dockerfile:3"
    # stdout and stderr are two pipes: their relative order is not defined.
    assert sorted(err.tail[-2:]) == ["oops", "to-stderr"]
    assert "did not complete successfully: exit code: 3" in err.message
    with pytest.raises(NotFoundError):
        lam.resolve("broken")
    root = str(lam.root)
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if root in line]
    assert not [p for p in lam.store.snapshots_dir.iterdir() if p.name.startswith(".tmp")]
    (context / "Dockerfile").write_text("FROM busybox\nRUN echo first > /first\nRUN true\n")
    fixed = build(tags=["fixed"])
    assert fixed.texts("cached") == ["CACHED"]


def test_command_not_found_is_127(build) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(StepFailedError) as caught:
        build('FROM busybox\nRUN ["/no/such/program"]\n')
    assert caught.value.code == 127


def test_same_context_twice_gives_the_same_digest(
    tmp_path: Path, busybox_rootfs: Path, context: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lamina.api import build_image

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    (context / "Dockerfile").write_text(
        "FROM busybox\nCOPY . /src/\nRUN echo built > /built && mkdir -p /var/x\nENV A=b\n"
    )
    (context / "f.txt").write_text("f\n")
    ids = []
    for n in range(2):
        lam = Lamina(tmp_path / f"store-{n}")
        lam.import_image(busybox_rootfs, "busybox")
        result = build_image(lam, context)
        ids.append((result.image.id, result.image.digest))
        assert lam.config(result.image).created == "2023-11-14T22:13:20Z"
        lam.store.close()
        time.sleep(1.1)  # a different wall clock for the second build
    assert ids[0] == ids[1]


def test_a_final_copy_is_its_snapshot_and_never_a_blob(
    lam: Lamina,
    context: Path,
    build,  # type: ignore[no-untyped-def]
) -> None:
    (context / "data").mkdir()
    (context / "data" / "x.txt").write_text("x\n")
    (context / "data" / "link").symlink_to("x.txt")
    age(context / "data" / "x.txt")
    build("FROM busybox\nCOPY --chmod=640 data /data\n", tags=["final-copy"])
    top = lam.resolve("final-copy").layers[-1]
    # Written once, straight from the context into its snapshot: the layer's one copy.
    assert lam.store.has_layer(top.diff_id)
    assert not lam.store.content.has(top.digest)
    extended = build(
        "FROM busybox\nCOPY --chmod=640 data /data\nRUN stat -c '%a %u' /data/x.txt && "
        "readlink /data/link\n"
    )
    assert extended.texts("cached") == ["CACHED"]
    assert "640 0" in extended.output() and "x.txt" in extended.output()
    assert lam.store.get_snapshot(top.diff_id) is not None


def test_prune_reclaims_the_build_cache_but_not_tagged_images(  # type: ignore[no-untyped-def]
    lam, context, build
) -> None:
    (context / "f").write_text("data\n")
    text = "FROM busybox\nCOPY f /f\nRUN echo built > /built\n"
    first = build(text, tags=["kept"])
    assert build(text).texts("cached") == ["CACHED", "CACHED"]
    kept = lam.prune(keep_build_cache=True)
    assert kept.cache_records_removed == 0
    assert build(text).texts("cached") == ["CACHED", "CACHED"]
    report = lam.prune()
    assert report.cache_records_removed > 0
    assert lam.resolve("kept").id == first.id
    assert lam.fsck().ok
    # With the cache gone, the steps run again (as after `docker builder prune`).
    assert build(text).texts("cached") == []
