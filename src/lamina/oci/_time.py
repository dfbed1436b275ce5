"""RFC 3339 times as image configs write them (Go's nanoseconds included), and durations
as Docker's CLI words them."""

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


def split_ns(ts: float) -> tuple[int, int]:
    """(whole seconds, nanoseconds) of a float time, as an RFC 3339 time with nanoseconds
    shows it (moby's inspect)."""
    whole = int(ts)
    return whole, min(round((ts - whole) * 1e9), 999_999_999)


def human_duration(seconds: float) -> str:
    """Docker's rough durations, as go-units' HumanDuration: 'About a minute', '3 weeks'."""
    if int(seconds) < 1:
        return "Less than a second"
    if int(seconds) == 1:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"
