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


def _compile(pattern: str) -> re.Pattern[str]:
    out = ["^"]
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
                else:
                    out.append("(.*/)?")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            i += 1
            if i >= n:
                raise ValueError(f"syntax error in pattern {pattern!r}: trailing escape")
            out.append(re.escape(pattern[i]))
        elif ch == "[":
            i = _char_class(pattern, i + 1, out)
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return re.compile("".join(out), re.DOTALL)


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
    regex: re.Pattern[str]


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
        return tuple(p.regex.match(path) is not None for p in self.patterns)

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
            in_parent or p.regex.match(path) is not None
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
