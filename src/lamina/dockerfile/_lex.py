"""Word expansion as Docker's reference defines it, with BuildKit's edge cases.

Supported: ``$V ${V} ${V:-w} ${V-w} ${V:+w} ${V+w} ${V:?m} ${V?m}``, the
pattern forms ``${V#p} ${V##p} ${V%p} ${V%%p}`` (shortest / longest prefix or suffix
removed) and ``${V/p/r} ${V//p/r}`` (first / every match replaced), where a pattern
knows ``*``, ``?`` and escapes but no brackets (BuildKit's shell lexer and its
``TestProcessWithMatches`` cases are the reference). Single quotes (literal),
double quotes (``$`` still expands; the escape character escapes only ``" $`` and
itself), the escape character outside quotes (next character literal, dropped at
the end of a word). ``$`` not followed by a name stays a literal ``$``. Other modifiers (``${V=w}``,
``${V:#p}``) are refused, as BuildKit refuses them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

_SPECIAL_PARAMS = frozenset("@*#?-$!0")
# `${A:-${B:-...}}` nested deeper than this is refused (each level is a Python frame;
# BuildKit's Go stack has no such bound, but no real Dockerfile comes near it).
MAX_NESTING = 64
# What variables may add to one word: far past any real use (the parser refuses a line
# over 64 KiB), and short of `ENV B=$A$A$A...` repeated into gigabytes.
MAX_EXPANDED = 1 << 20


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
        self.depth = 0
        self.expanded = 0

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

    def until(self, stop: str, raw_escapes: bool | None = None) -> tuple[str, tuple[str, ...]]:
        """Process up to ``stop`` (consumed) or the end when ``stop`` is empty.

        ``raw_escapes`` keeps the escape character in the result (patterns need it)."""
        raw = self.raw_escapes if raw_escapes is None else raw_escapes
        out: list[str] = []
        words = _Words()
        while self.peek():
            ch = self.peek()
            if stop and ch == stop:
                self.next()
                return "".join(out), words.result()
            if ch == "$":
                value = self.grown(self.dollar())
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
                    if raw:
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
                out.append(self.grown(self.dollar()))
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

    def grown(self, value: str) -> str:
        """``value``, counted against ``MAX_EXPANDED``."""
        self.expanded += len(value)
        if self.expanded > MAX_EXPANDED:
            raise ExpansionError(f"the expansion is longer than {MAX_EXPANDED} bytes")
        return value

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            return self.lookup(name)[0] if name else "$"
        self.next()
        if self.depth >= MAX_NESTING:
            raise ExpansionError(f"substitutions nested more than {MAX_NESTING} deep")
        self.depth += 1
        try:
            return self.braced()
        finally:
            self.depth -= 1

    def braced(self) -> str:
        """What follows ``${``, up to its closing ``}``."""
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
        if op == "/":
            return self.replace(name)
        null_is_unset = op == ":"
        if null_is_unset:
            op = self.next()
        shown = (":" if null_is_unset else "") + op
        if not op or op not in "+-?#%" or (null_is_unset and op in "#%"):
            raise ExpansionError(f"unsupported modifier ({shown}) in substitution ${{{name}...}}")
        try:
            word, _ = self.until("}", raw_escapes=op in "#%")
        except ExpansionError:
            if not self.peek():
                raise ExpansionError("syntax error: missing '}'") from None
            raise
        value, is_set = self.lookup(name, plain=op in "?#%")
        empty = not is_set or (null_is_unset and value == "")
        if op == "-":
            return word if empty else value
        if op == "+":
            return "" if empty else word
        if op == "?":
            if not is_set:
                raise ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
            if empty:
                raise ExpansionError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        greedy = word.startswith(op)
        pattern = word[1:] if greedy else word
        if op == "#":
            return _trim_prefix(pattern, value, greedy)
        return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]

    def replace(self, name: str) -> str:
        """``${V/pattern/replacement}`` (first match) and ``${V//pattern/replacement}`` (all)."""
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()
        try:
            pattern, _ = self.until("/", raw_escapes=True)
        except ExpansionError:
            if not self.peek():
                raise ExpansionError("syntax error: missing '/' in ${}") from None
            raise
        try:
            replacement, _ = self.until("}", raw_escapes=True)
        except ExpansionError:
            if not self.peek():
                raise ExpansionError("syntax error: missing '}'") from None
            raise
        value, _ = self.lookup(name)
        return _ShellPattern(pattern).replace(value, replacement, replace_all)


_LIT, _ONE, _STAR = range(3)


class _ShellPattern:
    """A shell pattern (``*``, ``?``, ``\\`` escapes; no brackets), as BuildKit reads it:
    ``\\}`` and ``\\/`` are the escaped delimiters themselves. It is matched by advancing
    the set of pattern positions reached one character at a time (as Go's RE2 does for
    BuildKit), in time bounded by pattern length times value length: Python's
    backtracking ``re`` took hours on ``${A%%*a*a*a*a*a*a*a*a*b}`` over a line of a's."""

    def __init__(self, pattern: str) -> None:
        self.pieces: list[tuple[int, str]] = []
        i = 0
        while i < len(pattern):
            ch = pattern[i]
            i += 1
            if ch == "*":
                self.pieces.append((_STAR, ""))
            elif ch == "?":
                self.pieces.append((_ONE, ""))
            elif ch == "\\":
                following = pattern[i] if i < len(pattern) else ""
                if following in ("}", "/"):
                    continue
                if following not in ("*", "?", "\\"):
                    raise ExpansionError(f"invalid pattern ({pattern}) in substitution: "
                                         f"invalid escape '\\{following}'")  # fmt: skip
                self.pieces.append((_LIT, following))
                i += 1
            else:
                self.pieces.append((_LIT, ch))

    def _closure(self, states: dict[int, int]) -> dict[int, int]:
        """Each state (pattern position → where its match started, the leftmost kept) and
        the positions a ``*`` lets it skip to."""
        out: dict[int, int] = {}
        for state, start in sorted(states.items()):
            while True:
                if out.get(state, start + 1) <= start:
                    break
                out[state] = start
                if state < len(self.pieces) and self.pieces[state][0] == _STAR:
                    state += 1
                else:
                    break
        return out

    def _step(self, states: dict[int, int], ch: str) -> dict[int, int]:
        reached: dict[int, int] = {}
        for state, start in states.items():
            if state == len(self.pieces):
                continue
            kind, literal = self.pieces[state]
            target = state if kind == _STAR else state + 1
            if kind != _LIT or ch == literal:
                reached[target] = min(start, reached.get(target, start))
        return self._closure(reached)

    def prefix_ends(self, value: str) -> list[int]:
        """Every k for which ``value[:k]`` is matched by the whole pattern."""
        end = len(self.pieces)
        states = self._closure({0: 0})
        ends = [0] if end in states else []
        for n, ch in enumerate(value, 1):
            states = self._step(states, ch)
            if not states:
                break
            if end in states:
                ends.append(n)
        return ends

    def search(self, value: str, pos: int) -> tuple[int, int] | None:
        """The leftmost match at or after ``pos``, the longest from there (what a greedy
        regex finds for a pattern of ``*``, ``?`` and literals)."""
        end = len(self.pieces)
        best: tuple[int, int] | None = None
        states: dict[int, int] = {}
        for n in range(pos, len(value) + 1):
            if best is None:
                states = self._closure({**states, 0: min(n, states.get(0, n))})
            if end in states and (best is None or states[end] <= best[0]):
                best = (states[end], n)
            if best is not None:
                states = {k: v for k, v in states.items() if v <= best[0]}
            if not states or n == len(value):
                break
            states = self._step(states, value[n])
        return best

    def replace(self, value: str, replacement: str, every: bool) -> str:
        out: list[str] = []
        pos = 0
        while pos <= len(value):
            found = self.search(value, pos)
            if found is None:
                break
            start, stop = found
            out += [value[pos:start], replacement]
            if stop == start:  # an empty match: the next one starts a character later
                out.append(value[start : start + 1])
                stop += 1
            pos = stop
            if not every:
                break
        out.append(value[pos:])
        return "".join(out)


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    ends = _ShellPattern(pattern).prefix_ends(value)
    if not ends:
        return value
    return value[max(ends) if greedy else min(ends) :]


def _reverse_pattern(pattern: str) -> str:
    """``a\\*c`` → ``c\\*a``: reversed, each escape kept in front of what it escapes."""
    tokens: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            tokens.append(pattern[i : i + 2])
            i += 2
        else:
            tokens.append(pattern[i])
            i += 1
    return "".join(reversed(tokens))


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
