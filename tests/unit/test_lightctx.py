"""`lamina._lightctx` behaves as `contextlib` does: every case runs against both."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from types import ModuleType
from typing import Any, cast

import pytest

from lamina import _lightctx

BOTH = pytest.mark.parametrize("lib", [contextlib, _lightctx], ids=["contextlib", "light"])


Decorator = Callable[[Callable[..., Iterator[Any]]], Callable[..., AbstractContextManager[Any]]]


def contextmanager_of(lib: ModuleType) -> Decorator:
    return cast(Decorator, lib.contextmanager)


class Boom(Exception):
    pass


class SubBoom(Boom):
    pass


@BOTH
def test_suppress_swallows_the_listed_exceptions_and_their_subclasses(lib: ModuleType) -> None:
    with lib.suppress(Boom):
        raise SubBoom
    with lib.suppress(KeyError, Boom):
        raise Boom
    with lib.suppress(Boom) as entered:
        pass
    assert entered is None
    with pytest.raises(ValueError), lib.suppress(Boom, KeyError):
        raise ValueError
    with pytest.raises(KeyboardInterrupt), lib.suppress(Exception):
        raise KeyboardInterrupt
    with lib.suppress():
        pass
    with pytest.raises(Boom), lib.suppress():
        raise Boom


@BOTH
def test_nullcontext_gives_its_value_and_lets_exceptions_through(lib: ModuleType) -> None:
    with lib.nullcontext() as nothing:
        assert nothing is None
    marker = object()
    with lib.nullcontext(marker) as value:
        assert value is marker
    with pytest.raises(Boom), lib.nullcontext():
        raise Boom


def _events(lib: ModuleType) -> tuple[list[str], Callable[..., AbstractContextManager[Any]]]:
    events: list[str] = []

    @contextmanager_of(lib)
    def tracked(name: str) -> Iterator[str]:
        """Tracks its own use."""
        events.append(f"enter {name}")
        try:
            yield name.upper()
        except Boom as e:
            events.append(f"handled {type(e).__name__}")
        finally:
            events.append(f"exit {name}")

    return events, tracked


@BOTH
def test_contextmanager_runs_the_generator_around_the_block(lib: ModuleType) -> None:
    events, tracked = _events(lib)
    with tracked("a") as value:
        events.append(f"body {value}")
    with tracked("b"):
        raise SubBoom  # handled in the generator: suppressed
    with pytest.raises(KeyError), tracked("c"):
        raise KeyError("k")
    assert events == ["enter a", "body A", "exit a", "enter b", "handled SubBoom", "exit b",
                      "enter c", "exit c"]  # fmt: skip
    assert tracked.__name__ == "tracked"
    assert tracked.__doc__ == "Tracks its own use."
    assert tracked.__wrapped__.__name__ == "tracked"


@BOTH
def test_the_exception_that_goes_on_is_the_one_raised(lib: ModuleType) -> None:
    @contextmanager_of(lib)
    def passthrough() -> Iterator[None]:
        yield

    raised = RuntimeError("mine")
    with pytest.raises(RuntimeError) as caught, passthrough():
        raise raised
    assert caught.value is raised
    stop = StopIteration("in the block")
    with pytest.raises(StopIteration) as stopped, passthrough():
        raise stop
    assert stopped.value is stop


@BOTH
def test_a_generator_that_raises_something_else_replaces_the_exception(lib: ModuleType) -> None:
    @contextmanager_of(lib)
    def translating() -> Iterator[None]:
        try:
            yield
        except Boom as e:
            raise ValueError("translated") from e

    with pytest.raises(ValueError, match="translated") as caught, translating():
        raise Boom
    assert isinstance(caught.value.__cause__, Boom)


@BOTH
def test_a_generator_that_yields_twice_or_never_is_an_error(lib: ModuleType) -> None:
    closed: list[bool] = []

    @contextmanager_of(lib)
    def twice() -> Iterator[None]:
        try:
            yield
            yield
        finally:
            closed.append(True)

    @contextmanager_of(lib)
    def stubborn() -> Iterator[None]:
        try:
            yield
        except KeyError:
            yield
        finally:
            closed.append(True)

    @contextmanager_of(lib)
    def never() -> Iterator[None]:
        if False:
            yield

    # Closed after the complaint (gh-110378: contextlib does so from Python 3.11.7 on).
    closes = lib is _lightctx or sys.version_info >= (3, 11, 7)
    first = twice()  # (kept: its generator is not collected, only closed)
    with pytest.raises(RuntimeError, match="didn't stop"), first:
        pass
    assert closed == ([True] if closes else [])
    second = stubborn()
    with pytest.raises(RuntimeError, match="didn't stop after throw"), second:
        raise KeyError  # caught in the generator, which yields again
    assert closed == ([True, True] if closes else [])
    with pytest.raises(RuntimeError, match="didn't yield"), never():
        pass


@BOTH
def test_each_call_of_a_contextmanager_runs_its_own_generator(lib: ModuleType) -> None:
    count: list[int] = []

    @contextmanager_of(lib)
    def counted() -> Iterator[int]:
        count.append(1)
        yield len(count)

    with counted() as a, counted() as b:
        assert (a, b) == (1, 2)
