"""`lamina run`'s modules compiled into one file, which the launcher loads them from.

Python finds and loads a module in steps that each cost a little: a look at every
directory on `sys.path`, a `stat` of the source, an `open` and `read` of its `.pyc`, the
checks of its header, and the import system's own Python code around each. `lamina run`
loads about forty of lamina's modules, and those steps came to about 2 ms of every run (up
to 4 ms on a busy machine), next to runc's own ~25 ms. So `make venv` (`lamina.cli._script`)
writes the code objects of exactly those modules (`RUN_PATH` and what they import) into
one file, ``lamina/__pycache__/run-path.<cache tag>.bundle``, and the launcher puts a
finder first on `sys.meta_path` that serves them from it (`install`): one `open`, one
`read`, one `marshal.loads`, then per module one `stat` of its source.

A module is served only while its source is the one compiled: the same size and mtime (the
check a `.pyc` makes). An edited source, a bundle of another Python (its magic number), an
interpreter with `-O`: the module (or the bundle) is passed over and Python loads it the
usual way. Modules keep their `__file__` and `__spec__.origin`, so tracebacks and the
worker scripts found beside them (`os.path.dirname(__file__)`) are as before.

    python -m lamina.cli._script .venv/bin/lamina    # writes the launcher and the bundle
"""

from __future__ import annotations

import marshal
import sys

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from importlib.machinery import ModuleSpec
    from types import CodeType, ModuleType

    # name -> (is a package, source path, source mtime ns, source size, code)
    Table = dict[str, tuple[bool, str, int, int, CodeType]]

# What `lamina run` imports (with everything they import in turn): the entry point, the
# container code over the light host, and what they load only once a run is under way.
RUN_PATH = (
    "lamina.cli",
    "lamina.cli._launch",
    "lamina.api",
    "lamina.api._containers",
    "lamina.api._container_host",
    "lamina.api._container_opts",
    "lamina.api._recover",
    "lamina.api._root",
    "lamina.oci._config",
    "lamina.oci._reference",
    "lamina.runtime._monitor",
    "lamina.runtime._user",
    "lamina.snapshots",
    "lamina.store._rows",
)
_FORMAT = b"lamina run-path bundle 1\n"


def bundle_path() -> str:
    """Where this interpreter's bundle of this installation of lamina is."""
    here = __file__.rpartition("/")[0]
    return f"{here}/__pycache__/run-path.{sys.implementation.cache_tag}.bundle"


def _magic() -> bytes:
    import _frozen_importlib_external  # (loaded at start)

    return _frozen_importlib_external.MAGIC_NUMBER


class _Loader:
    """Runs a module's code from the bundle (the code object rides in `loader_state`)."""

    @staticmethod
    def create_module(spec: ModuleSpec) -> None:
        return None  # the default module

    @staticmethod
    def exec_module(module: ModuleType) -> None:
        spec = module.__spec__
        assert spec is not None
        exec(spec.loader_state, module.__dict__)


class _Finder:
    """First on `sys.meta_path`: the bundle's modules whose sources are unchanged."""

    def __init__(self, table: Table) -> None:
        from _frozen_importlib import ModuleSpec
        from posix import stat

        self.table = table
        self._stat = stat
        self._spec = ModuleSpec

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        entry = self.table.get(name)
        if entry is None:
            return None
        is_package, source, mtime_ns, size, code = entry
        try:
            st = self._stat(source)
        except OSError:
            return None
        if st.st_mtime_ns != mtime_ns or st.st_size != size:
            del self.table[name]  # edited since: the usual way, from now on
            return None
        # (`_Loader` has a loader's two methods, not `importlib.abc`'s base: loading that
        # costs every run more than this module saves.)
        spec: ModuleSpec = self._spec(
            name, _Loader, origin=source, loader_state=code, is_package=is_package  # type: ignore[arg-type]
        )
        spec.has_location = True
        if is_package:
            spec.submodule_search_locations = [source.rpartition("/")[0]]
        return spec


def install(path: str | None = None) -> bool:
    """Serve the bundle's modules from now on (False: none to serve here, nothing done)."""
    if sys.flags.optimize:
        return False  # compiled without -O: its asserts and docstrings would come back
    try:
        with open(path or bundle_path(), "rb") as f:
            data = f.read()
    except OSError:
        return False
    head = _FORMAT + _magic()
    if not data.startswith(head):
        return False
    try:
        table: Table = marshal.loads(memoryview(data)[len(head) :])
    except (EOFError, ValueError, TypeError):
        return False
    sys.meta_path.insert(0, _Finder(table))
    return True


def run_path_modules(entries: Iterable[str] = RUN_PATH) -> list[str]:
    """lamina's modules that importing `entries` loads, in a fresh `python -S` (as the
    launcher starts), so nothing this process has loaded counts."""
    import os
    import subprocess

    where = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (
        "import sys\n"
        f"sys.path.append({where!r})\n"
        f"for name in {list(entries)!r}:\n"
        "    __import__(name)\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.split('.')[0] == 'lamina')))\n"
    )
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                          check=True)  # fmt: skip
    return done.stdout.split()


def write_bundle(modules: Iterable[str], path: str | None = None) -> str:
    """Compile `modules` (lamina's, by name) from their sources into the bundle at `path`
    (default: `bundle_path()`), by write-and-rename; the path written."""
    import importlib.util
    import os

    table: Table = {}
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            raise ValueError(f"{name}: not a module compiled from a .py source")
        with open(spec.origin, "rb") as f:
            source = f.read()
            st = os.fstat(f.fileno())
        code = compile(source, spec.origin, "exec", dont_inherit=True, optimize=0)
        is_package = spec.submodule_search_locations is not None
        table[name] = (is_package, spec.origin, st.st_mtime_ns, st.st_size, code)
    target = path or bundle_path()
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = f"{target}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(_FORMAT + _magic() + marshal.dumps(table))
    os.replace(tmp, target)
    return target
