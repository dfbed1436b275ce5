"""RFC 3339 times as image configs write them (Go's nanoseconds included)."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_rfc3339(text: str) -> datetime | None:
    """An RFC 3339 time from a config, or None when absent or unreadable."""
    if not text:
        return None
    cleaned = text.replace("Z", "+00:00").replace("z", "+00:00")
    # Go writes nanoseconds; Python reads at most microseconds.
    if "." in cleaned:
        head, _, tail = cleaned.partition(".")
        digits = "".join(c for c in tail if c.isdigit())
        zone = tail[len(digits) :]
        cleaned = f"{head}.{digits[:6]}{zone}"
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
