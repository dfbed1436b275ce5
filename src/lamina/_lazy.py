"""Public names a package loads on first use (PEP 562's module `__getattr__` and `__dir__`).

Start-up is a cost every command pays: `lamina run` should not load the tar readers,
compressors or build code that a package's `__init__` would otherwise import. A package
lists where each such name lives, keeps the real imports under `TYPE_CHECKING` for the
type checker, and ends with::

    __getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__, globals())
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # `typing` costs milliseconds; the run path should not need it
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any


def lazy_names(
    package: str, where: Mapping[str, str], public: Iterable[str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`: a name in `where` is imported from its
    module (`where[name]`, a full module name) when first asked for, then kept in
    `namespace` (the package's globals); `dir()` lists `public` and the private names."""
    listed = tuple(public)

    def getattr_(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        __import__(module)  # (not importlib's import_module: one module less to load)
        value = getattr(sys.modules[module], name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted({*listed, *(n for n in namespace if n.startswith("_"))})

    return getattr_, dir_
