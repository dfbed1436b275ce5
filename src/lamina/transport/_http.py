"""httpx for the registry transport, imported without httpx's own command line.

httpx's `__init__` imports `httpx._main`, its `httpx` command (rich, pygments, click),
whenever those happen to be installed, and falls back to a stub when that import fails.
lamina never runs that command, and the import was a quarter of the start-up of every
pull and push (measured with `python -X importtime`). A None in `sys.modules` makes an
import fail (the import system's documented rule), so httpx takes its fallback; the
entry is set only if httpx's command is not loaded already.
"""

from __future__ import annotations

import sys

sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx  # noqa: E402 - after the entry above, which is the point of this module

__all__ = ["httpx"]
