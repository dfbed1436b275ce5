"""Signals as users name them: `TERM`, `SIGTERM`, `15` (docker kill -s, STOPSIGNAL)."""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # (no stubs: `signal`'s C half)

from lamina.errors import InvalidInputError

_MAX_SIGNAL = 64


def parse_signal(text: str) -> int:
    """The signal number `text` names; InvalidInputError for anything else."""
    value = text.strip()
    if value.isascii() and value.isdigit():
        number = int(value)
        if 1 <= number <= _MAX_SIGNAL:
            return number
        raise InvalidInputError(f"Invalid signal: {text}")
    name = value.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name.startswith("SIGRTMIN+") or name.startswith("SIGRTMAX-"):
        _, _, offset = name.partition("+" if "+" in name else "-")
        if offset.isdigit():
            number = (
                _signal.SIGRTMIN + int(offset) if "+" in name else _signal.SIGRTMAX - int(offset)
            )
            if _signal.SIGRTMIN <= number <= _signal.SIGRTMAX:
                return int(number)
        raise InvalidInputError(f"Invalid signal: {text}")
    # The names `signal.Signals` has (the C module's SIG* constants, not SIG_DFL and the
    # like), read from `_signal`: `signal` builds its enums on import, which every
    # `lamina run` (STOPSIGNAL is checked at create) would pay.
    found = getattr(_signal, name, None) if name.isupper() and "_" not in name else None
    if not isinstance(found, int):
        raise InvalidInputError(
            f"Invalid signal: {text}", hint="a name such as TERM or SIGKILL, or a number"
        )
    return found


def signal_name(number: int) -> str:
    """`SIGTERM` for 15; the number as text when it has no name."""
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
