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

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    from typing import ClassVar


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


class _TupleBase(tuple):  # type: ignore[type-arg]
    """What every light named tuple class shares (see `NamedTuple`)."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _field_defaults: ClassVar[dict[str, object]] = {}

    def __new__(cls, *args: object, **kwargs: object) -> _TupleBase:
        fields = cls._fields
        if len(args) > len(fields):
            raise TypeError(f"{cls.__name__}() takes {len(fields)} arguments, got {len(args)}")
        values = list(args)
        for name in fields[len(args) :]:
            if name in kwargs:
                values.append(kwargs.pop(name))
            elif name in cls._field_defaults:
                values.append(cls._field_defaults[name])
            else:
                raise TypeError(f"{cls.__name__}() missing argument {name!r}")
        if kwargs:
            raise TypeError(f"{cls.__name__}() got unexpected arguments {sorted(kwargs)}")
        return tuple.__new__(cls, values)

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={v!r}" for n, v in zip(self._fields, self, strict=True))
        return f"{type(self).__name__}({shown})"

    def __getnewargs__(self) -> tuple[object, ...]:
        return tuple(self)

    def _asdict(self) -> dict[str, object]:
        return dict(zip(self._fields, self, strict=True))

    def _replace(self, **changes: object) -> _TupleBase:
        made = type(self)(*(changes.pop(n, v) for n, v in zip(self._fields, self, strict=True)))
        if changes:  # typing's NamedTuple refuses a misspelt field rather than ignore it
            raise ValueError(f"Got unexpected field names: {list(changes)!r}")
        return made


def _make_tuple_class(name: str, ns: dict[str, object]) -> type:
    from _operator import itemgetter

    annotations: dict[str, object] = ns.get("__annotations__", {})  # type: ignore[assignment]
    fields = tuple(annotations)
    defaults = {n: ns.pop(n) for n in fields if n in ns}
    body: dict[str, object] = {**ns, "__slots__": (), "_fields": fields,
                               "_field_defaults": defaults}  # fmt: skip
    for i, field in enumerate(fields):
        body[field] = property(itemgetter(i), doc=f"Alias for field number {i}")
    return type(name, (_TupleBase,), body)


class _NamedTupleMeta(type):
    def __new__(mcs, name: str, bases: tuple[type, ...], ns: dict[str, object]) -> type:
        if not bases:  # the marker class itself
            return super().__new__(mcs, name, bases, ns)
        return _make_tuple_class(name, ns)


class NamedTuple(metaclass=_NamedTupleMeta):
    """`typing.NamedTuple`'s class syntax without `typing` (milliseconds of every `lamina
    run`): `class P(NamedTuple): x: int; y: int = 0` makes a tuple subclass with those
    fields (defaults, keyword arguments, `_fields`, `_replace`, `_asdict`, equality and
    unpacking as a tuple). Modules import it as::

        if TYPE_CHECKING:
            from typing import NamedTuple
        else:
            from lamina._frozen import NamedTuple
    """
