"""Build progress as BuildKit's plain output prints it; `auto` is plain without a terminal."""

from __future__ import annotations

import pytest

from lamina.builder import BuildEvent
from lamina.cli._build_cmd import _Progress

EVENTS = [
    BuildEvent("step", 2, "[stage-0 2/2] RUN make"),
    BuildEvent("miss", 2, "file changed: a.c (modified)"),
    BuildEvent("output", 2, "line one\nline t", 0.25),
    BuildEvent("output", 2, "wo\r\nno newline at the end", 1.5),
    BuildEvent("done", 2, "DONE", 1.75),
]


def shown(capsys: pytest.CaptureFixture[str], progress: _Progress) -> list[str]:
    for event in EVENTS:
        progress(event)
    return capsys.readouterr().out.splitlines()


def test_plain_shows_output_lines_with_elapsed_seconds_and_misses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert shown(capsys, _Progress("plain", explain=False, is_tty=True)) == [
        "#2 [stage-0 2/2] RUN make",
        "#2 cache miss: file changed: a.c (modified)",
        "#2 0.250 line one",
        "#2 1.500 line two",
        "#2 1.500 no newline at the end",
        "#2 DONE 1.8s",
    ]


def test_auto_without_a_terminal_falls_back_to_plain_output(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = shown(capsys, _Progress("auto", explain=False, is_tty=False))
    assert "#2 0.250 line one" in lines and "#2 1.500 no newline at the end" in lines
    assert not any("cache miss" in line for line in lines)  # only --explain asks for those


def test_auto_on_a_terminal_shows_steps_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert shown(capsys, _Progress("auto", explain=True, is_tty=True)) == [
        "#2 [stage-0 2/2] RUN make",
        "#2 cache miss: file changed: a.c (modified)",
        "#2 DONE 1.8s",
    ]
