"""Word expansion as Docker's reference defines it, with BuildKit's edge cases.

Supported: ``$V ${V} ${V:-w} ${V-w} ${V:+w} ${V+w}``, single quotes (literal),
double quotes (``$`` still expands; the escape character escapes only ``" $`` and
itself), the escape character outside quotes (next character literal, dropped at
the end of a word). ``$`` not followed by a name stays a literal ``$``.
Other modifiers (``${V:?}``, ``${V#p}``, ``${V%p}``, ``${V/a/b}``) are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

_SPECIAL_PARAMS = frozenset("@*#?-$!0")


class ExpansionError(ValueError):
    """Bad expansion syntax; the caller adds file:line."""


@dataclass(frozen=True)
class Expansion:
    """The result of expanding one word.

    ``value`` is the whole word (spaces kept); ``words`` splits it on unquoted
    whitespace after expansion (EXPOSE uses that); ``used`` and ``unset`` name the
    variables that were looked up and found / not found (a name used
    with a default, ``${V:-w}``, is never counted as not found).
    """

    value: str
    words: tuple[str, ...]
    used: frozenset[str]
    unset: frozenset[str]


class _Words:
    """Splits on whitespace that came from unquoted text or from a variable's value."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self.word: list[str] = []
        self.in_word = False

    def char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.word:
                self.done.append("".join(self.word))
                self.word = []
                self.in_word = False
        else:
            self.raw(ch)

    def text(self, s: str) -> None:
        for ch in s:
            self.char(ch)

    def raw(self, s: str) -> None:
        self.word.append(s)
        self.in_word = True

    def result(self) -> tuple[str, ...]:
        if self.word:
            self.done.append("".join(self.word))
            self.word = []
        return tuple(self.done)


class _Lexer:
    def __init__(
        self, src: str, env: Mapping[str, str], escape: str, quotes: bool, raw_escapes: bool
    ) -> None:
        self.quotes = quotes
        self.raw_escapes = raw_escapes
        self.src = src
        self.pos = 0
        self.env = env
        self.escape = escape
        self.used: set[str] = set()
        self.unset: set[str] = set()

    def peek(self) -> str:
        return self.src[self.pos] if self.pos < len(self.src) else ""

    def next(self) -> str:
        ch = self.peek()
        self.pos += 1 if ch else 0
        return ch

    def lookup(self, name: str, plain: bool = True) -> tuple[str, bool]:
        if name in self.env:
            self.used.add(name)
            return self.env[name], True
        if plain:
            self.unset.add(name)
        return "", False

    def until(self, stop: str) -> tuple[str, tuple[str, ...]]:
        """Process up to ``stop`` (consumed) or the end when ``stop`` is empty."""
        out: list[str] = []
        words = _Words()
        while self.peek():
            ch = self.peek()
            if stop and ch == stop:
                self.next()
                return "".join(out), words.result()
            if ch == "$":
                value = self.dollar()
                out.append(value)
                words.text(value)
            elif ch == "'" and self.quotes:
                value = self.single_quote()
                out.append(value)
                words.raw(value)
            elif ch == '"' and self.quotes:
                value = self.double_quote()
                out.append(value)
                words.raw(value)
            else:
                self.next()
                if ch == self.escape:
                    if self.raw_escapes:
                        out.append(ch)
                        words.raw(ch)
                    ch = self.next()
                    if not ch:
                        break
                    words.raw(ch)
                else:
                    words.char(ch)
                out.append(ch)
        if stop:
            raise ExpansionError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out), words.result()

    def single_quote(self) -> str:
        self.next()
        end = self.src.find("'", self.pos)
        if end < 0:
            raise ExpansionError(
                "unexpected end of statement while looking for matching single-quote"
            )
        value = self.src[self.pos : end]
        self.pos = end + 1
        return value

    def double_quote(self) -> str:
        self.next()
        out: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                raise ExpansionError(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if ch == '"':
                self.next()
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            self.next()
            if ch == self.escape:
                following = self.peek()
                if not following:
                    continue
                if following in ('"', "$", self.escape):
                    ch = self.next()
            out.append(ch)

    def name(self) -> str:
        start = self.pos
        ch = self.peek()
        if ch.isdigit():
            while self.peek().isdigit():
                self.next()
            return self.src[start : self.pos]
        if ch and ch in _SPECIAL_PARAMS:
            return self.next()
        while (c := self.peek()) and (c.isalnum() or c == "_"):
            self.next()
        return self.src[start : self.pos]

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            return self.lookup(name)[0] if name else "$"
        self.next()
        first = self.peek()
        if not first:
            raise ExpansionError("syntax error: missing '}'")
        if first in "{}:":
            raise ExpansionError("syntax error: bad substitution")
        name = self.name()
        op = self.next()
        if op == "}":
            return self.lookup(name)[0]
        if not op:
            raise ExpansionError("syntax error: missing '}'")
        null_is_unset = op == ":"
        if null_is_unset:
            op = self.next()
        if op not in "+-" or not op:
            shown = (":" if null_is_unset else "") + op
            raise ExpansionError(f"unsupported modifier ({shown}) in substitution ${{{name}...}}")
        try:
            word, _ = self.until("}")
        except ExpansionError:
            raise ExpansionError("syntax error: missing '}'") from None
        value, is_set = self.lookup(name, plain=False)
        empty = not is_set or (null_is_unset and value == "")
        if op == "-":
            return word if empty else value
        return "" if empty else word


def expand(
    word: str,
    env: Mapping[str, str],
    escape: str = "\\",
    *,
    quotes: bool = True,
    raw_escapes: bool = False,
) -> Expansion:
    """Expand ``word`` against ``env``; raises :class:`ExpansionError` on bad syntax.

    ``quotes=False, raw_escapes=True`` is heredoc mode: only ``$`` is special.
    """
    lexer = _Lexer(word, env, escape, quotes, raw_escapes)
    value, words = lexer.until("")
    return Expansion(value, words, frozenset(lexer.used), frozenset(lexer.unset))
