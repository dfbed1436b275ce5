"""Fixtures for build tests: a store with a busybox-static base image, and helpers."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.api import Lamina
from lamina.api._build import build_image
from lamina.build import BuildEvent

APPLETS = [
    "sh",
    "ls",
    "cat",
    "id",
    "echo",
    "touch",
    "rm",
    "mkdir",
    "ln",
    "chmod",
    "chown",
    "stat",
    "wc",
    "sleep",
    "head",
    "tail",
    "dd",
    "find",
    "seq",
    "true",
    "false",
    "printf",
    "mv",
    "cp",
    "test",
    "env",
    "grep",
    "sed",
    "tr",
    "sort",
    "md5sum",
    "sha256sum",
    "readlink",
    "rmdir",
    "uname",
]


def make_busybox_rootfs(path: Path) -> Path:
    """A tiny root filesystem: busybox-static, its applets, passwd/group with root and app."""
    (path / "bin").mkdir(parents=True)
    (path / "etc").mkdir()
    (path / "tmp").mkdir(mode=0o1777)
    os.chmod(path / "tmp", 0o1777)
    (path / "root").mkdir(mode=0o700)
    (path / "home" / "app").mkdir(parents=True)
    os.chown(path / "home" / "app", 1000, 1000)
    shutil.copy2("/bin/busybox", path / "bin" / "busybox")
    for applet in APPLETS:
        (path / "bin" / applet).symlink_to("busybox")
    (path / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
    )
    (path / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nstaff:x:50:app\n")
    return path


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


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
