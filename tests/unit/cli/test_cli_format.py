"""Sizes and ages read as Docker's CLI prints them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lamina.cli._format import created_since, human_size, truncate
from lamina.oci import human_duration


@pytest.mark.parametrize(
    ("size", "shown"),
    [(0, "0B"), (999, "999B"), (1000, "1kB"), (4_261_000, "4.26MB"), (1_500_000_000, "1.5GB")],
)
def test_human_size(size: int, shown: str) -> None:
    assert human_size(size) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.5, "Less than a second"),
        (1, "1 second"),
        (45, "45 seconds"),
        (90, "About a minute"),
        (600, "10 minutes"),
        (4000, "About an hour"),
        (5 * 3600, "5 hours"),
        (3 * 86400, "3 days"),
        (21 * 86400, "3 weeks"),
        (200 * 86400, "6 months"),
        (800 * 86400, "2 years"),
        # go-units' HumanDuration rounds hours (+0.5) and counts weeks below 60 days:
        (90 * 60, "2 hours"),
        (47.6 * 3600, "2 days"),
        (70 * 86400, "2 months"),
        (59 * 86400, "8 weeks"),
    ],
)
def test_human_duration(seconds: float, shown: str) -> None:
    assert human_duration(seconds) == shown


def test_created_since_reads_go_nanoseconds() -> None:
    now = datetime(2024, 1, 15, tzinfo=UTC)
    then = (now - timedelta(days=3, hours=1)).strftime("%Y-%m-%dT%H:%M:%S") + ".123456789Z"
    assert created_since(then, now) == "3 days ago"
    assert created_since("", now) == "N/A"


def test_truncate() -> None:
    assert truncate("abc", 3) == "abc"
    assert truncate("abcdef", 4) == "abc…"
