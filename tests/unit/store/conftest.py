"""Fixtures for the store tests: a store on a fresh tmp_path root."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.store import Store, open_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "root")
    yield s
    s.close()
