"""Fixtures for end-to-end tests: a store and a busybox-static rootfs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from busybox_rootfs import make_busybox_rootfs

from lamina.api import Lamina


@pytest.fixture
def lamina(tmp_path: Path) -> Iterator[Lamina]:
    api = Lamina(tmp_path / "root")
    yield api
    api.store.close()


@pytest.fixture
def busybox_rootfs(tmp_path: Path) -> Path:
    return make_busybox_rootfs(tmp_path / "busybox-rootfs")
