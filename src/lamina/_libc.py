"""The three C library calls lamina makes that `os` has no function for: mount(2),
umount2(2) and prctl(2), each returning 0 or the errno it failed with.

Called through `_ctypes` (ctypes' C half) directly: the `ctypes` package builds some forty
classes and loads `struct` and `types` as it is imported, about 1.5 ms of every
`lamina run`, which needs one function type and four argument types. Declared as ctypes
declares a `CDLL(None, use_errno=True)` function, with its argument types: a value of
the wrong kind (a str for a `char *`) is ctypes' ArgumentError, never a call.
"""

from __future__ import annotations

import _ctypes

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    _IntData = _ctypes._SimpleCData[int]
    _BytesData = _ctypes._SimpleCData[bytes | None]
else:  # (not subscriptable at run time)
    _IntData = _BytesData = _ctypes._SimpleCData


class _Int(_IntData):  # ctypes.c_int
    _type_ = "i"


class _ULong(_IntData):  # ctypes.c_ulong
    _type_ = "L"


class _CharP(_BytesData):  # ctypes.c_char_p: bytes or None
    _type_ = "z"


class _Function(_ctypes.CFuncPtr):
    """A function of this process' C library: `int f(...)`, errno kept for `get_errno`."""

    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = _Int


class _Process:
    """What a function is looked up in: the running program and its libraries (dlopen
    NULL, as `ctypes.CDLL(None)`)."""

    _handle = _ctypes.dlopen(None, 0)  # type: ignore[arg-type]  # (NULL: the program)


def _function(name: str, *argtypes: type) -> _Function:
    function = _Function((name, _Process))  # type: ignore[arg-type]  # (has `_handle`)
    function.argtypes = argtypes
    return function


_mount = _function("mount", _CharP, _CharP, _CharP, _ULong, _CharP)
_umount2 = _function("umount2", _CharP, _Int)
_prctl = _function("prctl", _Int, _ULong, _ULong, _ULong, _ULong)


def _errno(rc: int) -> int:
    return int(_ctypes.get_errno()) if rc == -1 else 0


def mount(source: bytes | None, target: bytes, fstype: bytes | None, flags: int,
          data: bytes | None) -> int:  # fmt: skip
    """mount(2): 0, or the errno it failed with."""
    return _errno(_mount(source, target, fstype, flags, data))


def umount2(target: bytes, flags: int) -> int:
    """umount2(2): 0, or the errno it failed with."""
    return _errno(_umount2(target, flags))


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2) with integer arguments (an option that sets something): 0, or the errno it
    failed with."""
    return _errno(_prctl(option, arg2, arg3, arg4, arg5))
