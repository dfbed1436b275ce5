"""Paths as str on `lamina run`'s path: `pathlib` (with the `urllib.parse`, `ipaddress`,
`fnmatch` and `re` it imports) costs milliseconds of every run. The modules that path loads
take `str` or `Path` (`StrPath`) and, where they build a path from one they were given,
give back the same kind (`join`), so the rest of lamina keeps its `Path`s.

    join("/r", "containers", cid)        -> "/r/containers/<cid>"
    join(Path("/r"), "containers", cid)  -> Path("/r/containers/<cid>")
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    from pathlib import Path
    from typing import TypeAlias, TypeVar

    StrPath: TypeAlias = str | os.PathLike[str]
    P = TypeVar("P", str, Path)


def join(base: P, *names: str) -> P:
    """`base / name / ...`, of `base`'s kind (str or Path)."""
    if isinstance(base, str):
        return os.path.join(base, *names)
    return base.joinpath(*names)


def absolute(path: StrPath) -> str:
    """`str(Path(path).absolute())`: the working directory prefixed to a relative path."""
    text = os.fspath(path)
    return text if os.path.isabs(text) else os.path.join(os.getcwd(), text)
