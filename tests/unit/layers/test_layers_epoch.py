"""SOURCE_DATE_EPOCH is read in one place, with one rule for a bad value."""

from __future__ import annotations

import pytest

from lamina.errors import InvalidInputError
from lamina.layers import source_date_epoch


@pytest.mark.parametrize(("value", "seconds"), [("", None), ("0", 0), ("1700000000", 1700000000)])
def test_values(monkeypatch: pytest.MonkeyPatch, value: str, seconds: int | None) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    assert source_date_epoch() == seconds


def test_unset_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert source_date_epoch() is None


@pytest.mark.parametrize("value", ["-1", "1.5", "now", " 1"])
def test_a_bad_value_is_an_error_with_a_hint(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    with pytest.raises(InvalidInputError, match="not a number of seconds") as info:
        source_date_epoch()
    assert info.value.hint
