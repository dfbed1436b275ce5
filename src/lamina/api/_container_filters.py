"""`ps --filter`: moby's container filters, parsed and matched as pure functions.

Values of one key match if any does; different keys must all match; several `label=`
values must all match (as for images). `id=` and `name=` match a value equal to the
field or, read as a regular expression, found anywhere in it (moby's `Match`); `name=`
sees the name with and without its leading `/`. `status=` (and a limit) look at stopped
containers too. `before=`/`since=` name a container: only those created before/after it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lamina.api._filters import match_labels
from lamina.errors import InvalidInputError

PS_FILTER_KEYS = (
    "ancestor", "before", "exited", "id", "label", "name", "network", "since", "status",
    "volume",
)  # fmt: skip
CONTAINER_STATES = ("created", "running", "paused", "restarting", "removing", "exited", "dead")


@dataclass(frozen=True)
class ContainerFilters:
    """Parsed `--filter` values, by key; empty means no filter."""

    values: Mapping[str, tuple[str, ...]]

    def get(self, key: str) -> tuple[str, ...]:
        return self.values.get(key, ())

    @property
    def needs_all(self) -> bool:
        """moby: a `status=` filter lists stopped containers without `-a`."""
        return bool(self.get("status"))


def parse_container_filters(items: Sequence[str]) -> ContainerFilters:
    """`key=value` strings as docker-cli's `ps --filter` takes them (key case-folded, both
    sides trimmed), checked as moby checks them before listing anything."""
    values: dict[str, list[str]] = {}
    for item in items:
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInputError(
                "bad format of filter (expected name=value)",
                hint="e.g. --filter status=exited, --filter name=web",
            )
        key, value = key.strip().lower(), value.strip()
        if key not in PS_FILTER_KEYS:
            raise InvalidInputError(
                f"invalid filter '{key}'", hint="container filters: " + ", ".join(PS_FILTER_KEYS)
            )
        if key == "exited" and not _is_int(value):
            raise InvalidInputError(f"invalid filter 'exited={value}'", hint="an exit code")
        if key == "status" and value not in CONTAINER_STATES:
            raise InvalidInputError(
                f"invalid filter 'status={value}': invalid value for state ({value}): must be "
                "one of " + ", ".join(CONTAINER_STATES)
            )
        if value not in values.setdefault(key, []):
            values[key].append(value)
    return ContainerFilters({k: tuple(v) for k, v in values.items()})


def _is_int(text: str) -> bool:
    digits = text[1:] if text[:1] in "+-" else text
    return digits.isascii() and digits.isdigit()


def _match(patterns: Sequence[str], *sources: str) -> bool:
    """moby's Args.Match: no value matches everything; else a value equal to a source or,
    as a regular expression, found in it (an invalid expression matches nothing)."""
    if not patterns:
        return True
    for pattern in patterns:
        for source in sources:
            if pattern == source:
                return True
            try:
                if re.search(pattern, source):
                    return True
            except re.error:
                continue
    return False


def match_container(
    filters: ContainerFilters,
    *,
    cid: str,
    name: str,
    labels: Mapping[str, str],
    status: str,
    exit_code: int | None,
    started: bool,
    volumes: Sequence[tuple[str, str]],
    network: str,
) -> bool:
    """Whether one container passes every filter but `before`, `since` and `ancestor`
    (those need the other containers and the images: see `order_window`)."""
    if not _match(filters.get("name"), "/" + name, name):
        return False
    if not _match(filters.get("id"), cid):
        return False
    if not prune_takes(labels, filters.get("label"), ()):
        return False
    exited = filters.get("exited")
    if exited and not (
        status != "running" and started and exit_code is not None
        and any(int(code) == exit_code for code in exited)
    ):  # fmt: skip
        return False
    if filters.get("status") and status not in filters.get("status"):
        return False
    wanted_volumes = filters.get("volume")
    if wanted_volumes and not any(v in (src, dst) for v in wanted_volumes for src, dst in volumes):
        return False
    return not filters.get("network") or network in filters.get("network")


def order_window(
    ids_newest_first: Sequence[str], before: str | None, since: str | None
) -> set[str]:
    """The IDs `before=`/`since=` leave (each given as the container's full ID): those
    created before `before` and after `since`, the named ones excluded."""
    kept: set[str] = set()
    seen_before = before is None
    for cid in ids_newest_first:
        if cid == since:
            break
        if not seen_before:
            seen_before = cid == before
            continue
        kept.add(cid)
    return kept


def prune_takes(labels: Mapping[str, str], wanted: Sequence[str], unwanted: Sequence[str]) -> bool:
    """moby's container prune labels: every `label=` value matches (K present, K=V equal),
    and not every `label!=` value does; neither matches a container without labels."""

    def every(values: Sequence[str]) -> bool:
        pairs = [(k, v if has else None) for k, has, v in (x.partition("=") for x in values)]
        return bool(labels) and match_labels(pairs, labels)

    return (not wanted or every(wanted)) and not (unwanted and every(unwanted))
