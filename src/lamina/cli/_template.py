"""Docker's `--format`: a small evaluator of the Go text/template subset scripts use.

    render("{{.Repository}}:{{.Tag}}", {"Repository": "busybox", "Tag": "latest"})
        -> "busybox:latest"
    format_rows("table {{.ID}}\\t{{.Size}}", rows, headers={"ID": "IMAGE ID", ...})
        -> the text `docker images --format ...` prints (a header line in table mode)

`render(template, value)` is the public entry point for any command: `value` is
JSON-like data (dicts with Docker's field names, lists, str, int, float, bool,
None). `format_rows` adds Docker's list conventions on top: the `table` prefix
(a header row made by running the template over `headers`, columns aligned as
Go's tabwriter does with min width 10 and padding 3), `json` meaning
`{{json .}}`, and the two-character escapes `\\t` and `\\n` in the format.

The grammar (Go's text/template, as docker/cli's `templates` package extends it):

    text {{pipeline}} text            actions; `{{-` and `-}}` trim the whitespace beside them
    .  .Field  .A.B  $  $x  $x.F      the value, fields of dicts, variables
    "str"  `raw`  42  1.5  true       literals
    f arg... | g arg...               a pipeline: the left result is g's last argument
    (pipeline).Field                  a parenthesized pipeline, fields of its result
    {{if P}}…{{else if Q}}…{{else}}…{{end}}  {{with P}}…{{else}}…{{end}}
    {{range P}}…{{else}}…{{end}}      {{range $i, $e := P}}…{{end}}; dot is the element
    {{$x := P}}  {{/* comment */}}

Functions: json, join, split, lower, upper, title, pad, truncate (docker/cli's),
index, len, not, and, or, eq, ne, lt, le, gt, ge, print, println (Go's built-ins).

Every error is a TemplateError ("template parsing error: …", as Docker words it)
naming the place: an unknown field names the field and the fields there are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lamina.errors import InvalidInputError


class TemplateError(InvalidInputError):
    """A `--format` template that cannot be parsed or run on the value given."""

    def __init__(self, detail: str, hint: str | None = None) -> None:
        super().__init__(f"template parsing error: {detail}", hint)


# -- the value model: Go's view of JSON-like data ---------------------------------------


def go_string(value: Any) -> str:
    """How Go's fmt prints a value in a template action (`%v`)."""
    if value is None:
        return "<no value>"
    return _go_v(value)


def _go_v(value: Any) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{_go_v(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(_go_v(v) for v in value) + "]"
    return str(value)


def truth(value: Any) -> bool:
    """Go's template truth: false, 0, nil and empty strings, lists and maps are false."""
    if value is None:
        return False
    if isinstance(value, bool | int | float | str | list | tuple | Mapping):
        return bool(value)
    return True


def _type_name(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, Mapping):
        return "map"
    if isinstance(value, list | tuple):
        return "list"
    return {bool: "bool", int: "int", float: "float64", str: "string"}.get(type(value), "value")


# -- functions ----------------------------------------------------------------------------


def _to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _join(items: Any, sep: Any) -> str:
    if not isinstance(items, list | tuple):
        raise TemplateError(f"want a list, got {_type_name(items)}")
    return str(sep).join(_go_v(i) for i in items)


def _split(text: Any, sep: Any) -> list[str]:
    text, sep = str(text), str(sep)
    return list(text) if sep == "" else text.split(sep)


def _title(text: Any) -> str:
    return re.sub(r"(^|[^\w'])(\w)", lambda m: m.group(1) + m.group(2).upper(), str(text))


def _pad(text: Any, prefix: Any, suffix: Any) -> str:
    source = str(text)
    return source if source == "" else " " * int(prefix) + source + " " * int(suffix)


def _truncate(text: Any, length: Any) -> str:
    source = str(text)
    return source if len(source) < int(length) else source[: int(length)]


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, Mapping):
            item = item.get(key if isinstance(key, str) else _go_v(key))
        elif isinstance(item, list | tuple | str):
            if not isinstance(key, int) or isinstance(key, bool):
                raise TemplateError(f"cannot index {_type_name(item)} with {key!r}")
            if not 0 <= key < len(item):
                raise TemplateError(f"index out of range: {key}")
            item = item[key]
        else:
            raise TemplateError(f"cannot index {_type_name(item)}")
    return item


def _len(item: Any) -> int:
    if isinstance(item, str | list | tuple | Mapping):
        return len(item)
    raise TemplateError(f"cannot take the length of {_type_name(item)}")


def _compare(op: Callable[[Any, Any], bool]) -> Callable[..., bool]:
    def compare(a: Any, *others: Any) -> bool:
        if not others:
            raise TemplateError("comparison needs two arguments")
        try:
            return any(op(a, b) for b in others) if op is _eq else op(a, others[0])
        except TypeError:
            raise TemplateError(
                f"incompatible types for comparison: {a!r}, {others[0]!r}"
            ) from None

    return compare


def _and(first: Any, *rest: Any) -> Any:
    """Go's `and`: the first false argument, else the last."""
    for value in (first, *rest):
        if not truth(value):
            return value
    return value


def _or(first: Any, *rest: Any) -> Any:
    """Go's `or`: the first true argument, else the last."""
    for value in (first, *rest):
        if truth(value):
            return value
    return value


def _eq(a: Any, b: Any) -> bool:
    return bool(a == b)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "json": _to_json,
    "join": _join,
    "split": _split,
    "lower": lambda s: str(s).lower(),
    "upper": lambda s: str(s).upper(),
    "title": _title,
    "pad": _pad,
    "truncate": _truncate,
    "index": _index,
    "len": _len,
    "not": lambda v: not truth(v),
    "and": _and,
    "or": _or,
    "eq": _compare(_eq),
    "ne": _compare(lambda a, b: a != b),
    "lt": _compare(lambda a, b: a < b),
    "le": _compare(lambda a, b: a <= b),
    "gt": _compare(lambda a, b: a > b),
    "ge": _compare(lambda a, b: a >= b),
    "print": lambda *a: "".join(_go_v(x) for x in a),
    "println": lambda *a: " ".join(_go_v(x) for x in a) + "\n",
}

# A table's header row runs the same template over the header names: these keep a
# name intact where the row function would transform it (docker/cli does the same).
HEADER_FUNCTIONS: dict[str, Callable[..., Any]] = {
    **FUNCTIONS,
    "json": lambda v: v,
    "join": lambda v, _sep: v,
    "split": lambda v, _sep: v,
    "lower": lambda v: v,
    "upper": lambda v: v,
    "title": lambda v: v,
    "truncate": lambda v, _n: v,
}

# -- lexer ----------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<declare>:=)
  | (?P<assign>=)
  | (?P<pipe>\|)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<number>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.]))
  | (?P<variable>\$\w*)
  | (?P<field>(?:\.\w+)+|\.)
  | (?P<ident>[A-Za-z_]\w*)
    """,
    re.VERBOSE,
)
_FIELD_TAIL = re.compile(r"(?:\.\w+)+")
_KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break",
             "continue", "nil", "true", "false"}  # fmt: skip
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0"}


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    col: int


def _unquote(text: str, where: str) -> str:
    out = []
    i = 1
    while i < len(text) - 1:
        c = text[i]
        if c == "\\":
            nxt = text[i + 1]
            if nxt not in _ESCAPES:
                raise TemplateError(f"{where}: unknown escape sequence \\{nxt}")
            out.append(_ESCAPES[nxt])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


# -- syntax tree ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    base: Any  # "." (dot), a variable name "$x", or a _Pipeline
    names: tuple[str, ...]
    where: str


@dataclass(frozen=True)
class _Literal:
    value: Any


@dataclass(frozen=True)
class _Func:
    name: str
    where: str


@dataclass(frozen=True)
class _Command:
    args: tuple[Any, ...]
    where: str


@dataclass(frozen=True)
class _Pipeline:
    commands: tuple[_Command, ...]
    declare: tuple[str, ...] = ()
    assign: bool = False


@dataclass
class _Block:
    kind: str  # "if", "with", "range"
    pipe: _Pipeline
    body: list[Any] = field(default_factory=list)
    orelse: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class _Action:
    pipe: _Pipeline


# -- parser ---------------------------------------------------------------------------------


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def where(self, offset: int) -> str:
        line = self.source.count("\n", 0, offset) + 1
        col = offset - (self.source.rfind("\n", 0, offset) + 1)
        return f"template: :{line}:{col}"

    def actions(self) -> list[tuple[str, Any, int]]:
        """The source as ("text", str, offset) and ("action", str, offset) pieces."""
        src = self.source
        pieces: list[tuple[str, Any, int]] = []
        pos = 0
        while True:
            start = src.find("{{", pos)
            if start < 0:
                pieces.append(("text", src[pos:], pos))
                return pieces
            text = src[pos:start]
            inner_start = start + 2
            if (
                src.startswith("- ", inner_start)
                or src.startswith("-\t", inner_start)
                or (src.startswith("-\n", inner_start))
            ):
                text = text.rstrip(" \t\r\n")
                inner_start += 1
            end = self._action_end(inner_start, start)
            inner_end = end
            trim_after = False
            if src[end - 1] == "-" and end - 2 >= inner_start and src[end - 2] in " \t\r\n":
                inner_end = end - 1
                trim_after = True
            pieces.append(("text", text, pos))
            pieces.append(("action", src[inner_start:inner_end], inner_start))
            pos = end + 2
            if trim_after:
                while pos < len(src) and src[pos] in " \t\r\n":
                    pos += 1

    def _action_end(self, i: int, start: int) -> int:
        """Where the action's closing `}}` is, skipping quoted strings and comments."""
        src = self.source
        while i < len(src):
            if src.startswith("/*", i):
                close = src.find("*/", i + 2)
                if close < 0:
                    raise TemplateError(f"{self.where(start)}: unclosed comment")
                i = close + 2
                continue
            c = src[i]
            if c in '"`':
                close = i + 1
                while close < len(src) and src[close] != c:
                    if c == '"' and src[close] == "\\":
                        close += 1
                    if c == '"' and src[close] == "\n":
                        break
                    close += 1
                if close >= len(src) or src[close] != c:
                    raise TemplateError(f"{self.where(i)}: unterminated quoted string")
                i = close + 1
                continue
            if src.startswith("}}", i):
                return i
            i += 1
        raise TemplateError(f"{self.where(start)}: unclosed action")

    def tokens(self, text: str, offset: int) -> list[_Tok]:
        out = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise TemplateError(
                    f"{self.where(offset + pos)}: unexpected {text[pos]!r} in command"
                )
            kind = m.lastgroup or ""
            if kind != "space":
                out.append(_Tok(kind, m.group(), offset + pos))
            pos = m.end()
        return out

    def parse(self) -> list[Any]:
        root: list[Any] = []
        # Open blocks: (block, the list the block sits in, whether it is an `else if`
        # that the outer block's `end` closes too).
        stack: list[tuple[_Block, list[Any], bool]] = []
        current = root
        for kind, text, offset in self.actions():
            if kind == "text":
                if text:
                    current.append(text)
                continue
            stripped = text.strip()
            if stripped.startswith("/*"):
                if not stripped.endswith("*/"):
                    raise TemplateError(
                        f"{self.where(offset)}: comment ends before closing delimiter"
                    )
                continue
            toks = self.tokens(text, offset)
            if not toks:
                raise TemplateError(f"{self.where(offset)}: missing value for command")
            head = toks[0]
            word = head.text if head.kind == "ident" else ""
            if word in ("if", "with", "range"):
                block = _Block(word, self.pipeline(toks[1:], head, allow_declare=True))
                current.append(block)
                stack.append((block, current, False))
                current = block.body
            elif word == "else":
                if not stack or current is stack[-1][0].orelse:
                    raise TemplateError(f"{self.where(offset)}: unexpected {{{{else}}}}")
                block = stack[-1][0]
                nested = toks[1].text if len(toks) > 1 and toks[1].kind == "ident" else ""
                if nested in ("if", "with"):
                    inner = _Block(nested, self.pipeline(toks[2:], toks[1]))
                    block.orelse.append(inner)
                    stack.append((inner, block.orelse, True))
                    current = inner.body
                    continue
                if len(toks) > 1:
                    raise TemplateError(
                        f"{self.where(toks[1].col)}: unexpected {toks[1].text!r} in else"
                    )
                current = block.orelse
            elif word == "end":
                if len(toks) > 1:
                    raise TemplateError(
                        f"{self.where(toks[1].col)}: unexpected {toks[1].text!r} in end"
                    )
                if not stack:
                    raise TemplateError(f"{self.where(offset)}: unexpected {{{{end}}}}")
                while True:
                    _, parent, chained = stack.pop()
                    if not chained:
                        current = parent
                        break
            elif word in ("define", "template", "block", "break", "continue"):
                raise TemplateError(f"{self.where(head.col)}: {{{{{word}}}}} is not supported")
            else:
                current.append(_Action(self.pipeline(toks, head, allow_declare=True)))
        if stack:
            lines = self.source.count("\n") + 1
            opened = stack[-1][0].kind
            raise TemplateError(
                f"template: :{lines}: unexpected EOF (no {{{{end}}}} for {{{{{opened}}}}})"
            )
        return root

    def pipeline(self, toks: list[_Tok], head: _Tok, allow_declare: bool = False) -> _Pipeline:
        declare: tuple[str, ...] = ()
        assign = False
        # `$x :=`, `$i, $e :=`, `$x =`
        for n in (1, 3):
            if len(toks) > n and toks[n].kind in ("declare", "assign") and allow_declare:
                names = toks[:n]
                ok = all(t.kind == "variable" for t in names[::2]) and all(
                    t.kind == "comma" for t in names[1::2]
                )
                if ok:
                    declare = tuple(t.text for t in names[::2])
                    assign = toks[n].kind == "assign"
                    toks = toks[n + 1 :]
                    break
        if not toks:
            raise TemplateError(f"{self.where(head.col)}: missing value for {head.text}")
        commands: list[_Command] = []
        pos = 0
        while pos < len(toks):
            where = self.where(toks[pos].col)
            args, pos = self.command(toks, pos)
            commands.append(_Command(tuple(args), where))
            if pos < len(toks):
                if toks[pos].kind != "pipe":
                    raise TemplateError(
                        f"{self.where(toks[pos].col)}: unexpected {toks[pos].text!r}"
                    )
                pos += 1
                if pos >= len(toks):
                    raise TemplateError(f"{self.where(toks[pos - 1].col)}: missing command after |")
        return _Pipeline(tuple(commands), declare, assign)

    def command(self, toks: list[_Tok], pos: int) -> tuple[list[Any], int]:
        args: list[Any] = []
        while pos < len(toks) and toks[pos].kind not in ("pipe", "rparen"):
            operand, pos = self.operand(toks, pos)
            args.append(operand)
        if not args:
            where = self.where(toks[pos].col) if pos < len(toks) else self.where(toks[-1].col)
            raise TemplateError(f"{where}: missing value for command")
        return args, pos

    def operand(self, toks: list[_Tok], pos: int) -> tuple[Any, int]:
        tok = toks[pos]
        where = self.where(tok.col)
        kind, text = tok.kind, tok.text
        if kind == "field":
            names = tuple(n for n in text.split(".") if n)
            return _Field(".", names, where), pos + 1
        if kind == "variable":
            # `$x.Field` lexes as a variable then a field
            if (
                pos + 1 < len(toks)
                and toks[pos + 1].kind == "field"
                and (toks[pos + 1].col == tok.col + len(text))
                and toks[pos + 1].text != "."
            ):
                names = tuple(n for n in toks[pos + 1].text.split(".") if n)
                return _Field(text, names, where), pos + 2
            return _Field(text, (), where), pos + 1
        if kind == "string":
            return _Literal(_unquote(text, where)), pos + 1
        if kind == "raw":
            return _Literal(text[1:-1]), pos + 1
        if kind == "number":
            number = float(text) if any(c in text for c in ".eE") else int(text)
            return _Literal(number), pos + 1
        if kind == "ident":
            if text in ("true", "false"):
                return _Literal(text == "true"), pos + 1
            if text == "nil":
                return _Literal(None), pos + 1
            if text in _KEYWORDS:
                raise TemplateError(f"{where}: unexpected {text!r} in operand")
            if text not in FUNCTIONS:
                raise TemplateError(f'{where}: function "{text}" not defined')
            return _Func(text, where), pos + 1
        if kind == "lparen":
            end = self._matching(toks, pos)
            inner = self.pipeline(toks[pos + 1 : end], tok)
            pos = end + 1
            if (
                pos < len(toks)
                and toks[pos].kind == "field"
                and toks[pos].text != "."
                and (toks[pos].col == toks[end].col + 1)
            ):
                names = tuple(n for n in toks[pos].text.split(".") if n)
                return _Field(inner, names, where), pos + 1
            return _Field(inner, (), where), pos
        raise TemplateError(f"{where}: unexpected {text!r} in operand")

    def _matching(self, toks: list[_Tok], pos: int) -> int:
        depth = 0
        for i in range(pos, len(toks)):
            if toks[i].kind == "lparen":
                depth += 1
            elif toks[i].kind == "rparen":
                depth -= 1
                if depth == 0:
                    return i
        raise TemplateError(f"{self.where(toks[pos].col)}: unclosed left paren")


# -- evaluation -------------------------------------------------------------------------------


class Template:
    """A parsed template; `execute(value)` may be called many times."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._tree = _Parser(source).parse()

    def execute(
        self, value: Any, functions: Mapping[str, Callable[..., Any]] = FUNCTIONS,
        *, lenient: bool = False, raw: bool = False,
    ) -> str:  # fmt: skip
        """The text for `value`. `lenient`: a missing field is empty (table headers).
        `raw`: `value` is decoded JSON, as docker-cli's inspect runs a template over (with
        missingkey=error): a missing field is Go's "map has no entry for key"."""
        out: list[str] = []
        _Run(functions, lenient, out, raw).nodes(self._tree, value, {"$": value})
        return "".join(out)


class _Run:
    def __init__(
        self, functions: Mapping[str, Callable[..., Any]], lenient: bool, out: list[str],
        raw: bool = False,
    ) -> None:  # fmt: skip
        self.functions = functions
        self.lenient = lenient
        self.out = out
        self.raw = raw

    def nodes(self, nodes: Sequence[Any], dot: Any, scope: dict[str, Any]) -> None:
        for node in nodes:
            if isinstance(node, str):
                self.out.append(node)
            elif isinstance(node, _Action):
                value = self.pipeline(node.pipe, dot, scope)
                if not node.pipe.declare:
                    self.out.append(go_string(value))
            else:
                self.block(node, dot, scope)

    def block(self, block: _Block, dot: Any, scope: dict[str, Any]) -> None:
        inner = dict(scope)
        value = self.pipeline(block.pipe, dot, inner, declare=block.kind != "range")
        if block.kind == "if":
            self.nodes(block.body if truth(value) else block.orelse, dot, inner)
        elif block.kind == "with":
            if truth(value):
                self.nodes(block.body, value, inner)
            else:
                self.nodes(block.orelse, dot, inner)
        else:
            items = self._iterate(value, block.pipe.commands[0].where)
            if not items:
                self.nodes(block.orelse, dot, inner)
            for key, item in items:
                names = block.pipe.declare
                if len(names) == 1:
                    inner[names[0]] = item
                elif len(names) == 2:
                    inner[names[0]], inner[names[1]] = key, item
                self.nodes(block.body, item, inner)

    def _iterate(self, value: Any, where: str) -> list[tuple[Any, Any]]:
        if value is None:
            return []
        if isinstance(value, Mapping):
            return [(k, value[k]) for k in sorted(value)]
        if isinstance(value, list | tuple):
            return list(enumerate(value))
        if isinstance(value, int) and not isinstance(value, bool):
            return [(i, i) for i in range(value)]
        raise TemplateError(f"{where}: range can't iterate over {_go_v(value)}")

    def pipeline(
        self, pipe: _Pipeline, dot: Any, scope: dict[str, Any], declare: bool = True
    ) -> Any:
        value: Any = _NOTHING
        for command in pipe.commands:
            value = self.command(command, dot, scope, value)
        if pipe.declare and declare:
            for name in pipe.declare:
                if pipe.assign and name not in scope:
                    raise TemplateError(f"{pipe.commands[0].where}: undefined variable: {name}")
                scope[name] = value
        return value

    def command(self, command: _Command, dot: Any, scope: dict[str, Any], piped: Any) -> Any:
        head, *rest = command.args
        if isinstance(head, _Func):
            args = [self.operand(a, dot, scope) for a in rest]
            if piped is not _NOTHING:
                args.append(piped)
            fn = self.functions[head.name]
            try:
                return fn(*args)
            except TemplateError as exc:
                raise TemplateError(
                    f'{head.where}: executing "" at <{head.name}>: error calling {head.name}: '
                    f"{exc.message.removeprefix('template parsing error: ')}"
                ) from None
            except TypeError:
                raise TemplateError(
                    f"{head.where}: wrong number or type of arguments for {head.name}: "
                    f"got {len(args)}"
                ) from None
            except (ValueError, AttributeError) as exc:
                raise TemplateError(f"{head.where}: error calling {head.name}: {exc}") from None
        if rest or piped is not _NOTHING:
            raise TemplateError(f"{command.where}: can't give argument to non-function")
        return self.operand(head, dot, scope)

    def operand(self, node: Any, dot: Any, scope: dict[str, Any]) -> Any:
        if isinstance(node, _Literal):
            return node.value
        if isinstance(node, _Func):
            return self.command(_Command((node,), node.where), dot, scope, _NOTHING)
        assert isinstance(node, _Field)
        if isinstance(node.base, _Pipeline):
            value = self.pipeline(node.base, dot, dict(scope))
            shown = "(…)"
        elif node.base == ".":
            value, shown = dot, ""
        else:
            if node.base not in scope:
                raise TemplateError(f"{node.where}: undefined variable: {node.base}")
            value, shown = scope[node.base], node.base
        for name in node.names:
            shown += "." + name
            value = self.field(value, name, shown, node.where)
        return value

    def field(self, value: Any, name: str, shown: str, where: str) -> Any:
        if isinstance(value, Mapping):
            if name in value:
                return value[name]
            if self.lenient:
                return ""
            known = ", ".join(sorted(str(k) for k in value))
            why = f"can't evaluate field {name}"
            if self.raw:
                why = f'map has no entry for key "{name}"'
            raise TemplateError(
                f'{where}: executing "" at <{shown}>: {why}',
                hint=f"fields here: {known}" if known else None,
            )
        if self.lenient:
            return ""
        if value is None:
            # A null in the JSON: Go's nil map gives its zero value, printed "<no value>".
            return None
        raise TemplateError(
            f'{where}: executing "" at <{shown}>: can\'t evaluate field {name} '
            f"in type {_type_name(value)}"
        )


_NOTHING = object()


def parse(source: str) -> Template:
    """Parse `source`; a malformed template raises TemplateError."""
    return Template(source)


def render(template: str, value: Any, *, raw: bool = False) -> str:
    """`template` run over `value` (JSON-like data with Docker's field names); `raw`: as
    `inspect` runs it (see Template.execute)."""
    return parse(template).execute(value, raw=raw)


# -- Docker's list output: `table`, `json`, tabwriter columns ---------------------------------


def expand_format(fmt: str, default_table: str) -> tuple[str, bool]:
    """(the template text, whether it is a table) for a `--format` value, as docker/cli does:
    `table` alone is the command's default table, `json` is `{{json .}}`, and the
    two-character sequences `\\t` and `\\n` are a tab and a newline."""
    if fmt == "table":
        fmt = default_table
    if fmt == "json":
        return "{{json .}}", False
    table = fmt.startswith("table")
    text = fmt[len("table") :] if table else fmt
    text = text.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    return text, table


def format_rows(
    fmt: str,
    rows: Sequence[Any],
    headers: Mapping[str, str],
    default_table: str,
) -> str:
    """What a Docker list command prints for `--format fmt`: one rendering per row, each
    ending in a newline; a table gets a header row and aligned columns."""
    text, table = expand_format(fmt, default_table)
    template = parse(text)
    body = "".join(template.execute(row) + "\n" for row in rows)
    if not table:
        return body
    header = template.execute(dict(headers), HEADER_FUNCTIONS, lenient=True)
    return tabwrite(header + "\n" + body)


def tabwrite(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Go's text/tabwriter with Docker's settings: a cell is text ended by a tab; a column
    block (consecutive lines with a cell there) is as wide as its widest cell plus
    `padding`, at least `minwidth`; the text after a line's last tab is not aligned."""
    if text.endswith("\n"):
        lines = [line.split("\t") for line in text[:-1].split("\n")]
        end = "\n"
    else:
        lines = [line.split("\t") for line in text.split("\n")]
        end = ""
    widths: list[list[int]] = [[0] * (len(cells) - 1) for cells in lines]

    def block(first: int, last: int, column: int) -> None:
        i = first
        while i < last:
            if len(lines[i]) - 1 <= column:
                i += 1
                continue
            start = i
            width = minwidth
            while i < last and len(lines[i]) - 1 > column:
                width = max(width, len(lines[i][column]) + padding)
                i += 1
            for j in range(start, i):
                widths[j][column] = width
            block(start, i, column + 1)

    block(0, len(lines), 0)
    out = []
    for cells, cell_widths in zip(lines, widths, strict=True):
        out.append("".join(c.ljust(w) for c, w in zip(cells, cell_widths, strict=False))
                   + cells[-1])  # fmt: skip
    return "\n".join(out) + end
