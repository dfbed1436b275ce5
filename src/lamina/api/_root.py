"""Where the store is when no `--root` says: one definition for `Lamina` and `lamina run`."""

from __future__ import annotations

import os


def default_root() -> str:
    """`$LAMINA_ROOT`, else /var/lib/lamina for root, else $XDG_DATA_HOME/lamina. (A str:
    `lamina run` loads no `pathlib`.)"""
    if env := os.environ.get("LAMINA_ROOT"):
        return env
    if os.geteuid() == 0:
        return "/var/lib/lamina"
    home = os.path.expanduser("~")
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
    return os.path.join(data, "lamina")
