"""Bounded JSON decoding for hostile manifests, indexes and configs."""

from __future__ import annotations

from lamina._lightjson import dumps, loads
from lamina.errors import InvalidInputError
from lamina.oci._limits import MAX_DOCUMENT_BYTES

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    from typing import Any

_MAX_DEPTH = 64


def _depth_ok(data: bytes) -> bool:
    # A cheap pre-scan: Python's json recurses per nesting level, and deeply nested
    # input must fail as bad input, not as a RecursionError deep in the parser.
    depth = 0
    in_string = False
    escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > _MAX_DEPTH:
                return False
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return True


def load_json_object(data: bytes, what: str, max_bytes: int = MAX_DOCUMENT_BYTES) -> dict[str, Any]:
    """Decode `data` as a JSON object, refusing oversize, over-deep or malformed input."""
    if len(data) > max_bytes:
        raise InvalidInputError(f"{what}: {len(data)} bytes is larger than the {max_bytes} allowed")
    if not _depth_ok(data):
        raise InvalidInputError(f"{what}: JSON nested deeper than {_MAX_DEPTH} levels")
    try:
        if data[:1] in (b"\xef", b"\xfe", b"\xff") or b"\x00" in data[:4]:
            import json  # a BOM, or UTF-16/32: json.loads detects which

            value = json.loads(data)
        else:  # UTF-8, as json.loads reads it, without loading `json` (see _lightjson)
            value = loads(data.decode("utf-8", "surrogatepass"))
    except (ValueError, RecursionError) as exc:
        raise InvalidInputError(f"{what}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def dump_json(value: object) -> bytes:
    """Canonical bytes for content we create: same value, same digest."""
    return dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
