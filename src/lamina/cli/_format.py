"""How Docker's CLI shows sizes, ages and IDs, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

from lamina.oci import human_duration, parse_rfc3339, split_ns

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_size(size: float, digits: int = 3) -> str:
    """Decimal units with three significant digits, as `docker images` shows sizes (four:
    go-units' HumanSize, as prune's totals)."""
    unit = 0
    while size >= 1000 and unit < len(_UNITS) - 1:
        size /= 1000
        unit += 1
    return f"{size:.{digits}g}{_UNITS[unit]}"


def parse_timestamp(text: str) -> datetime | None:
    """An RFC 3339 time from a config, or None when absent or unreadable."""
    return parse_rfc3339(text)


def created_since(text: str, now: datetime | None = None) -> str:
    """'2 weeks ago' for a config time; 'N/A' when it has none."""
    moment = parse_timestamp(text)
    if moment is None:
        return "N/A"
    now = now or datetime.now(UTC)
    return human_duration(max(0.0, (now - moment).total_seconds())) + " ago"


def truncate(text: str, width: int) -> str:
    """Docker's ellipsis for long cells."""
    return text if len(text) <= width else text[: width - 1] + "…"


def go_time(moment: datetime | None, layout: str) -> str:
    """Go's `time.String()` ("2006-01-02 15:04:05 -0700 MST") or RFC 3339, in local time."""
    if moment is None:
        return ""
    local = moment.astimezone()
    if layout == "rfc3339":
        text = local.strftime("%Y-%m-%dT%H:%M:%S%z")
        text = text[:-2] + ":" + text[-2:]
        return text.replace("+00:00", "Z")
    return local.strftime("%Y-%m-%d %H:%M:%S %z %Z")


def rfc3339_nano(ts: float) -> str:
    """Go's RFC 3339 with nanoseconds in UTC (trailing zeros dropped), as moby's inspect."""
    whole, nanos = split_ns(ts)
    moment = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{moment}.{fraction}Z" if fraction else f"{moment}Z"
