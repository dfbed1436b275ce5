"""``.dockerignore`` rules with Docker's pattern semantics (moby/patternmatcher).

A pattern is Go's ``filepath.Match`` syntax (``*``, ``?``, ``[...]``, ``\\``
escapes) plus ``**`` for any number of directories. Lines starting with ``#``
are comments; ``!`` makes an exception; the last matching pattern wins; a
pattern that matches a directory matches everything under it. Patterns are
trimmed, cleaned (``./a/../b`` → ``b``) and lose a leading ``/``.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lamina.errors import InvalidInputError
from lamina.oci import MAX_IGNORE_BYTES

# Pattern pieces: a literal character, `?`, a class, `*` (within a name), a trailing `**`
# (anything), `**/` (any number of whole directories).
_LIT, _ONE, _CLASS, _STAR, _ANY, _DIRS = range(6)
_REPEATS = (_STAR, _ANY, _DIRS)


class Glob:
    """A compiled pattern, matched against a whole path in time bounded by pattern length
    times path length: the set of pattern positions reached is advanced one character at a
    time (as Go's RE2, which moby's patternmatcher uses, does). Python's backtracking
    `re` takes exponential time on `*a*a*a*a*b` against a long name of a's, so it is used
    only for patterns with at most two repeats, where it cannot."""

    __slots__ = ("_pieces", "_regex", "linear", "source")

    def __init__(self, pieces: list[tuple[int, str]], regex: str) -> None:
        self._pieces = pieces
        self.source = regex  # the same pattern as a regular expression
        self.linear = sum(kind in _REPEATS for kind, _ in pieces) > 2
        self._regex = None if self.linear else re.compile(regex, re.DOTALL)
        for kind, arg in pieces:
            if kind == _CLASS:
                re.compile(arg)  # a bad class fails here, as it would in the regex

    def match(self, text: str) -> bool:
        if self._regex is not None:
            return self._regex.fullmatch(text) is not None
        return self.match_linear(text)

    def match_linear(self, text: str) -> bool:
        """``match`` by advancing the set of positions (what it does past two repeats)."""
        pieces, end = self._pieces, len(self._pieces)
        states = self._closure(range(1))
        for ch in text:
            reached: set[int] = set()
            for st in states:
                if st < 0:  # inside the `**/` at -st - 1: any character, a `/` may end it
                    reached.add(st)
                    if ch == "/":
                        reached.add(-st)
                    continue
                if st == end:
                    continue
                kind, arg = pieces[st]
                if kind == _LIT:
                    if ch == arg:
                        reached.add(st + 1)
                elif kind == _ONE:
                    if ch != "/":
                        reached.add(st + 1)
                elif kind == _CLASS:
                    if re.fullmatch(arg, ch, re.DOTALL):
                        reached.add(st + 1)
                elif kind == _STAR:
                    if ch != "/":
                        reached.add(st)
                elif kind == _ANY:
                    reached.add(st)
                else:  # _DIRS
                    reached.add(-st - 1)
                    if ch == "/":
                        reached.add(st + 1)
            if not reached:
                return False
            states = self._closure(reached)
        return end in states

    def _closure(self, states: Iterable[int]) -> set[int]:
        """``states`` and every position a repeat lets a match skip to (it may be empty)."""
        out: set[int] = set()
        todo = list(states)
        while todo:
            st = todo.pop()
            if st in out:
                continue
            out.add(st)
            if 0 <= st < len(self._pieces) and self._pieces[st][0] in _REPEATS:
                todo.append(st + 1)
        return out


def _compile(pattern: str) -> Glob:
    pieces: list[tuple[int, str]] = []
    out = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1
                if i >= n:
                    out.append(".*")
                    pieces.append((_ANY, ""))
                else:
                    out.append("(.*/)?")
                    pieces.append((_DIRS, ""))
                continue
            out.append("[^/]*")
            pieces.append((_STAR, ""))
        elif ch == "?":
            out.append("[^/]")
            pieces.append((_ONE, ""))
        elif ch == "\\":
            i += 1
            if i >= n:
                raise ValueError(f"syntax error in pattern {pattern!r}: trailing escape")
            out.append(re.escape(pattern[i]))
            pieces.append((_LIT, pattern[i]))
        elif ch == "[":
            before = len(out)
            i = _char_class(pattern, i + 1, out)
            pieces.append((_CLASS, out[before]))
        else:
            out.append(re.escape(ch))
            pieces.append((_LIT, ch))
        i += 1
    return Glob(pieces, "".join(out))


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    """One character of a [...] class (Go's getEsc): '-' and ']' must be escaped."""
    if i >= len(pattern) or pattern[i] in "-]":
        raise ValueError(f"syntax error in pattern {pattern!r}: bad character class")
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            raise ValueError(f"syntax error in pattern {pattern!r}: unclosed [")
    return pattern[i], i + 1


def _char_class(pattern: str, i: int, out: list[str]) -> int:
    """Compile the class opened before `i` into `out`; return the index of its ']'
    (Go's filepath.Match rules: `[^...]`, ranges `a-z`, escapes, no empty class)."""
    negate = pattern[i : i + 1] == "^"
    i += 1 if negate else 0
    parts: list[str] = []
    while not parts or pattern[i : i + 1] != "]":
        if i >= len(pattern):
            raise ValueError(f"syntax error in pattern {pattern!r}: unclosed [")
        lo, i = _class_char(pattern, i)
        if pattern[i : i + 1] == "-":
            hi, i = _class_char(pattern, i + 1)
            parts.append(f"{re.escape(lo)}-{re.escape(hi)}")
        else:
            parts.append(re.escape(lo))
    out.append(f"[{'^' if negate else ''}{''.join(parts)}]")
    return i


@dataclass(frozen=True)
class IgnorePattern:
    """One cleaned pattern; ``exclusion`` is True for a ``!`` line."""

    pattern: str
    exclusion: bool
    regex: Glob


def clean_pattern(raw: str) -> tuple[str, bool] | None:
    """The cleaned pattern and whether it is an exception, or None for blanks and comments
    (a line whose first character is ``#``: patternmatcher tests that before trimming,
    so an indented ``#`` starts a pattern)."""
    text = raw.strip()
    if not text or raw.startswith("#"):
        return None
    exclusion = text.startswith("!")
    if exclusion:
        text = text[1:].strip()
        if not text:
            raise ValueError('illegal exclusion pattern: "!"')
    if not text:
        return None
    text = posixpath.normpath(text)
    if len(text) > 1 and text.startswith("/"):
        text = text.lstrip("/") or "/"
    return text, exclusion


class IgnoreRules:
    """A list of patterns; :meth:`ignored` answers for one context-relative path.

    Read-only once built. ``has_exceptions`` tells a walker whether it may skip a
    whole ignored directory (it may when no ``!`` pattern exists).
    """

    def __init__(self, lines: Iterable[str] = (), source: str = ".dockerignore") -> None:
        patterns: list[IgnorePattern] = []
        for number, raw in enumerate(lines, 1):
            try:
                cleaned = clean_pattern(raw)
                if cleaned is None:
                    continue
                patterns.append(IgnorePattern(cleaned[0], cleaned[1], _compile(cleaned[0])))
            except (ValueError, re.error) as exc:
                raise InvalidInputError(
                    f"{source}:{number}: bad pattern {raw.strip()!r}: {exc}"
                ) from None
        self.patterns = tuple(patterns)
        self.source = source
        self.has_exceptions = any(p.exclusion for p in patterns)

    def __repr__(self) -> str:
        return f"IgnoreRules({[('!' if p.exclusion else '') + p.pattern for p in self.patterns]})"

    def matched(self, path: str) -> tuple[bool, ...]:
        """Per pattern: does it match ``path`` itself (not its parents)?"""
        return tuple(p.regex.match(path) for p in self.patterns)

    def ignored(self, path: str, parents: tuple[bool, ...] | None = None) -> bool:
        """Is ``path`` (relative, ``/``-separated, cleaned) left out of the context?

        ``parents`` may give, per pattern, whether it matched a parent directory
        (what :meth:`inherit` returns), which saves re-matching every parent.
        """
        if not self.patterns:
            return False
        if parents is None:
            parents = self._parents(path)
        result = False
        for pattern, in_parent in zip(self.patterns, parents, strict=True):
            if in_parent or pattern.regex.match(path):
                result = not pattern.exclusion
        return result

    def inherit(self, path: str, parents: tuple[bool, ...] | None = None) -> tuple[bool, ...]:
        """Per-pattern parent matches for the children of directory ``path``."""
        if parents is None:
            parents = self._parents(path)
        return tuple(
            in_parent or p.regex.match(path)
            for p, in_parent in zip(self.patterns, parents, strict=True)
        )

    def _parents(self, path: str) -> tuple[bool, ...]:
        acc = tuple(False for _ in self.patterns)
        parts = path.split("/")[:-1]
        for i in range(len(parts)):
            acc = self.inherit("/".join(parts[: i + 1]), acc)
        return acc


def load_dockerignore(
    context_dir: str | os.PathLike[str], dockerfile_path: str | os.PathLike[str] | None = None
) -> IgnoreRules:
    """Read the ignore rules for a build.

    ``<Dockerfile>.dockerignore`` beside the Dockerfile wins over
    ``<context>/.dockerignore``; no file means no rules. The rules never stop
    the builder from reading the Dockerfile or the ignore file themselves.
    """
    candidates: list[Path] = []
    if dockerfile_path is not None:
        df = Path(dockerfile_path)
        if not df.is_absolute():
            df = Path(context_dir) / df
        candidates.append(df.with_name(df.name + ".dockerignore"))
    candidates.append(Path(context_dir) / ".dockerignore")
    for path in candidates:
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_IGNORE_BYTES + 1)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise InvalidInputError(f"{path}: can't read: {exc.strerror}") from None
        if len(data) > MAX_IGNORE_BYTES:
            raise InvalidInputError(f"{path}: larger than {MAX_IGNORE_BYTES} bytes")
        text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
        return IgnoreRules(text.splitlines(), str(path))
    return IgnoreRules()
