"""Cache keys: what a step's result depends on, hashed; and why a key changed.

key = sha256(parent key, the instruction after expansion, the build args and env it
sees, the platform, and for COPY/ADD the checksum of its sources). Mtimes never enter
a key: touching a file keeps the cache; editing it does not.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lamina.dockerfile import Copy, Instruction, Onbuild, Run

_MAX_EXPLAINED_SOURCES = 50_000
# v2: an ADDed archive is placed as moby's Unpack does (its layer differs for the same
# instruction and archive, so a v1 cache entry must not stand for it)
KEY_VERSION = "lamina.builder.v2"


def instruction_text(inst: Instruction) -> str:
    """A canonical text of an expanded instruction, without its place in the Dockerfile."""
    if isinstance(inst, Onbuild):
        return "ONBUILD " + instruction_text(inst.instruction)
    clean = dataclasses.replace(inst, loc=None)
    if isinstance(clean, Run):
        # A secret's content never enters a key; its id and target do (they are in the repr).
        clean = dataclasses.replace(clean, mounts=tuple(clean.mounts))
    if isinstance(clean, Copy):
        # --checksum only asserts the content, which the sources' digests (a download's
        # sha256, a git commit) already name: with or without it, the same step
        # (BuildKit's testAddGitChecksumCache).
        clean = dataclasses.replace(clean, checksum=None)
    return repr(clean)


@dataclass(frozen=True)
class StepInputs:
    """Everything a step's result depends on. `sources`: (path, digest) of COPY/ADD input."""

    parent: str
    instruction: str
    args: tuple[tuple[str, str], ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    platform: str = ""
    sources: tuple[tuple[str, str], ...] = ()
    extra: tuple[tuple[str, str], ...] = ()
    checksum: str = ""  # the sources' digest when known without listing them

    def sources_checksum(self) -> str:
        if self.checksum:
            return self.checksum
        return self.sources_digest() if self.sources else ""

    def sources_digest(self) -> str:
        h = hashlib.sha256()
        for path, digest in self.sources:
            h.update(path.encode("utf-8", "surrogateescape") + b"\0" + digest.encode() + b"\n")
        return "sha256:" + h.hexdigest()

    def key(self) -> str:
        doc = {
            "v": KEY_VERSION,
            "parent": self.parent,
            "instruction": self.instruction,
            "args": [list(a) for a in self.args],
            "env": [list(e) for e in self.env],
            "platform": self.platform,
            "sources": self.sources_checksum(),
            "extra": [list(x) for x in self.extra],
        }
        data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(data).hexdigest()

    def to_json(self) -> dict[str, Any]:
        """What a later build needs to explain a miss against this one."""
        out: dict[str, Any] = {
            "parent": self.parent,
            "instruction": self.instruction,
            "args": dict(self.args),
            "env": dict(self.env),
            "platform": self.platform,
            "extra": dict(self.extra),
        }
        if len(self.sources) <= _MAX_EXPLAINED_SOURCES:
            out["sources"] = dict(self.sources)
        else:
            out["sources_digest"] = self.sources_digest()
        return out


def _changed_names(old: Mapping[str, Any], new: Mapping[str, str]) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def explain_miss(previous: Mapping[str, Any] | None, now: StepInputs) -> str:
    """One line saying which input differs from the last build of the same step."""
    if previous is None:
        return "not built before"
    if previous.get("instruction") != now.instruction:
        return "the instruction changed"
    if previous.get("platform") != now.platform:
        return f"the platform changed to {now.platform}"
    args = _changed_names(previous.get("args") or {}, dict(now.args))
    if args:
        return "build arg changed: " + ", ".join(args)
    env = _changed_names(previous.get("env") or {}, dict(now.env))
    if env:
        return "env changed: " + ", ".join(env)
    extra = _changed_names(previous.get("extra") or {}, dict(now.extra))
    if extra:
        return "input changed: " + ", ".join(extra)
    old_sources = previous.get("sources")
    if isinstance(old_sources, dict):
        new_sources = dict(now.sources)
        changed = _changed_names(old_sources, new_sources)
        if changed:
            return "file changed: " + _some(changed, old_sources, new_sources)
    elif previous.get("sources_digest") != (now.sources_digest() if now.sources else None):
        return "source files changed"
    if previous.get("parent") != now.parent:
        return "the previous step changed"
    return "no recorded input changed (cache entry was removed)"


def _some(paths: Sequence[str], old: Mapping[str, Any], new: Mapping[str, str]) -> str:
    shown = []
    for p in paths[:3]:
        what = "added" if p not in old else "removed" if p not in new else "modified"
        shown.append(f"{p} ({what})")
    more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
    return ", ".join(shown) + more
