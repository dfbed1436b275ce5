"""Differences from BuildKit found by building realistic Dockerfiles (audit of issue 11's
parity): each test names the Docker/BuildKit rule it checks and where that rule is written."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def _history(lam, ref: str) -> list[str]:  # type: ignore[no-untyped-def]
    """created_by of the image's own steps, oldest first (the base image's entry dropped)."""
    rows = [r.created_by for r in reversed(lam.history(ref))]
    return rows[1:]


def test_onbuild_adds_no_history_entry(build, lam) -> None:  # type: ignore[no-untyped-def]
    """BuildKit's dispatchOnbuild only appends the trigger to Config.OnBuild: unlike the
    other metadata instructions it commits no history entry."""
    build("FROM busybox\nONBUILD RUN echo hi\nLABEL a=b\n", tags=["obhist"])
    assert _history(lam, "obhist") == ["LABEL a=b"]
    assert lam.inspect("obhist")["Config"]["OnBuild"] == ["RUN echo hi"]
