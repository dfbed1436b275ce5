"""`Platform.rank_for`: which image platforms serve a wanted one, and in which order, as
containerd matches them: a variant is an instruction-set level that runs the ones below."""

from __future__ import annotations

import pytest

from lamina.oci import Platform


def _rank(got: str, want: str) -> int | None:
    return Platform.parse(got).rank_for(Platform.parse(want))


@pytest.mark.parametrize(
    ("want", "order"),
    [
        ("linux/arm/v8", ["linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]),
        ("linux/arm", ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]),
        ("linux/arm/v6", ["linux/arm/v6", "linux/arm/v5"]),
        ("linux/arm/v5", ["linux/arm/v5"]),
        ("linux/amd64/v3", ["linux/amd64/v3", "linux/amd64/v2", "linux/amd64"]),
    ],
)
def test_a_variant_falls_back_to_the_levels_below_it_nearest_first(
    want: str, order: list[str]
) -> None:
    assert [_rank(got, want) for got in order] == list(range(len(order)))


@pytest.mark.parametrize(
    ("got", "want"),
    [
        ("linux/arm/v7", "linux/arm/v6"),  # never a newer level
        ("linux/arm/v8", "linux/arm/v7"),
        ("linux/arm/v4", "linux/arm/v7"),  # below arm's lowest
        ("linux/arm/vx", "linux/arm/v7"),
        ("linux/arm64", "linux/arm/v7"),  # another architecture
        ("linux/amd64/v4", "linux/amd64/v3"),
        ("windows/amd64", "linux/amd64"),  # another OS
        ("linux/riscv64/v2", "linux/riscv64/v3"),  # no levels known: exact only
    ],
)
def test_what_does_not_serve_the_wanted_platform(got: str, want: str) -> None:
    assert _rank(got, want) is None


def test_both_sides_are_normalised_and_no_variant_wanted_takes_any() -> None:
    assert _rank("linux/aarch64", "linux/arm64/v8") == 0
    assert Platform("linux", "arm", "7").rank_for(Platform("linux", "arm", "")) == 0
    assert _rank("linux/amd64", "linux/amd64") == 0
    assert Platform("linux", "amd64", "v3").rank_for(Platform("linux", "amd64")) == 1
