"""`lamina analyze` as a user runs it: the terminal view at 80 columns, --json fields,
and every --ci budget passing at its threshold and failing beyond it (exit code and
message), from the command line and from dive's .dive-ci."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from lamina.api import Lamina

pytestmark = pytest.mark.integration

MIB = 1 << 20
Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def chmodded(lam: Lamina, build: Callable[..., str]) -> str:
    build("FROM busybox\nRUN dd if=/dev/zero of=/big bs=1M count=10 && echo hi > /small\n"
          "RUN chmod 600 /big\n", "app")  # fmt: skip
    return "app"


def test_the_terminal_view_fits_80_columns_and_names_the_line(cli: Cli, chmodded: str) -> None:
    done = cli("analyze", chmodded)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "Dockerfile:3" in done.stdout and "RUN chmod 600 /big" in done.stdout
    assert "metadata-only" in done.stdout and "/big" in done.stdout
    assert "10.5MB" in done.stdout  # 10 MiB wasted, in Docker's decimal units


def test_json_fields_with_per_entry_markers(cli: Cli, chmodded: str) -> None:
    done = cli("analyze", chmodded, "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["schema"] == "lamina.analyze/v1"
    assert doc["totals"]["wasted_bytes"] == 10 * MIB
    assert doc["user"]["wasted_percent"] == pytest.approx(100 * MIB * 10 / (20 * MIB + 3))
    first, second = doc["layers"][1], doc["layers"][2]
    assert {"change": "A", "path": "/big"}.items() <= next(
        e for e in first["entries"] if e["path"] == "/big"
    ).items()
    big = next(e for e in second["entries"] if e["path"] == "/big")
    assert (big["change"], big["mode"], big["size"]) == ("M", "0600", 10 * MIB)
    assert big["digest"].startswith("sha256:")
    (waste,) = [w for w in doc["waste"] if w["bytes"]]
    assert waste == {"path": "/big", "bytes": 10 * MIB, "kind": "metadata-only", "type": "file",
                     "layer": 1, "hidden_by": 2, "line": "Dockerfile:3",
                     "fix": waste["fix"]}  # fmt: skip
    assert "--chmod" in waste["fix"]
    assert doc["lines"][0]["line"] == "Dockerfile:3"
    assert second["line"] == "Dockerfile:3" and second["instruction"] == "RUN chmod 600 /big"


def _budget_cases(lam: Lamina) -> list[tuple[str, list[str], list[str]]]:
    report, _ = lam.analyze("app")
    t, u = report.totals, report.user_totals
    biggest = max(layer.size for layer in report.layers)
    return [
        ("max-wasted-bytes", ["--max-wasted-bytes", str(t.wasted_bytes)],
         ["--max-wasted-bytes", str(t.wasted_bytes - 1)]),
        ("max-wasted-percent", ["--max-wasted-percent", repr(u.wasted_percent)],
         ["--max-wasted-percent", repr(u.wasted_percent - 0.01)]),
        ("min-efficiency", ["--min-efficiency", repr(t.efficiency)],
         ["--min-efficiency", repr(t.efficiency + 0.0001)]),
        ("max-layer-bytes", ["--max-layer-bytes", str(biggest)],
         ["--max-layer-bytes", str(biggest - 1)]),
        ("forbid", ["--forbid", "/var/cache/*.deb"], ["--forbid", "/b*"]),
    ]  # fmt: skip


def test_each_budget_passes_at_its_threshold_and_fails_beyond(
    lam: Lamina, cli: Cli, chmodded: str
) -> None:
    for rule, passing, failing in _budget_cases(lam):
        ok = cli("analyze", chmodded, "--ci", *passing)
        assert ok.returncode == 0, (rule, ok.stdout, ok.stderr)
        assert f"PASS {rule}" in ok.stdout
        bad = cli("analyze", chmodded, "--ci", *failing)
        assert bad.returncode == 1, (rule, bad.stdout)
        assert f"FAIL {rule}" in bad.stdout
    bad = cli("analyze", chmodded, "--ci", "--max-wasted-bytes", str(10 * MIB - 1))
    assert f"wasted {10 * MIB} bytes (budget {10 * MIB - 1})" in bad.stdout
    bad = cli("analyze", chmodded, "--ci", "--forbid", "/b*", "--json")
    assert bad.returncode == 1
    assert "FAIL forbid: 1 forbidden path(s) match /b*: /big" in bad.stderr
    assert json.loads(bad.stdout)["budgets"][0]["passed"] is False


def test_dive_ci_rules_are_read_from_the_working_directory(
    cli: Cli, chmodded: str, tmp_path: Path
) -> None:
    work = tmp_path / "repo"
    work.mkdir()
    (work / ".dive-ci").write_text(f"rules:\n  highest-wasted-bytes: {10 * MIB}\n"
                                   "  lowest-efficiency: disabled\n"
                                   "  highest-user-wasted-percent: off\n")  # fmt: skip
    ok = cli("analyze", chmodded, "--ci", cwd=work)
    assert ok.returncode == 0 and "PASS max-wasted-bytes" in ok.stdout
    assert "min-efficiency" not in ok.stdout and "max-wasted-percent" not in ok.stdout
    # A rule the file leaves out keeps dive's default (highest-user-wasted-percent 0.1).
    (work / ".dive-ci").write_text("rules:\n  lowest-efficiency: disabled\n")
    default = cli("analyze", chmodded, "--ci", cwd=work)
    assert default.returncode == 1 and "FAIL max-wasted-percent" in default.stdout
    assert "budget 10.00%" in default.stdout and "min-efficiency" not in default.stdout
    (work / ".dive-ci").write_text("rules:\n  highest-user-wasted-percent: 0.49\n")
    bad = cli("analyze", chmodded, "--ci", cwd=work)
    assert bad.returncode == 1 and "FAIL max-wasted-percent" in bad.stdout
    (work / ".dive-ci").write_text("rules:\n  lowest-efficiency: 2\n")
    broken = cli("analyze", chmodded, "--ci", cwd=work)
    assert broken.returncode == 1
    assert "not a ratio between 0 and 1" in broken.stderr and "Traceback" not in broken.stderr


def test_bad_input_is_one_line_and_exit_1(cli: Cli, chmodded: str) -> None:
    missing = cli("analyze", "no-such-image")
    assert missing.returncode == 1 and "no such image" in missing.stderr
    size = cli("analyze", chmodded, "--ci", "--max-wasted-bytes", "lots")
    assert size.returncode == 1 and "not a size" in size.stderr
    for pct in ("nan", "-1", "101", "inf"):  # NaN fails every comparison: no budget at all
        bad = cli("analyze", chmodded, "--ci", "--max-wasted-percent", pct)
        assert bad.returncode == 1 and "between 0 and 100" in bad.stderr, (pct, bad.stderr)
    usage = cli("analyze")
    assert usage.returncode == 2


def test_against_and_store_outputs(cli: Cli, build: Callable[..., str], chmodded: str) -> None:
    build("FROM busybox\nRUN echo hi > /small\n", "slim")
    done = cli("analyze", "app", "--against", "slim", "--json")
    doc = json.loads(done.stdout)["against"]
    assert doc["against"] == "slim" and len(doc["shared_layers"]) == 1
    assert {"path": "/big", "change": "added", "size_delta": 10 * MIB}.items() <= next(
        f for f in doc["files"] if f["path"] == "/big"
    ).items()
    shown = cli("analyze", "--store")
    assert shown.returncode == 0 and "sharing saves" in shown.stdout
    store = json.loads(cli("analyze", "--store", "--json").stdout)
    assert {i["name"] for i in store["images"]} == {"app:latest", "slim:latest", "busybox:latest"}


def test_without_any_budget_dives_default_rules_apply(
    lam: Lamina, cli: Cli, chmodded: str, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = cli("analyze", chmodded, "--ci", cwd=empty)
    assert done.returncode == 1
    assert "dive's default rules" in done.stdout
    efficiency = lam.analyze(chmodded)[0].totals.efficiency  # busybox's live bytes count too
    assert f"FAIL min-efficiency: efficiency {efficiency:.4f} (minimum 0.9)" in done.stdout
    assert "FAIL max-wasted-percent: user layers waste 50.00% (budget 10.00%)" in done.stdout
