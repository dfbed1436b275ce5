"""`--ci` budgets: each rule passes at its threshold and fails beyond it.

dive's `.dive-ci` rules are read too: `lowest-efficiency` (a ratio, 0-1),
`highest-wasted-bytes` (bytes, `20MB` = 20 000 000, `20MiB` = 20 * 2^20) and
`highest-user-wasted-percent` (a ratio, 0-1, of the user's layers); `disabled` (or `off`,
`false`, empty) turns a rule off, and a rule the file does not set keeps dive's default
(0.9, disabled, 0.1), as dive reads it. Only that small `rules:` mapping is parsed: no
YAML library is needed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from lamina.analysis._model import ImageReport
from lamina.errors import InvalidInputError

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "t": 1000**4, "tb": 1000**4,
    "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2, "gi": 1024**3, "gib": 1024**3,
    "ti": 1024**4, "tib": 1024**4,
}  # fmt: skip
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_bytes(text: str) -> int:
    """`20MB`, `1.5 GiB`, `512` → bytes (decimal units as dive reads them, binary with i)."""
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise InvalidInputError(f"{text!r} is not a size", hint="write bytes as 123, 20MB, 1.5GiB")
    return int(float(match.group(1)) * _UNITS[unit])


@dataclass(frozen=True)
class Budgets:
    max_wasted_bytes: int | None = None
    max_wasted_percent: float | None = None  # percent of the user's layers, 0-100
    min_efficiency: float | None = None  # ratio, 0-1
    max_layer_bytes: int | None = None
    forbid: tuple[str, ...] = ()

    def merged(self, other: Budgets) -> Budgets:
        """These budgets, with `other`'s where these set none (command line over file)."""
        return Budgets(
            self.max_wasted_bytes if self.max_wasted_bytes is not None
            else other.max_wasted_bytes,
            self.max_wasted_percent if self.max_wasted_percent is not None
            else other.max_wasted_percent,
            self.min_efficiency if self.min_efficiency is not None else other.min_efficiency,
            self.max_layer_bytes if self.max_layer_bytes is not None else other.max_layer_bytes,
            (*self.forbid, *other.forbid),
        )  # fmt: skip


@dataclass(frozen=True)
class RuleResult:
    rule: str
    passed: bool
    message: str


_DISABLED = frozenset(("", "disabled", "off", "false"))  # dive's isRuleDisabled


def parse_dive_ci(text: str, source: str = ".dive-ci") -> Budgets:
    """dive's CI rules file → Budgets."""
    values: dict[str, str] = {}
    in_rules = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not raw[0].isspace():
            in_rules = line.strip() == "rules:"
            continue
        if not in_rules:
            continue
        key, colon, value = line.strip().partition(":")
        if not colon:
            raise InvalidInputError(f"{source}:{number}: expected 'rule: value', got {raw!r}")
        values[key.strip().replace("_", "-").lower()] = value.strip().strip("'\"")
    known = {
        "lowest-efficiency", "lowestefficiency", "lowest-efficiency-threshold",
        "highest-wasted-bytes", "highestwastedbytes",
        "highest-user-wasted-percent", "highestuserwastedpercent",
    }  # fmt: skip
    for key in values:
        if key not in known:
            raise InvalidInputError(
                f"{source}: unknown rule {key!r}",
                hint="dive's rules: lowest-efficiency, highest-wasted-bytes, "
                "highest-user-wasted-percent",
            )

    def get(default: str, *names: str) -> str | None:
        value = next((values[n] for n in names if n in values), default)
        return None if value.strip().lower() in _DISABLED else value

    def ratio(text: str | None, rule: str) -> float | None:
        if text is None:
            return None
        try:
            value = float(text)
        except ValueError:
            raise InvalidInputError(f"{source}: {rule}: {text!r} is not a ratio") from None
        if not 0 <= value <= 1:
            raise InvalidInputError(f"{source}: {rule}: {text} is not a ratio between 0 and 1")
        return value

    wasted = get("disabled", "highest-wasted-bytes", "highestwastedbytes")
    percent = ratio(get("0.1", "highest-user-wasted-percent", "highestuserwastedpercent"),
                    "highest-user-wasted-percent")  # fmt: skip
    efficiency = get("0.9", "lowest-efficiency", "lowestefficiency",
                     "lowest-efficiency-threshold")  # fmt: skip
    return Budgets(
        max_wasted_bytes=parse_bytes(wasted) if wasted is not None else None,
        max_wasted_percent=percent * 100 if percent is not None else None,
        min_efficiency=ratio(efficiency, "lowest-efficiency"),
    )


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A --forbid glob: `*` and `?` stay within one path component, `**` crosses them,
    `[...]` is a character class; the pattern is anchored at `/`."""
    p = pattern if pattern.startswith("/") else "/" + pattern
    out: list[str] = []
    i = 0
    while i < len(p):
        if p.startswith("**", i):
            out.append(".*")
            i += 2
        elif p[i] == "*":
            out.append("[^/]*")
            i += 1
        elif p[i] == "?":
            out.append("[^/]")
            i += 1
        elif p[i] == "[" and (end := p.find("]", i + 2)) > 0:
            body = p[i + 1 : end]
            negate = body.startswith("!")
            body = re.escape(body[1:] if negate else body).replace("\\-", "-")
            out.append(("[^" if negate else "[") + body + "]")
            i = end + 1
        else:
            out.append(re.escape(p[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def check_budgets(
    report: ImageReport, budgets: Budgets, live_paths: Iterable[str]
) -> list[RuleResult]:
    """Every rule that is set, passed or not, with the figure it measured."""
    out: list[RuleResult] = []
    t, u = report.totals, report.user_totals
    if budgets.max_wasted_bytes is not None:
        ok = t.wasted_bytes <= budgets.max_wasted_bytes
        msg = f"wasted {t.wasted_bytes} bytes (budget {budgets.max_wasted_bytes})"
        out.append(RuleResult("max-wasted-bytes", ok, msg))
    if budgets.max_wasted_percent is not None:
        ok = u.wasted_percent <= budgets.max_wasted_percent + 1e-9
        out.append(RuleResult("max-wasted-percent", ok,
                              f"user layers waste {u.wasted_percent:.2f}% "
                              f"(budget {budgets.max_wasted_percent:.2f}%)"))  # fmt: skip
    if budgets.min_efficiency is not None:
        ok = t.efficiency + 1e-9 >= budgets.min_efficiency
        msg = f"efficiency {t.efficiency:.4f} (minimum {budgets.min_efficiency})"
        out.append(RuleResult("min-efficiency", ok, msg))
    if budgets.max_layer_bytes is not None:
        big = [layer for layer in report.layers if layer.size > budgets.max_layer_bytes]
        if big:
            worst = max(big, key=lambda layer: layer.size)
            msg = (f"layer {worst.index} ({worst.line or worst.instruction[:40]}) is "
                   f"{worst.size} bytes (budget {budgets.max_layer_bytes}); "
                   f"{len(big)} layer(s) over")  # fmt: skip
        else:
            msg = f"every layer within {budgets.max_layer_bytes} bytes"
        out.append(RuleResult("max-layer-bytes", not big, msg))
    if budgets.forbid:
        paths = ["/" + p for p in live_paths]
        for pattern in budgets.forbid:
            regex = glob_regex(pattern)
            hits = sorted(p for p in paths if regex.match(p))
            msg = (f"{len(hits)} forbidden path(s) match {pattern}: {', '.join(hits[:3])}"
                   if hits else f"no path matches {pattern}")  # fmt: skip
            out.append(RuleResult("forbid", not hits, msg))
    return out
