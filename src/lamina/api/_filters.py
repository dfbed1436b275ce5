"""`images --filter`: Docker's image filters, parsed and matched as pure functions.

Different keys must all match; several `reference=` values match if any does (and
only the names, tags or repo digests, that match are listed); `dangling=true` is an
image with no name at all (no tag, no repo digest); several `label=` values must all match;
`before=`/`since=` compare config times with the named image's, strictly.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from lamina.errors import InvalidInputError
from lamina.oci import parse_rfc3339

if TYPE_CHECKING:
    from lamina.api._lamina import ImageSummary

FILTER_KEYS = ("before", "dangling", "label", "reference", "since")


@dataclass(frozen=True)
class ImageFilters:
    """Parsed `--filter` values; empty means no filter."""

    dangling: bool | None = None
    labels: tuple[tuple[str, str | None], ...] = ()
    references: tuple[str, ...] = ()
    before: tuple[str, ...] = ()
    since: tuple[str, ...] = ()


def parse_image_filters(items: Sequence[str]) -> ImageFilters:
    """`key=value` strings as Docker's `images --filter` takes them."""
    dangling: set[bool] = set()
    labels: list[tuple[str, str | None]] = []
    refs: list[str] = []
    before: list[str] = []
    since: list[str] = []
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep:
            raise InvalidInputError(
                f"bad format of filter (expected name=value): {item!r}",
                hint="e.g. --filter dangling=true, --filter reference='busybox:*'",
            )
        if key not in FILTER_KEYS:
            raise InvalidInputError(
                f"invalid filter {key!r}", hint="image filters: " + ", ".join(FILTER_KEYS)
            )
        if key == "dangling":
            if value.lower() in ("true", "1"):
                dangling.add(True)
            elif value.lower() in ("false", "0"):
                dangling.add(False)
            else:
                raise InvalidInputError(f"invalid filter 'dangling={value}'", hint="true or false")
        elif key == "label":
            name, has_value, wanted = value.partition("=")
            labels.append((name, wanted if has_value else None))
        elif key == "reference":
            match_pattern(value, "")  # a malformed pattern is an error before anything is listed
            refs.append(value)
        elif key == "before":
            before.append(value)
        else:
            since.append(value)
    if len(dangling) > 1:
        raise InvalidInputError("conflicting filters: dangling=true and dangling=false")
    return ImageFilters(
        dangling.pop() if dangling else None,
        tuple(labels),
        tuple(refs),
        tuple(before),
        tuple(since),
    )


def match_labels(wanted: Sequence[tuple[str, str | None]], labels: Mapping[str, str]) -> bool:
    """Every `K` present and every `K=V` equal."""
    for key, value in wanted:
        if key not in labels:
            return False
        if value is not None and labels[key] != value:
            return False
    return True


def match_reference(pattern: str, repository: str, tag: str, sep: str = ":") -> bool:
    """Docker's reference filter: the pattern against `repo:tag` (a repo digest:
    `repo@digest`, `sep` "@"), else against `repo` alone."""
    return match_pattern(pattern, f"{repository}{sep}{tag}") or match_pattern(pattern, repository)


_PATTERNS: dict[str, re.Pattern[str]] = {}


def match_pattern(pattern: str, name: str) -> bool:
    """Go's `path.Match`: `*` and `?` never match `/`; `[...]` classes (`^` negates);
    `\\` escapes. A malformed pattern is an InvalidInputError."""
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        compiled = re.compile(_translate(pattern), re.DOTALL)
        _PATTERNS[pattern] = compiled
    return compiled.fullmatch(name) is not None


def _translate(pattern: str) -> str:
    def bad() -> InvalidInputError:
        return InvalidInputError(
            f"invalid reference pattern {pattern!r}: syntax error in pattern",
            hint="`*` matches within one path segment; close every `[`",
        )

    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\":
            if i + 1 >= len(pattern):
                raise bad()
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            i += 1
            negate = i < len(pattern) and pattern[i] == "^"
            if negate:
                i += 1
            ranges = []
            first = True
            while True:
                if i >= len(pattern):
                    raise bad()
                if pattern[i] == "]" and not first:
                    break
                first = False
                lo, i = _class_char(pattern, i, bad)
                hi = lo
                if i < len(pattern) and pattern[i] == "-":
                    hi, i = _class_char(pattern, i + 1, bad)
                    if hi < lo:
                        raise bad()
                ranges.append(f"{re.escape(lo)}-{re.escape(hi)}" if hi != lo else re.escape(lo))
            # Go's classes never match the separator either.
            body = "".join(ranges)
            out.append(f"(?:(?!/)[^{body}])" if negate else f"(?:(?!/)[{body}])")
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _class_char(pattern: str, i: int, bad: object) -> tuple[str, int]:
    assert callable(bad)
    if i >= len(pattern) or pattern[i] in "-]":
        raise bad()
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            raise bad()
    return pattern[i], i + 1


def select_images(
    images: Sequence[ImageSummary],
    filters: ImageFilters,
    created_of: Callable[[str], str],
) -> list[ImageSummary]:
    """The images (and, under `reference=`, the names) that pass every filter.

    `created_of(ref)` gives the config time of the image `before=`/`since=` names.
    """
    before = [_moment(created_of(ref), ref) for ref in filters.before]
    since = [_moment(created_of(ref), ref) for ref in filters.since]
    out = []
    for image in images:
        if filters.dangling is not None and filters.dangling != image.dangling:
            continue
        if filters.labels and not match_labels(filters.labels, image.labels):
            continue
        if before or since:
            created = _moment(image.created, image.id, strict=False)
            if created is None:
                continue
            if any(created >= limit for limit in before if limit is not None):
                continue
            if any(created <= limit for limit in since if limit is not None):
                continue
        if filters.references:
            names = tuple(
                (repo, tag)
                for repo, tag in image.repo_tags
                if any(match_reference(p, repo, tag) for p in filters.references)
            )
            digests = tuple(
                (repo, digest)
                for repo, digest in image.repo_digests
                if any(match_reference(p, repo, digest, "@") for p in filters.references)
            )
            if not names and not digests:
                continue
            image = dataclasses.replace(image, repo_tags=names, repo_digests=digests)
        out.append(image)
    return out


def _moment(text: str, ref: str, strict: bool = True) -> datetime | None:
    moment = parse_rfc3339(text)
    if moment is None and strict:
        raise InvalidInputError(f"image {ref} records no creation time to compare with")
    return moment
