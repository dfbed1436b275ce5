"""Fixtures: real registries (anonymous and htpasswd), a fault proxy, an isolated
Docker config and stores (busybox_rootfs comes from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_fixtures import Proxy, Registry, docker_config_env

from lamina.api import Lamina


@pytest.fixture(autouse=True)
def _docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in docker_config_env(tmp_path).items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "registry")
    yield reg
    reg.stop()


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "auth-registry", users={"alice": "s3cret"})
    yield reg
    reg.stop()


@pytest.fixture
def proxy(registry: Registry) -> Iterator[Proxy]:
    p = Proxy(registry.host)
    yield p
    p.close()


@pytest.fixture
def lamina(tmp_path: Path) -> Iterator[Lamina]:
    api = Lamina(tmp_path / "root")
    yield api
    api.store.close()


@pytest.fixture
def other(tmp_path: Path) -> Iterator[Lamina]:
    api = Lamina(tmp_path / "root2")
    yield api
    api.store.close()
