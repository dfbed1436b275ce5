"""Time the Dockerfile frontend (parse, plan, expand) on a generated 1,000-instruction
Dockerfile, and context selection over 20,000 generated files. Not a test."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

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


def main() -> None:
    text = generate()
    start = time.perf_counter()
    df = parse(text)
    parsed = time.perf_counter()
    bp = plan(df, build_args={"BASE": "debian:12"})
    steps = bp.plan_stage(bp.target, ("PATH=/usr/bin",))
    done = time.perf_counter()
    print(f"frontend: {len(steps)} instructions: parse {parsed - start:.3f}s, "
          f"plan+expand {done - parsed:.3f}s, total {done - start:.3f}s")  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for d in range(100):
            sub = root / "src" / f"d{d:03}"
            sub.mkdir(parents=True)
            for f in range(200):
                (sub / f"f{f:03}.{'log' if f % 10 == 0 else 'txt'}").write_bytes(b"x")
        rules = IgnoreRules(["**/*.log", "!src/d000/f000.log", "src/d099"])
        start = time.perf_counter()
        files = select_sources(root, ["src"], rules, excludes=["*.tmp"])
        took = time.perf_counter() - start
        print(f"context: {len(files)} entries of 20,000 files selected in {took:.3f}s")


if __name__ == "__main__":
    main()
