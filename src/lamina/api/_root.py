"""Where the store is when no `--root` says: one definition for `Lamina` and `lamina run`."""

from __future__ import annotations

import os
from pathlib import Path


def default_root() -> Path:
    """`$LAMINA_ROOT`, else /var/lib/lamina for root, else $XDG_DATA_HOME/lamina."""
    if env := os.environ.get("LAMINA_ROOT"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/lamina")
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "lamina"
