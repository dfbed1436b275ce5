"""Test-wide rules (under CI=true a skipped test is a failure: install the tool instead)
and the one busybox_rootfs fixture."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from busybox_rootfs import make_busybox_rootfs


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true (install what it needs): {report.longrepr}"


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one busybox-static base rootfs (tests/busybox_rootfs.py), made once per session:
    copy it before changing it."""
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")
