"""lamina._frozen.NamedTuple behaves as typing.NamedTuple where the run path relies on it."""

from __future__ import annotations

import pickle
import typing

import pytest

if typing.TYPE_CHECKING:  # the run path's modules import it so too
    from typing import NamedTuple
else:
    from lamina._frozen import NamedTuple


assert NamedTuple is not typing.NamedTuple


class Light(NamedTuple):
    name: str
    size: int = 0


class Heavy(typing.NamedTuple):
    name: str
    size: int = 0


@pytest.mark.parametrize("cls", [Light, Heavy])
def test_fields_defaults_replace_and_pickle(cls: type[Light] | type[Heavy]) -> None:
    made = cls("a")
    assert tuple(made) == ("a", 0) and made.size == 0
    assert cls("a", size=3)._replace(name="b") == ("b", 3)
    assert made._asdict() == {"name": "a", "size": 0}
    assert pickle.loads(pickle.dumps(made)) == made
    assert repr(cls("x", 1)) == f"{cls.__name__}(name='x', size=1)"


@pytest.mark.parametrize("cls", [Light, Heavy])
def test_replace_refuses_a_field_it_does_not_have(cls: type[Light] | type[Heavy]) -> None:
    with pytest.raises(ValueError, match="unexpected field names"):
        cls("a")._replace(nmae="b")  # type: ignore[call-arg]
