"""Run every benchmark (`bench/bench_*.py`) beside the other tools, in one run.

    python bench/run.py [--runs N] [--only NAME] [--tmp DIR]

Each module's `run(runs, work)` returns rows (workload, lamina seconds per run, other
tool, its seconds per run); this prints one markdown table of medians with min-max and
the ratio lamina ÷ other, and writes the same as JSON under bench/results/.
LAMINA_BENCH_SCALE=0.05 shrinks every workload for a quick trial. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _bench import Row, scale, table  # noqa: E402


def modules() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per workload (default 3)")
    parser.add_argument(
        "--only", action="append", choices=modules(), help="run only this benchmark (repeatable)"
    )
    parser.add_argument("--tmp", type=Path, default=Path("/var/tmp"), help="work dir parent")
    opts = parser.parse_args()
    if opts.runs < 1:
        parser.error("--runs must be at least 1")
    chosen = opts.only or modules()
    results: dict[str, list[Row]] = {}
    started = time.time()
    for name in chosen:
        module = importlib.import_module(f"bench_{name}")
        work = Path(tempfile.mkdtemp(prefix=f"lamina-bench-{name}-", dir=opts.tmp))
        print(f"== {name} ({opts.runs} runs)", flush=True)
        try:
            results[name] = module.run(opts.runs, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    rows = [row for name in chosen for row in results[name]]
    print()
    print(table(rows))
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = out_dir / f"{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "date": stamp,
                "runs": opts.runs,
                "scale": scale(),
                "machine": f"{platform.machine()}, {platform.node()}",
                "seconds": round(time.time() - started, 1),
                "workloads": [
                    {
                        "benchmark": name,
                        "workload": w,
                        "lamina": ours,
                        "lamina_median": statistics.median(ours) if ours else None,
                        "other": other,
                        "other_times": theirs,
                        "other_median": statistics.median(theirs) if theirs else None,
                    }
                    for name in chosen
                    for w, ours, other, theirs in results[name]
                ],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\n(results: {out.relative_to(HERE.parent)})")


if __name__ == "__main__":
    main()
