"""`lamina._lightsqlite`: `_sqlite3` without `functools` where that is safe, and the same
statement cache either way."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

from lamina import _lightsqlite

SRC = str(Path(__file__).resolve().parents[2] / "src")

# Run in a fresh `python -S` (nothing loaded yet), as `lamina run` starts.
_CHECK = """
import sys
sys.path.insert(0, sys.argv[1])
if sys.argv[2] == "thread":
    import _thread
    running, never = _thread.allocate_lock(), _thread.allocate_lock()
    running.acquire(); never.acquire()
    _thread.start_new_thread(lambda: (running.release(), never.acquire()), ())
    running.acquire()  # (not `threading`: it loads functools itself)
from lamina._lightsqlite import sqlite3_c
loaded = "functools" in sys.modules
db = sqlite3_c.connect(":memory:", cached_statements=4)
db.execute("CREATE TABLE t (x)")
for i in range(40):  # more distinct statements than the cache holds, each used twice
    db.execute(f"INSERT INTO t VALUES ({i % 7})")
    db.execute(f"INSERT INTO t VALUES ({i % 7})")
total = db.execute("SELECT count(*), sum(x) FROM t").fetchone()
import functools
print(loaded, total, functools.partial.__module__, functools.lru_cache.__module__)
"""


def _check(mode: str) -> str:
    done = subprocess.run([sys.executable, "-S", "-c", _CHECK, SRC, mode],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return done.stdout.strip()


def test_alone_it_loads_no_functools_and_the_statement_cache_works() -> None:
    assert _check("alone") == "False (80, 230) functools functools"


def test_with_another_thread_running_it_takes_the_real_functools() -> None:
    assert _check("thread") == "True (80, 230) functools functools"


def test_the_stand_in_caches_as_functools_lru_cache_does() -> None:
    for size in (2, 0, None, -1):
        light_calls: list[int] = []
        real_calls: list[int] = []
        light = _lightsqlite._lru_cache(size)(lambda x, seen=light_calls: seen.append(x) or x * x)
        real = functools.lru_cache(size)(lambda x, seen=real_calls: seen.append(x) or x * x)
        for x in (1, 2, 1, 3, 1, 2, 2, 4, 1):
            assert light(x) == real(x) == x * x
        assert light_calls == real_calls
        assert light.cache_info()[:2] == real.cache_info()[:2]  # (hits, misses)
