"""Signals as users name them: `TERM`, `SIGTERM`, `15` (docker kill -s, STOPSIGNAL)."""

from __future__ import annotations

import signal

from lamina.errors import InvalidInputError

_MAX_SIGNAL = 64


def parse_signal(text: str) -> int:
    """The signal number `text` names; InvalidInputError for anything else."""
    value = text.strip()
    if value.isascii() and value.isdigit():
        number = int(value)
        if 1 <= number <= _MAX_SIGNAL:
            return number
        raise InvalidInputError(f"invalid signal: {text}")
    name = value.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name.startswith("SIGRTMIN+") or name.startswith("SIGRTMAX-"):
        _, _, offset = name.partition("+" if "+" in name else "-")
        if offset.isdigit():
            number = (
                signal.SIGRTMIN + int(offset) if "+" in name else signal.SIGRTMAX - int(offset)
            )
            if signal.SIGRTMIN <= number <= signal.SIGRTMAX:
                return int(number)
        raise InvalidInputError(f"invalid signal: {text}")
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise InvalidInputError(
            f"invalid signal: {text}", hint="a name such as TERM or SIGKILL, or a number"
        ) from None


def signal_name(number: int) -> str:
    """`SIGTERM` for 15; the number as text when it has no name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
