"""The layer limits a user sets (flag or environment): a value that is no limit is a
clear error, never a traceback and never a check silently switched off."""

from __future__ import annotations

import pytest

from lamina.errors import InvalidInputError
from lamina.transport import LayerLimits, parse_size


@pytest.mark.parametrize("text", ["inf", "1e400", "-inf", "nan", "0", "-5", "", "lots"])
def test_a_size_that_is_no_size_is_refused(text: str) -> None:
    with pytest.raises(InvalidInputError, match="--max-layer-size"):
        parse_size(text, "--max-layer-size")


@pytest.mark.parametrize("ratio", [float("nan"), float("inf"), 0.0, -1.0, 0.5])
def test_a_ratio_that_is_no_ratio_is_refused(ratio: float) -> None:
    # nan compared with anything is False: the bomb check would never fire.
    with pytest.raises(InvalidInputError, match="--max-layer-ratio"):
        LayerLimits.from_env(None, ratio)


@pytest.mark.parametrize("text", ["nan", "inf", "-3", "0"])
def test_the_ratio_from_the_environment_is_checked_too(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv("LAMINA_MAX_LAYER_RATIO", text)
    with pytest.raises(InvalidInputError, match="LAMINA_MAX_LAYER_RATIO"):
        LayerLimits.from_env()


def test_an_infinite_size_from_the_environment_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LAMINA_MAX_LAYER_SIZE", "inf")
    with pytest.raises(InvalidInputError, match="LAMINA_MAX_LAYER_SIZE"):
        LayerLimits.from_env()


def test_good_values_are_read() -> None:
    assert parse_size("64G", "x") == 64 << 30
    assert parse_size("1.5MiB", "x") == 3 << 19
    assert LayerLimits.from_env(1 << 20, 10.0) == LayerLimits(1 << 20, 10.0)
