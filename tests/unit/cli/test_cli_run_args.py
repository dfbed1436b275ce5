"""`lamina run`'s lean parser (no click on the run path) agrees with the click command it
stands in for, and leaves every line it does not plainly understand to click."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from lamina.cli._container_cmds import run
from lamina.cli._launch import parse_global, parse_run_args


def _click_params(args: list[str]) -> dict[str, object]:
    ctx = run.make_context("run", list(args))
    return dict(ctx.params)


AGREE = [
    ["img"],
    ["--rm", "img", "true"],
    ["--rm", "-d", "img"],
    ["-it", "img", "sh"],
    ["-dit", "--name", "web", "img", "sh", "-c", "echo hi"],
    ["-e", "A=1", "-eB=2", "--env", "C", "--env=D=4", "img"],
    ["--env-file", "a.env", "--env-file=b.env", "img"],
    ["-w", "/src", "-u", "app:staff", "--entrypoint", "", "img"],
    ["--network", "none", "--network=host", "img"],
    ["-v", "/a:/b", "-v/c:/d:ro", "--volume", "/e:/f", "img"],
    ["--read-only", "-h", "box", "--init", "img"],
    ["--stop-signal", "SIGINT", "--stop-timeout", "3", "img"],
    ["--stop-timeout=-1", "img"],
    ["--security-opt", "no-new-privileges", "img"],
    ["-ie", "X=1", "img"],
    ["-iwdir", "img"],
    ["--", "img", "--rm"],
    ["img", "--rm", "-d", "--", "x"],
    ["--name", "-d", "img"],
    ["-", "x"],
]


@pytest.mark.parametrize("args", AGREE, ids=[" ".join(a) or "-" for a in AGREE])
def test_the_lean_parser_gives_what_click_gives(args: list[str]) -> None:
    assert parse_run_args(args) == _click_params(args)


DEFER = [
    [],  # no image
    ["--rm"],  # no image
    ["--help", "img"],
    ["--bogus", "img"],
    ["-x", "img"],
    ["--rm=yes", "img"],
    ["--network", "bridge0", "img"],
    ["--stop-timeout", "soon", "img"],
    ["--name"],
    ["-e"],
    ["--env-file", "", "img"],  # click's Path type decides what that means
]


@pytest.mark.parametrize("args", DEFER, ids=[" ".join(a) or "-" for a in DEFER])
def test_what_the_lean_parser_cannot_judge_goes_to_click(args: list[str]) -> None:
    assert parse_run_args(args) is None
    if args not in (["--help", "img"], ["--env-file", "", "img"]):
        with pytest.raises(click.UsageError):
            _click_params(args)


def test_global_options_before_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LAMINA_ROOT", raising=False)
    assert parse_global(["run", "img"]) == (None, False, ["img"])
    assert parse_global(["--root", "/r", "--debug", "run", "-d", "img"]) == (
        "/r", True, ["-d", "img"])  # fmt: skip
    assert parse_global(["--root=/r", "run", "img"]) == ("/r", False, ["img"])
    monkeypatch.setenv("LAMINA_ROOT", "/env")
    assert parse_global(["run", "img"]) == ("/env", False, ["img"])
    assert parse_global(["--root", "/r", "run", "img"]) == ("/r", False, ["img"])
    # Anything else is click's: other commands, other global options, odd roots.
    assert parse_global(["ps", "-a"]) is None
    assert parse_global(["--version"]) is None
    assert parse_global(["-h", "run", "img"]) is None
    assert parse_global(["--root"]) is None
    a_file = tmp_path / "f"
    a_file.write_text("")
    assert parse_global(["--root", str(a_file), "run", "img"]) is None
    monkeypatch.setenv("LAMINA_ROOT", "")
    assert parse_global(["run", "img"]) is None
