"""`contextlib`'s `suppress`, `nullcontext` and `contextmanager`, without `contextlib`.

Importing `contextlib` loads `collections`, `functools`, `types`, `operator`, `itertools`,
`keyword` and `reprlib` (about 2 ms of every `lamina run`, for three small helpers). The
run path's modules import this one in its place, under the same name, so that each use
reads as the standard library's does::

    from lamina import _lightctx as contextlib

    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)

The behaviour is contextlib's (Python 3.11): `suppress` swallows the listed exceptions and
their subclasses; a `contextmanager` generator yields exactly once, an exception in the
block is thrown into it at the `yield` (and re-raised unless it handles it), and one that
yields twice or never is a RuntimeError. The type checker sees contextlib's own.
"""

from __future__ import annotations

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    from contextlib import contextmanager as contextmanager
    from contextlib import nullcontext as nullcontext
    from contextlib import suppress as suppress
else:

    class suppress:
        """Leave the block quietly if it raised one of `exceptions` (or a subclass)."""

        __slots__ = ("_exceptions",)

        def __init__(self, *exceptions):
            self._exceptions = exceptions

        def __enter__(self):
            return None

        def __exit__(self, kind, value, traceback):
            return kind is not None and issubclass(kind, self._exceptions)

    class nullcontext:
        """A context manager that does nothing; `with` gives `enter_result`."""

        __slots__ = ("enter_result",)

        def __init__(self, enter_result=None):
            self.enter_result = enter_result

        def __enter__(self):
            return self.enter_result

        def __exit__(self, *exc):
            return None

    class _GeneratorContextManager:
        """One use of a `contextmanager` function: its generator, run to its one `yield`."""

        __slots__ = ("gen",)

        def __init__(self, gen):
            self.gen = gen

        def __enter__(self):
            try:
                return next(self.gen)
            except StopIteration:
                raise RuntimeError("generator didn't yield") from None

        def __exit__(self, kind, value, traceback):
            if kind is None:
                try:
                    next(self.gen)
                except StopIteration:
                    return False
                try:
                    raise RuntimeError("generator didn't stop")
                finally:
                    self.gen.close()
            if value is None:
                value = kind()  # (a bare class raised: as `throw` would make it)
            try:
                self.gen.throw(value)  # (its traceback is `traceback`)
            except StopIteration as stopped:
                # The generator handled it and returned: suppressed, unless what stopped
                # it is the StopIteration thrown in.
                return stopped is not value
            except RuntimeError as error:
                if error is value:
                    error.__traceback__ = traceback
                    return False
                # A StopIteration raised in the block and turned into RuntimeError by the
                # generator (PEP 479): the original goes on.
                if isinstance(value, StopIteration) and error.__cause__ is value:
                    value.__traceback__ = traceback
                    return False
                raise
            except BaseException as error:
                if error is not value:
                    raise  # the generator raised something else: that goes on
                error.__traceback__ = traceback
                return False
            try:
                raise RuntimeError("generator didn't stop after throw()")
            finally:
                self.gen.close()

    def contextmanager(func):
        """`@contextmanager`: `func`, a generator function that yields once, as a factory
        of context managers."""

        def helper(*args, **kwds):
            return _GeneratorContextManager(func(*args, **kwds))

        for name in ("__module__", "__name__", "__qualname__", "__doc__"):
            with suppress(AttributeError):
                setattr(helper, name, getattr(func, name))
        helper.__dict__.update(func.__dict__)
        helper.__wrapped__ = func
        return helper
