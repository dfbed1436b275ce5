"""Long runs of continuation lines, put on fewer physical lines before BuildKit parses them.

BuildKit's parser builds an instruction's logical line by appending each continuation line
to a Go string, which copies everything so far every time: time quadratic in the number
of lines (50,000 lines of a RUN: ~3 s; 200,000: ~60 s; a 16 MiB Dockerfile of them: hours).
The logical line is the concatenation of each continuation line with its continuation
mark (the escape character, then blanks) removed. Consecutive continuation lines that
are neither comments nor blank may therefore stand on one physical line: the first ones
with their marks removed, the last with its mark kept, so that the instruction goes on
exactly as before. BuildKit then sees the same logical lines from fewer, longer physical
lines (at most `_LINE_BYTES`: its scanner refuses a line over 64 KiB).

Only runs of at least `_MIN_RUN` such lines are folded (ordinary Dockerfiles pass through
untouched), and folding stops for the rest of the text at the first line that could make
BuildKit read lines otherwise (a heredoc's `<<`: its body is raw lines) or whose leading
characters Go and Python might classify differently (non-ASCII or control characters).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

_LINE_BYTES = 60_000
# Line breaks to Python's str.splitlines but not to Go's scanner (which takes "\n", and
# drops a CR before it): a text with one is not folded.
_BREAKS = re.compile("[\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
_MIN_RUN = 64


@dataclass(frozen=True)
class Folded:
    """The text to parse, and for each of its lines (0-based) the first and last line of
    the original text (1-based) it stands for."""

    text: str
    first: list[int]
    last: list[int]
    _lines: list[str]  # the original lines, without their newlines
    _mark: re.Pattern[str]

    def prefix(self, count: int) -> str:
        """The original text's first `count` lines, folded as the whole text is (a line
        inside a folded one ends it there): what BuildKit makes of them is the same."""
        folded = self.text.split("\n")
        k = bisect_right(self.first, count) - 1
        if k < 0:
            return ""
        part = [line.removesuffix("\r") for line in self._lines[self.first[k] - 1 : count]]
        head = "".join(self._mark.sub("", line) for line in part[:-1]) + part[-1]
        return "".join(line + "\n" for line in folded[:k]) + head + "\n"

    def restore_lines(self, command: Any) -> Any:
        """A command BuildKit parsed from the folded text, with the original text's
        start and end lines (1-based)."""
        start, end = self.first[command.start_line - 1], self.last[command.end_line - 1]
        return command._replace(start_line=start, end_line=end)


def _kind(line: str) -> str:
    """'blank', 'comment', 'content', or 'odd' (a first character that is not printable
    ASCII after spaces and tabs: Go's unicode.IsSpace and Python's disagree on some)."""
    rest = line.lstrip(" \t")
    if not rest:
        return "blank"
    head = rest[0]
    if head == "#":
        return "comment"
    return "content" if "!" <= head <= "~" else "odd"


def fold_continuations(text: str, escape: str) -> Folded | None:
    """`text` with its long runs of continuation lines folded (see the module doc); None
    when there is no run to fold."""
    if text.count("\n") < _MIN_RUN or _BREAKS.search(text.replace("\r\n", "")):
        return None  # (a line break Python sees and Go does not: numbering would differ)
    mark = re.compile(re.escape(escape) + r"[ \t]*$")
    lines = text.split("\n")
    ends_with_newline = lines[-1] == ""
    if ends_with_newline:
        lines.pop()
    out: list[str] = []
    first: list[int] = []
    last: list[int] = []
    run: list[tuple[int, str]] = []  # (1-based line number, line without its trailing CR)

    def flush() -> None:
        pieces: list[list[tuple[int, str]]] = [[]] if len(run) >= _MIN_RUN else []
        size = 0
        for number, line in run if pieces else ():
            width = len(line) if line.isascii() else len(line.encode())
            if pieces[-1] and size + width > _LINE_BYTES:
                pieces.append([])
                size = 0
            pieces[-1].append((number, line))
            size += width
        for piece in pieces or [[entry] for entry in run]:
            # Every mark but the last removed: the instruction goes on after the piece.
            out.append("".join(mark.sub("", line) for _, line in piece[:-1]) + piece[-1][1])
            first.append(piece[0][0])
            last.append(piece[-1][0])
        run.clear()

    def keep(number: int, raw: str) -> None:
        flush()
        out.append(raw)
        first.append(number)
        last.append(number)

    folded = False
    continuing = False  # inside an instruction whose last content line ended with the mark
    stopped = False
    for number, raw in enumerate(lines, 1):
        line = raw[:-1] if raw.endswith("\r") else raw  # Go's line scanner drops one CR
        kind = _kind(line)
        stopped = stopped or kind == "odd" or "<<" in line
        if stopped:
            keep(number, raw)
        elif not continuing:  # a comment, a blank line, or an instruction's first line
            keep(number, raw)
            continuing = kind == "content" and bool(mark.search(line))
        elif kind != "content":  # comments and blank lines BuildKit skips in an instruction
            keep(number, raw)
        elif mark.search(line):
            run.append((number, line))
            folded = folded or len(run) >= _MIN_RUN
        else:  # the instruction's last line
            keep(number, raw)
            continuing = False
    flush()
    if not folded:
        return None
    text = "\n".join(out) + ("\n" if ends_with_newline else "")
    return Folded(text, first, last, lines, mark)
