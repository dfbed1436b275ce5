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
# The same for zstandard, which httpx imports (if installed) only to offer zstd as a
# Content-Encoding, which registries do not use for blobs; lamina imports it itself when a
# zstd layer comes. Taken out again once httpx is in, so that import finds the module.
_hidden = "zstandard" not in sys.modules
if _hidden:
    sys.modules["zstandard"] = None  # type: ignore[assignment]
try:
    import httpcore
    import httpx  # after the entries above, which are the point of this module
finally:
    if _hidden and sys.modules.get("zstandard", 0) is None:
        del sys.modules["zstandard"]

# httpcore reads an HTTP/1.1 response 64 KiB at a time, and every piece then goes
# through h11, httpcore and httpx in Python, and through the blob's hash, its ingest file
# and the decompressor, each call a hand-over of the GIL between a pull's threads.
# Reads of up to 1 MiB (what the socket holds, so not slower to arrive) cut a pull into
# an empty store by a quarter (wall) and its CPU by a seventh (bench_registry, measured).
# The class attribute is httpcore's only knob for it; it only sets the most one read asks.
_READ = 1 << 20
if getattr(httpcore.HTTP11Connection, "READ_NUM_BYTES", _READ) < _READ:
    httpcore.HTTP11Connection.READ_NUM_BYTES = _READ

__all__ = ["httpx"]
