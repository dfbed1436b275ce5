"""`json.loads` and `json.dumps` without importing `json`: the same C scanner and encoder
(`_json`, which the `json` package itself uses), without the package's Python half, which
imports `re` (and through it `enum`, `functools`, `collections`): milliseconds of every
`lamina run`, whose records, bundle config and runc state are all JSON.

    loads('{"a": [1, 2.5, "x", null]}')   -> what json.loads gives (str input)
    dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                                           -> what json.dumps gives with those options

Errors are json's own (`json.JSONDecodeError`, imported only when one is raised), with
json's messages. tests/unit/test_lightjson.py compares both with `json` on many values.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    from typing import Any

_WHITESPACE = " \t\n\r"
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _Context:
    """What the C scanner reads off a `json.JSONDecoder()`: its defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]  # (a duck: see typeshed)


def _error(message: str, text: str, at: int) -> ValueError:
    from json import JSONDecodeError  # (only on bad input)

    return JSONDecodeError(message, text, at)


def loads(text: str) -> Any:
    """`json.loads(text)` for a str."""
    start = len(text) - len(text.lstrip(_WHITESPACE))
    if text.startswith("\ufeff"):
        raise _error("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    try:
        value, end = _scan(text, start)
    except StopIteration as stop:
        raise _error("Expecting value", text, stop.value) from None
    end = len(text) - len(text[end:].lstrip(_WHITESPACE))
    if end != len(text):
        raise _error("Extra data", text, end)
    return value


def _not_serializable(value: object) -> object:
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


def dumps(
    value: object,
    *,
    sort_keys: bool = False,
    separators: tuple[str, str] = (", ", ": "),
    ensure_ascii: bool = True,
) -> str:
    """`json.dumps(value, sort_keys=..., separators=..., ensure_ascii=...)`."""
    encode = _json.encode_basestring_ascii if ensure_ascii else _json.encode_basestring
    if isinstance(value, str):
        return encode(value)
    item_separator, key_separator = separators
    chunks = _json.make_encoder(
        {}, _not_serializable, encode, None, key_separator, item_separator, sort_keys, False,
        True,
    )(value, 0)  # fmt: skip
    return "".join(chunks)
