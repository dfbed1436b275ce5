"""`_sqlite3` (the `sqlite3` package's C half) loaded without `functools`.

As it is imported, `_sqlite3` takes `functools.lru_cache` (each connection's cache of
prepared statements), and `functools` loads `collections`, `types`, `operator`,
`itertools`, `keyword` and `reprlib`: about 2 ms of every `lamina run`, for one
decorator. Where nothing has loaded `functools` yet and no other thread runs, `_sqlite3`
is given `lru_cache` as `functools` makes it: the C `_lru_cache_wrapper` around the
function with the given size, the same object that does the caching either way. Anywhere
else it is the real `functools`. Use as::

    from lamina._lightsqlite import sqlite3_c as _sqlite3
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def _lru_cache(maxsize: int | None = 128, typed: bool = False) -> Callable[[Any], Any]:
    """`functools.lru_cache(maxsize, typed)` for a C caller: what it wraps a function in."""
    from _functools import _lru_cache_wrapper  # type: ignore[import-not-found]

    if isinstance(maxsize, int) and maxsize < 0:
        maxsize = 0  # (as functools does)

    def decorating(function: Callable[..., Any]) -> Any:
        return _lru_cache_wrapper(function, maxsize, typed, _cache_info)

    return decorating


def _cache_info(hits: int, misses: int, maxsize: int | None, currsize: int) -> tuple[object, ...]:
    """`cache_info()`'s value (functools' is a named tuple; `_sqlite3` never asks)."""
    return (hits, misses, maxsize, currsize)


def _load() -> Any:
    import _thread

    if "_sqlite3" in sys.modules or "functools" in sys.modules or _thread._count():
        import _sqlite3  # (another thread could import `functools` meanwhile)

        return _sqlite3
    stand_in = type(sys)("functools")
    stand_in.lru_cache = _lru_cache  # type: ignore[attr-defined]
    sys.modules["functools"] = stand_in
    try:
        import _sqlite3

        return _sqlite3
    except (ImportError, AttributeError):  # (a Python whose `_sqlite3` wants more of it)
        pass
    finally:
        if sys.modules.get("functools") is stand_in:
            del sys.modules["functools"]
    import _sqlite3

    return _sqlite3


if TYPE_CHECKING:
    import _sqlite3 as sqlite3_c
else:
    sqlite3_c = _load()

__all__ = ["sqlite3_c"]
