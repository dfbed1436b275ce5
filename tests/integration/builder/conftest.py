"""Fixtures for build tests: a store with a busybox-static base image, and helpers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.api import Lamina, build_image
from lamina.builder import BuildEvent


@pytest.fixture
def lam(tmp_path: Path, busybox_rootfs: Path) -> Iterator[Lamina]:
    """A fresh store holding `busybox:latest`, made from the busybox rootfs (nothing pulled)."""
    lamina = Lamina(tmp_path / "root")
    lamina.import_image(busybox_rootfs, "busybox")
    yield lamina
    lamina.store.close()


@pytest.fixture
def context(tmp_path: Path) -> Path:
    path = tmp_path / "ctx"
    path.mkdir()
    return path


class Built:
    """A build's result plus the events it reported."""

    def __init__(self, result: object, events: list[BuildEvent]) -> None:
        self.result = result
        self.events = events

    @property
    def id(self) -> str:
        return self.result.image.id  # type: ignore[attr-defined,no-any-return]

    def texts(self, kind: str) -> list[str]:
        return [e.text for e in self.events if e.kind == kind]

    def output(self) -> str:
        return "".join(self.texts("output"))


@pytest.fixture
def build(lam: Lamina, context: Path):  # type: ignore[no-untyped-def]
    """build(dockerfile_text, **options) → Built; writes the Dockerfile into the context."""

    def run(dockerfile: str | None = None, ctx: Path | None = None, **options: object) -> Built:
        where = ctx or context
        if dockerfile is not None:
            (where / "Dockerfile").write_text(dockerfile)
        events: list[BuildEvent] = []
        result = build_image(lam, where, on_event=events.append, **options)  # type: ignore[arg-type]
        return Built(result, events)

    return run


@pytest.fixture
def image_tree(lam: Lamina, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Mount an image read-only for the duration of a `with` block."""

    @contextlib.contextmanager
    def mount(ref: str) -> Iterator[Path]:
        target = tmp_path / f"mnt-{len(list(tmp_path.glob('mnt-*')))}"
        target.mkdir()
        lam.mount(ref, target)
        try:
            yield target
        finally:
            lam.umount(target)

    return mount
