"""`.dive-ci` and size parsing: dive's rule names and units, bad input refused clearly."""

from __future__ import annotations

import pytest

from lamina.analysis import Budgets, glob_regex, parse_bytes, parse_dive_ci
from lamina.errors import InvalidInputError


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("512", 512),
        ("20MB", 20_000_000),
        ("20 MB", 20_000_000),
        ("1.5GiB", 1_610_612_736),
        ("3kB", 3000),
        ("2MiB", 2 * 1024 * 1024),
    ],
)
def test_sizes(text: str, value: int) -> None:
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "MB", "-3MB", "12 parsecs", "1e9"])
def test_bad_sizes_are_refused_with_a_hint(text: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        parse_bytes(text)
    assert err.value.hint


def test_dive_ci_rules_become_budgets() -> None:
    text = """
# dive's CI config
rules:
  # below 95% efficiency fails
  lowest-efficiency: 0.95
  highest-wasted-bytes: 20MB
  highest-user-wasted-percent: 0.20
"""
    assert parse_dive_ci(text) == Budgets(
        max_wasted_bytes=20_000_000, max_wasted_percent=20.0, min_efficiency=0.95
    )


def test_disabled_rules_are_off_and_absent_rules_keep_dives_defaults() -> None:
    # dive's defaults (lowest-efficiency 0.9, highest-wasted-bytes disabled,
    # highest-user-wasted-percent 0.1) hold for every rule the file does not set.
    text = "rules:\n  lowest-efficiency: disabled\n  highest-wasted-bytes: 1kB\n"
    assert parse_dive_ci(text) == Budgets(max_wasted_bytes=1000, max_wasted_percent=10.0)
    assert parse_dive_ci("rules:\n  highest-wasted-bytes: 1kB\n") == Budgets(
        max_wasted_bytes=1000, max_wasted_percent=10.0, min_efficiency=0.9
    )


@pytest.mark.parametrize("off", ["disabled", "off", "false", "Off", "''"])
def test_every_word_dive_reads_as_disabled_is_off(off: str) -> None:
    text = (f"rules:\n  lowest-efficiency: {off}\n  highest-wasted-bytes: {off}\n"
            f"  highest-user-wasted-percent: {off}\n")  # fmt: skip
    assert parse_dive_ci(text) == Budgets()


def test_dives_newer_threshold_key_is_read() -> None:
    text = "rules:\n  lowest-efficiency-threshold: 0.5\n"
    assert parse_dive_ci(text).min_efficiency == 0.5


@pytest.mark.parametrize(
    "text",
    [
        "rules:\n  lowest-efficiency: 1.5\n",
        "rules:\n  no-such-rule: 1\n",
        "rules:\n  highest-user-wasted-percent: lots\n",
        "rules:\n  lowest-efficiency\n",
    ],
)
def test_bad_dive_ci_files_name_the_problem(text: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        parse_dive_ci(text, "x/.dive-ci")
    assert "x/.dive-ci" in err.value.message


def test_command_line_budgets_win_over_the_file() -> None:
    mine = Budgets(max_wasted_bytes=5, forbid=("/x",))
    merged = mine.merged(Budgets(max_wasted_bytes=9, min_efficiency=0.5, forbid=("/y",)))
    assert merged == Budgets(max_wasted_bytes=5, min_efficiency=0.5, forbid=("/x", "/y"))


@pytest.mark.parametrize(
    ("pattern", "path", "hit"),
    [
        ("/var/cache/apt/archives/*.deb", "/var/cache/apt/archives/x_1.deb", True),
        ("/var/cache/apt/archives/*.deb", "/var/cache/apt/archives/partial/x.deb", False),
        ("/var/**/*.deb", "/var/cache/apt/archives/partial/x.deb", True),
        ("/b*", "/bin/busybox", False),
        ("/b*", "/big", True),
        ("big", "/big", True),
        ("/etc/[a-c]*", "/etc/bash", True),
        ("/etc/[!a-c]*", "/etc/bash", False),
        ("/a.b", "/axb", False),
        ("/?ig", "/big", True),
    ],
)
def test_forbid_globs(pattern: str, path: str, hit: bool) -> None:
    assert bool(glob_regex(pattern).match(path)) is hit
