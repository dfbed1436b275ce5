"""`ps --filter`: moby's container filters, parsed and matched (pure functions), applied to
a root's containers (`filter_containers`), and docker-cli's times for `--since`/`--until`.

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
from datetime import datetime
from typing import TYPE_CHECKING, Any

from lamina.api._filters import match_labels
from lamina.errors import InvalidInputError, LaminaError, NotFoundError
from lamina.oci import split_ns

if TYPE_CHECKING:
    from collections.abc import Callable

    from lamina.api._container_commands import ContainerInfo
    from lamina.api._lamina import Lamina
    from lamina.store import ContainerRecord

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


def prune_selector(
    api: Lamina, filters: Sequence[str], now_ns: int
) -> Callable[[ContainerRecord], bool] | None:
    """`container prune --filter`'s choice (moby's: `until=TIME` created before it,
    `label=`/`label!=` on the image's labels, see `prune_takes`) as a test of a record;
    None without filters (every stopped container goes)."""
    wanted: dict[str, list[str]] = {}
    for item in filters:
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep:
            raise InvalidInputError("bad format of filter (expected name=value)")
        if key not in ("until", "label", "label!"):
            raise InvalidInputError(f"invalid filter '{key}'", hint="until, label, label!")
        wanted.setdefault(key, []).append(value)
    if not wanted:
        return None
    if len(wanted.get("until", [])) > 1:
        raise InvalidInputError("more than one until filter specified")
    until = docker_timestamp_ns(wanted["until"][0], now_ns) if "until" in wanted else None

    def select(record: ContainerRecord) -> bool:
        whole, nanos = split_ns(record.created)  # the time inspect shows, to the nanosecond
        if until is not None and whole * 10**9 + nanos > until:
            return False
        labels = image_container_config(api, record.id).get("Labels") or {}
        return prune_takes(labels, wanted.get("label", []), wanted.get("label!", []))

    return select


def filter_containers(api: Lamina, infos: list[ContainerInfo], chosen: ContainerFilters,
                      labels_of: dict[str, dict[str, str]]) -> list[ContainerInfo]:  # fmt: skip
    """The containers `ps --filter` keeps (moby's rules: `match_container`); `labels_of`
    caches each image's labels by image ID (filled here, read by the caller)."""
    window = None
    if chosen.get("before") or chosen.get("since"):
        every = api.containers.list(True)
        # moby: the last value of each wins; a container that is not there is an error
        before, since = (api.containers.info(chosen.get(k)[-1]).id if chosen.get(k) else None
                         for k in ("before", "since"))  # fmt: skip
        window = order_window([c.id for c in every], before, since)
    ancestors: set[tuple[str, tuple[str, ...]]] = set()
    for ref in chosen.get("ancestor"):
        try:
            image = api.resolve(ref)
        except LaminaError:
            continue  # moby: a warning in its log, and that value matches nothing
        ancestors.add((image.digest, tuple(layer.diff_id for layer in image.layers)))
    kept = []
    for c in infos:
        if window is not None and c.id not in window:
            continue
        if chosen.get("label") and c.image_id not in labels_of:
            labels_of[c.image_id] = image_container_config(api, c.id).get("Labels") or {}
        if chosen.get("ancestor") and not _descends(api, c.id, ancestors):
            continue
        if match_container(
            chosen, cid=c.id, name=c.name, labels=labels_of.get(c.image_id, {}),
            status=c.status, exit_code=c.exit_code, started=c.started_at is not None,
            volumes=[(src, dst) for src, dst, _ in c.spec["volumes"]], network=c.spec["network"],
        ):  # fmt: skip
            kept.append(c)
    return kept


def _descends(api: Lamina, cid: str, ancestors: set[tuple[str, tuple[str, ...]]]) -> bool:
    """Whether the container's image is one of `ancestors` or built on one: its layers
    start with all of the ancestor's and add some (an image's children, found as
    containerd's image store finds them)."""
    try:
        image = api.store.get_image(api.store.get_container(cid).image)
    except NotFoundError:
        return False
    layers = tuple(layer.diff_id for layer in image.layers)
    return any(
        digest == image.digest or (len(layers) > len(a) and layers[: len(a)] == a)
        for digest, a in ancestors
    )


def image_container_config(api: Lamina, cid: str) -> dict[str, Any]:
    """The Config of the image container `cid` was made from ({} when that image is gone)."""
    try:
        image = api.store.get_image(api.store.get_container(cid).image)
    except NotFoundError:
        return {}
    return dict(api.config(image).container_config)


_GO_DURATION_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9,
                      "m": 60 * 10**9, "h": 3600 * 10**9}  # fmt: skip
_TIME = (
    r"(\d{4})-(\d{2})-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?)?"
    r"([zZ]|[+-]\d{2}:\d{2})?"
)


def go_duration_ns(text: str) -> int | None:
    """Go's time.ParseDuration in nanoseconds (`42m`, `1h30m`, `1.5s`), None if it is not one."""
    import re

    sign = -1 if text[:1] == "-" else 1
    body = text[1:] if text[:1] in "+-" else text
    units = "|".join(sorted(_GO_DURATION_UNITS, key=len, reverse=True))
    parts = re.findall(rf"(\d+\.?\d*|\.\d+)({units})", body)
    if not body or "".join(n + u for n, u in parts) != body:
        return None
    return sign * int(sum(float(n) * _GO_DURATION_UNITS[u] for n, u in parts))


def docker_timestamp_ns(value: str, now_ns: int) -> int:
    """`logs --since/--until` as docker-cli's GetTimestamp reads it, in nanoseconds: a Go
    duration before now (whole seconds), an RFC 3339 time or date (the local zone when it
    names none), or Unix seconds[.fraction]."""
    import calendar
    import re

    ago = go_duration_ns(value) if value != "0" else None
    if ago is not None:
        return (now_ns - ago) // 10**9 * 10**9
    m = re.fullmatch(_TIME, value)
    if m:
        year, month, day, hour, minute, second = (int(g or 0) for g in m.groups()[:6])
        try:  # Go's time.Parse checks each field's range
            datetime(year, month, day, hour, minute, second)
        except ValueError as e:
            raise InvalidInputError(f"parsing time {value!r}: {e}") from None
        seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
        zone = m.group(8)
        if zone is None:  # local time, at the zone's offset now (Go's reference.Zone())
            import time

            seconds -= time.localtime(now_ns // 10**9).tm_gmtoff
        elif zone not in "zZ":
            offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
            seconds -= offset if zone[0] == "+" else -offset
        return seconds * 10**9 + int(((m.group(7) or "") + "000000000")[:9])
    whole, dot, fraction = value.partition(".")
    if "-" not in value and whole.isascii() and whole.isdigit() and (
        not dot or (fraction.isascii() and fraction.isdigit())
    ):
        return int(whole) * 10**9 + int((fraction + "000000000")[:9])
    raise InvalidInputError(f"failed to parse value as time or duration: {value!r}")
