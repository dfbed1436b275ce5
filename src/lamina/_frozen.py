"""Read-only values without `dataclasses`: what a frozen dataclass gives (fields in order,
equality, hashing, repr, no assignment), for the values `lamina run` loads. Importing
`dataclasses` (and the `inspect`, `ast` and `dis` it brings) and building each class costs
milliseconds of every command; a value class here costs none of that.

    class Point(Frozen):
        _fields = __slots__ = ("x", "y")
        x: int
        y: int

        def __init__(self, x: int, y: int = 0) -> None:
            self._set(x=x, y=y)
"""

from __future__ import annotations


class Frozen:
    """Base of a read-only value whose fields are `_fields` (also its `__slots__`)."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def _set(self, **values: object) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def _key(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Frozen)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({shown})"
