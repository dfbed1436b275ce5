"""Fixtures for end-to-end tests: a store (the rootfs helper is tests/busybox_rootfs.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.api import Lamina


@pytest.fixture
def lamina(tmp_path: Path) -> Iterator[Lamina]:
    api = Lamina(tmp_path / "root")
    yield api
    api.store.close()
