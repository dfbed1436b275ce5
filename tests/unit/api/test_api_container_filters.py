"""`ps --filter` parsing and matching: moby's container filter rules."""

from __future__ import annotations

from typing import Any

import pytest

from lamina.api import match_container, order_window, parse_container_filters
from lamina.errors import InvalidInputError

WEB: dict[str, Any] = {
    "cid": "ab12" + "0" * 60, "name": "web", "labels": {"tier": "front", "v": "1"},
    "status": "exited", "exit_code": 3, "started": True,
    "volumes": [("/srv/data", "/data")], "network": "host",
}  # fmt: skip


def matches(*items: str, **changes: Any) -> bool:
    return match_container(parse_container_filters(items), **{**WEB, **changes})


def test_no_filter_matches_everything() -> None:
    assert matches()
    assert not parse_container_filters([]).values


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["name=web"], True),
        (["name=we"], True),  # a regular expression found anywhere in the name
        (["name=^/web$"], True),  # the name with its leading /
        (["name=^web$"], True),
        (["name=^eb"], False),
        (["name=db", "name=web"], True),  # one key: any value
        (["name=[", "name=web"], True),  # an invalid expression matches nothing
        (["name=["], False),
        (["id=ab12"], True),
        (["id=^b"], False),
        (["label=tier"], True),
        (["label=tier=front"], True),
        (["label=tier=back"], False),
        (["label=tier", "label=v=2"], False),  # labels: every value
        (["label=nope"], False),
        (["status=exited"], True),
        (["status=running", "status=exited"], True),
        (["status=running"], False),
        (["exited=3"], True),
        (["exited=0", "exited=3"], True),
        (["exited=0"], False),
        (["volume=/data"], True),  # destination
        (["volume=/srv/data"], True),  # or source
        (["volume=/srv"], False),
        (["network=host"], True),
        (["network=none"], False),
        (["name=web", "status=running"], False),  # different keys: all
        ([" NAME = web "], True),  # docker-cli: key case-folded, both sides trimmed
    ],
)
def test_matching(items: list[str], expected: bool) -> None:
    assert matches(*items) is expected


def test_exited_needs_a_container_that_ran_and_stopped() -> None:
    assert not matches("exited=3", status="running")
    assert not matches("exited=127", status="created", exit_code=127, started=False)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("name", "bad format of filter (expected name=value)"),
        ("colour=red", "invalid filter 'colour'"),
        ("health=healthy", "invalid filter 'health'"),
        ("exited=x", "invalid filter 'exited=x'"),
        ("status=up", "invalid filter 'status=up': invalid value for state (up)"),
    ],
)
def test_invalid_filters(item: str, message: str) -> None:
    with pytest.raises(InvalidInputError) as e:
        parse_container_filters([item])
    assert message in e.value.message


def test_before_and_since_keep_a_window_of_the_list() -> None:
    newest_first = ["e", "d", "c", "b", "a"]
    assert order_window(newest_first, None, None) == set(newest_first)
    assert order_window(newest_first, "c", None) == {"b", "a"}
    assert order_window(newest_first, None, "c") == {"e", "d"}
    assert order_window(newest_first, "d", "b") == {"c"}
    assert order_window(newest_first, "b", "d") == set()
