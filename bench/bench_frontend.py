"""Time the Dockerfile frontend (parse, plan, expand) on a generated 1,000-instruction
Dockerfile, and context selection over 20,000 generated files. Not a test.

Run: `.venv/bin/python bench/bench_frontend.py [--runs N]`, or all benchmarks: `make bench`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from _bench import SRC, Row, scaled, script_main

sys.path.insert(0, str(SRC))
from lamina.dockerfile import IgnoreRules, parse, plan, select_sources

KINDS = [
    'RUN echo step {i} && test -n "$V{m}"',
    "ENV V{i}=value-{i} W{i}=${{V{m}:-default}}",
    "ARG A{i}=${{V{m}}}",
    'LABEL l{i}="$V{m}"',
    "COPY --chown=1:1 src/{i}.txt /app/{i}.txt",
    "WORKDIR /w/$V{m}",
    "EXPOSE {port}/tcp",
]


def generate(n: int = 1000) -> str:
    lines = ["ARG BASE=alpine:3", "FROM $BASE AS build"]
    for i in range(n - 1):
        lines.append(KINDS[i % len(KINDS)].format(i=i, m=max(i - 7, 0), port=1000 + i))
    return "\n".join(lines) + "\n"


def _select_tree(root: Path) -> int:
    count = 0
    for d in range(100):
        sub = root / "src" / f"d{d:03}"
        sub.mkdir(parents=True)
        for f in range(scaled(200, 2)):
            (sub / f"f{f:03}.{'log' if f % 10 == 0 else 'txt'}").write_bytes(b"x")
            count += 1
    return count


def run(runs: int, work: Path) -> list[Row]:
    """Frontend and context selection: lamina only (no other tool does this alone)."""
    text = generate()
    frontend: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        bp = plan(parse(text), build_args={"BASE": "debian:12"})
        bp.plan_stage(bp.target, ("PATH=/usr/bin",))
        frontend.append(time.perf_counter() - start)
    root = work / "frontend-ctx"
    count = _select_tree(root)
    rules = IgnoreRules(["**/*.log", "!src/d000/f000.log", "src/d099"])
    selecting: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        select_sources(root, ["src"], rules, excludes=["*.tmp"])
        selecting.append(time.perf_counter() - start)
    return [
        ("parse + plan + expand a 1,000-instruction Dockerfile", frontend, "", []),
        (f"select a {count:,}-file context (.dockerignore, --exclude)", selecting, "", []),
    ]


if __name__ == "__main__":
    script_main(run, __doc__ or "")
