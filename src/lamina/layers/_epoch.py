"""`SOURCE_DATE_EPOCH`, read in one place: the clock reproducible images use."""

from __future__ import annotations

import os

from lamina.errors import InvalidInputError


def source_date_epoch() -> int | None:
    """`SOURCE_DATE_EPOCH` as whole seconds when set; unset or empty is None.

    Anything else than digits is an error everywhere (build, import, save), never a
    silent 0: a reproducible build that is not reproducible must say so.
    """
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    if not value:
        return None
    if not value.isdigit():
        raise InvalidInputError(
            f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds",
            hint="set it to a Unix time, e.g. $(git log -1 --format=%ct), or unset it",
        )
    return int(value)
