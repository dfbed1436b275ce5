"""`lamina._lightjson` gives exactly what `json` gives (it stands in for it on the run path)."""

from __future__ import annotations

import json
import math
import random
import re

import pytest

from lamina._lightjson import dumps, loads

VALUES: list[object] = [
    {}, [], "", 0, -1, 1.5, -0.0, 1e300, True, False, None, "héllo ☃ \x00\n\"\\/",
    {"b": 1, "a": [1, 2, {"c": None}], "é": "ü", "\U0001f600": ["x"]},
    [[[[]]]], {"": ""}, {3: 2, 2.5: 3, True: 1, None: 0},
    2**70, -(2**70), 3.141592653589793, [1, "2", 3.0],
    {"ociVersion": "1.0.2", "process": {"args": ["true"], "env": ["PATH=/bin"],
                                        "terminal": False, "user": {"uid": 0, "gid": 0}}},
]  # fmt: skip


def _random_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return rng.randrange(-(10**12), 10**12)
    if kind == 1:
        return rng.uniform(-1e6, 1e6)
    if kind == 2:
        return "".join(chr(rng.choice((rng.randrange(32, 127), rng.randrange(0, 0x3000))))
                       for _ in range(rng.randrange(12)))  # fmt: skip
    if kind == 3:
        return rng.choice((True, False, None))
    if kind == 4:
        return ""
    if kind == 5:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    return {str(_random_value(rng, depth + 1)): _random_value(rng, depth + 1)
            for _ in range(rng.randrange(5))}  # fmt: skip


def _all_values() -> list[object]:
    rng = random.Random(10)
    return [*VALUES, *(_random_value(rng) for _ in range(300))]


@pytest.mark.parametrize("options", [
    {}, {"sort_keys": True}, {"separators": (",", ":")}, {"ensure_ascii": False},
    {"sort_keys": True, "separators": (",", ":"), "ensure_ascii": False},
])  # fmt: skip
def test_dumps_gives_what_json_dumps_gives(options: dict[str, object]) -> None:
    for value in _all_values():
        try:
            expected = json.dumps(value, **options)  # type: ignore[arg-type]
        except TypeError as exc:  # keys of mixed types do not sort
            with pytest.raises(TypeError, match=re.escape(str(exc))):
                dumps(value, **options)  # type: ignore[arg-type]
            continue
        assert dumps(value, **options) == expected  # type: ignore[arg-type]


def test_loads_gives_what_json_loads_gives() -> None:
    for value in _all_values():
        plain = json.dumps(value)
        for text in (plain, json.dumps(value, indent=2), f" \n\t{plain}\r\n "):
            assert loads(text) == json.loads(text)
    nan = loads("[NaN, Infinity, -Infinity]")
    assert math.isnan(nan[0]) and nan[1:] == [math.inf, -math.inf]


@pytest.mark.parametrize("text", [
    "", " ", "{", "[1,]", '{"a" 1}', "[1] x", "1 2", "\ufeff{}", "nul", '"\x01"', "{'a': 1}",
    '["\\ud800"', "-", "01", "[1,2", '{"a":1,}',
])  # fmt: skip
def test_bad_json_fails_as_json_fails(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as got:
        loads(text)
    assert str(got.value) == str(expected.value)


def test_what_json_cannot_encode_fails_the_same_way() -> None:
    for value in ({"a": {1, 2}}, [b"x"], {(1, 2): 3}):
        with pytest.raises(TypeError) as expected:
            json.dumps(value)
        with pytest.raises(TypeError) as got:
            dumps(value)
        assert str(got.value) == str(expected.value)
    looped: list[object] = []
    looped.append(looped)
    with pytest.raises(ValueError, match="Circular reference"):
        dumps(looped)
