"""What every benchmark module shares: timing a command, dropping caches, the scale knob.

A benchmark module `bench_<topic>.py` exposes
`run(runs: int, work: Path) -> list[Row]`, a Row being (workload, lamina seconds per
run, other tool's name, other tool's seconds per run; "" and [] when there is none),
and keeps working as a script. `bench/run.py` runs them all.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

Row = tuple[str, list[float], str, list[float]]

SRC = Path(__file__).resolve().parents[1] / "src"


def scale() -> float:
    """LAMINA_BENCH_SCALE (default 1): multiplies file counts, so a trial run is quick."""
    return float(os.environ.get("LAMINA_BENCH_SCALE", "1"))


def scaled(n: int, least: int = 10) -> int:
    return max(least, int(n * scale()))


def drop_caches() -> None:
    """Write back and drop the page cache, dentries and inodes (a cold start); root only."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError as exc:
        print(f"(caches not dropped: {exc.strerror})", file=sys.stderr)


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    """Run a command to completion; its wall time in seconds. A failure stops the bench."""
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])}… failed: {done.stderr.strip()[-800:]}")
    return elapsed


def summary(times: list[float]) -> str:
    """`median (min-max)` in seconds."""
    if not times:
        return "-"
    if len(times) == 1:
        return f"{times[0]:.3f}"
    return f"{statistics.median(times):.3f} ({min(times):.3f}-{max(times):.3f})"


def ratio(ours: list[float], theirs: list[float]) -> str:
    if not ours or not theirs or statistics.median(theirs) == 0:
        return "-"
    return f"{statistics.median(ours) / statistics.median(theirs):.2f}"


def table(rows: list[Row]) -> str:
    """The rows as one markdown table: medians with min-max, and lamina ÷ other."""
    lines = [
        "| workload | lamina s, median (min-max) | other tool | other s, median (min-max) "
        "| ratio lamina ÷ other |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, ours, other, theirs in rows:
        lines.append(
            f"| {name} | {summary(ours)} | {other or '-'} | {summary(theirs)} "
            f"| {ratio(ours, theirs)} |"
        )
    return "\n".join(lines)


def script_main(run: object, description: str) -> None:
    """Run one module as a script: `--runs N`, a temporary work dir, the table printed."""
    import argparse
    import shutil
    import tempfile

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tmp", type=Path, default=Path("/var/tmp"))
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lamina-bench-", dir=opts.tmp))
    try:
        rows = run(opts.runs, work)  # type: ignore[operator]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(rows))
