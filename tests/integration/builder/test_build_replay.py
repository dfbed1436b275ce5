"""A build whose every input is unchanged is replayed from its record, and any change
to an input (a file, a directory, the Dockerfile, an argument, a base tag) builds."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from lamina.api import BuildRequest, Lamina, build_image
from lamina.builder import _builder

# Every test here runs whole builds under runc: `make test-fast` leaves them to `make test`.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOCKERFILE = """FROM busybox
ARG GREETING=hi
COPY app/ /app/
COPY top.txt /top.txt
RUN echo "$GREETING" > /greeting
"""


def _age(root: Path, seconds: float = 3600) -> None:
    """Every entry's mtime well in the past: not 'racy', so a record may trust it."""
    when = time.time() - seconds
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            os.utime(os.path.join(top, name), (when, when), follow_symlinks=False)
    os.utime(root, (when, when))


@pytest.fixture
def ctx(context: Path) -> Path:
    (context / "Dockerfile").write_text(DOCKERFILE)
    (context / "app").mkdir()
    (context / "app" / "one.txt").write_text("one\n")
    (context / "top.txt").write_text("top\n")
    _age(context)
    return context


def _forbid_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: object) -> None:
        raise AssertionError("the builder ran for an unchanged build")

    monkeypatch.setattr(_builder.Builder, "build", refuse)


def test_an_unchanged_build_is_replayed_without_the_builder(
    lam: Lamina, ctx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build_image(lam, ctx, tags=["app:1"])
    assert first.replayable
    _forbid_builder(monkeypatch)
    events: list[object] = []
    again = build_image(lam, ctx, tags=["app:2"], on_event=events.append)
    assert again.image.id == first.image.id
    assert lam.resolve("app:2").id == first.image.id
    kinds = [getattr(e, "kind", "") for e in events]
    assert kinds.count("cached") == kinds.count("step") > 0


@pytest.mark.parametrize(
    "change",
    ["edit_file", "add_file_to_copied_dir", "remove_file", "edit_dockerfile", "build_arg"],
)
def test_any_changed_input_builds_again(
    lam: Lamina, ctx: Path, change: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build_image(lam, ctx)
    args: dict[str, str] = {}
    if change == "edit_file":
        (ctx / "app" / "one.txt").write_text("ONE, edited\n")
        _age(ctx, 7200)  # even with an old mtime, size and inode moved
    elif change == "add_file_to_copied_dir":
        (ctx / "app" / "two.txt").write_text("two\n")
    elif change == "remove_file":
        (ctx / "app" / "one.txt").unlink()
    elif change == "edit_dockerfile":
        (ctx / "Dockerfile").write_text(DOCKERFILE + "ENV X=1\n")
    else:
        args = {"GREETING": "hello"}
    ran = _count_builds(monkeypatch)
    again = build_image(lam, ctx, build_args=args)
    assert ran == [1]
    assert again.image.id != first.image.id


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    ran: list[int] = []
    real = _builder.Builder.build

    def counting(self: _builder.Builder):  # type: ignore[no-untyped-def]
        ran.append(1)
        return real(self)

    monkeypatch.setattr(_builder.Builder, "build", counting)
    return ran


def test_a_moved_base_tag_builds_again(
    lam: Lamina, ctx: Path, tmp_path: Path, busybox_rootfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build_image(lam, ctx)
    newer = tmp_path / "newer-busybox"
    shutil.copytree(busybox_rootfs, newer, symlinks=True)
    (newer / "etc" / "release").write_text("newer\n")
    lam.import_image(newer, "busybox")
    ran = _count_builds(monkeypatch)
    again = build_image(lam, ctx)
    assert ran == [1]
    assert again.image.layers[0] != first.image.layers[0]


def test_a_racy_context_is_not_recorded(lam: Lamina, context: Path) -> None:
    (context / "Dockerfile").write_text("FROM busybox\nCOPY f /f\n")
    (context / "f").write_text("just written\n")
    build_image(lam, context)
    request = BuildRequest(context, context / "Dockerfile", {}, None, "host", {}, None)
    assert lam.store.get_cache(request.key()) is None


def test_a_pruned_image_is_built_again(
    lam: Lamina, ctx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_image(lam, ctx, tags=["app:1"])
    lam.rmi(["app:1"])
    lam.prune()
    ran = _count_builds(monkeypatch)
    again = build_image(lam, ctx, tags=["app:1"])
    assert ran == [1]
    assert lam.resolve("app:1").id == again.image.id
    assert lam.fsck().ok


def test_no_cache_always_builds(lam: Lamina, ctx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_image(lam, ctx)
    _forbid_builder(monkeypatch)
    with pytest.raises(AssertionError, match="builder ran"):
        build_image(lam, ctx, no_cache=True)
