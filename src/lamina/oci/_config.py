"""The image config: runtime defaults, the layer diff_ids and the history.

The config is kept as its decoded JSON so fields lamina does not model survive a
round trip; typed accessors read it and `with_*` methods return changed copies.
"""

from __future__ import annotations

from lamina._frozen import Frozen
from lamina.errors import InvalidInputError
from lamina.oci._digest import check_digest, sha256_digest
from lamina.oci._json import dump_json, load_json_object
from lamina.oci._limits import MAX_LAYERS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _copied(value: T) -> T:
    """A deep copy of decoded JSON (dicts, lists, tuples and scalars): what `copy.deepcopy`
    gives for it, without the `copy` and `weakref` modules `lamina run` would load.
    (Scalars are not recursed into: an Env of thousands of strings is copied as a list.)"""
    if isinstance(value, dict):
        return {  # type: ignore[return-value]
            k: v if type(v) in _SCALARS else _copied(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        items = [v if type(v) in _SCALARS else _copied(v) for v in value]
        return items if type(value) is list else type(value)(items)  # type: ignore[return-value]
    return value


class History(Frozen):
    """One step of an image's making; `empty_layer` steps added no layer. Read-only.
    (Not a dataclass: `lamina run` reads configs; see `lamina._frozen`.)"""

    _fields = __slots__ = ("created", "created_by", "comment", "author", "empty_layer")
    created: str
    created_by: str
    comment: str
    author: str
    empty_layer: bool

    def __init__(self, created: str = "", created_by: str = "", comment: str = "",
                 author: str = "", empty_layer: bool = False) -> None:  # fmt: skip
        self._set(created=created, created_by=created_by, comment=comment, author=author,
                  empty_layer=empty_layer)  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.created:
            out["created"] = self.created
        if self.created_by:
            out["created_by"] = self.created_by
        if self.comment:
            out["comment"] = self.comment
        if self.author:
            out["author"] = self.author
        if self.empty_layer:
            out["empty_layer"] = True
        return out

    @classmethod
    def from_json(cls, value: object) -> History:
        if not isinstance(value, dict):
            raise InvalidInputError("config history: each entry must be a JSON object")
        return cls(
            created=str(value.get("created", "")),
            created_by=str(value.get("created_by", "")),
            comment=str(value.get("comment", "")),
            author=str(value.get("author", "")),
            empty_layer=bool(value.get("empty_layer", False)),
        )


# The runtime fields lamina reads, by the JSON type Docker decodes them into (a config
# with another type there is one `docker load` refuses: "json: cannot unmarshal ...").
_STRINGS = ("User", "WorkingDir", "StopSignal", "Hostname", "Domainname")
_STRING_LISTS = ("Env", "Cmd", "Entrypoint", "Shell", "OnBuild")
_OBJECTS = ("ExposedPorts", "Volumes", "Healthcheck")


def _check_runtime(runtime: dict[str, Any], what: str) -> None:
    for key in _STRINGS:
        if not isinstance(runtime.get(key, ""), str | None):
            raise InvalidInputError(f"{what}: config.{key} must be a string")
    for key in _STRING_LISTS:
        value = runtime.get(key)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(v, str) for v in value)
        ):
            raise InvalidInputError(f"{what}: config.{key} must be a list of strings")
    for key in _OBJECTS:
        if not isinstance(runtime.get(key) or {}, dict):
            raise InvalidInputError(f"{what}: config.{key} must be a JSON object")
    labels = runtime.get("Labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise InvalidInputError(f"{what}: config.Labels must map names to strings")


class ImageConfig:
    """An image config (OCI `application/vnd.oci.image.config.v1+json`), immutable.

    Its document is never changed once made: a `with_*` copy shares every part it does
    not change with the config it was made from (a build of n steps would otherwise copy
    n histories of up to n entries), and what goes out to callers is a copy."""

    __slots__ = ("_doc",)

    def __init__(self, doc: dict[str, Any]) -> None:
        self._doc = doc

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "config") -> ImageConfig:
        doc = load_json_object(data, what)
        rootfs = doc.get("rootfs", {"type": "layers", "diff_ids": []})
        if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids", []), list):
            raise InvalidInputError(f"{what}: rootfs.diff_ids must be a list")
        diff_ids = rootfs.get("diff_ids", [])
        if len(diff_ids) > MAX_LAYERS:
            raise InvalidInputError(f"{what}: {len(diff_ids)} layers is more than {MAX_LAYERS}")
        for n, diff_id in enumerate(diff_ids):
            check_digest(diff_id, f"{what} diff_id {n}")
        history = doc.get("history", [])
        if not isinstance(history, list):
            raise InvalidInputError(f"{what}: history must be a list")
        for entry in history:
            History.from_json(entry)
        runtime = doc.get("config") or {}
        if not isinstance(runtime, dict):
            raise InvalidInputError(f"{what}: config must be a JSON object")
        _check_runtime(runtime, what)
        return cls(doc)

    @classmethod
    def new(
        cls, *, os: str = "linux", architecture: str = "amd64", created: str = ""
    ) -> ImageConfig:
        doc: dict[str, Any] = {
            "architecture": architecture,
            "os": os,
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        }
        if created:
            doc["created"] = created
        return cls(doc)

    def to_json(self) -> dict[str, Any]:
        return _copied(self._doc)

    def to_bytes(self) -> bytes:
        return dump_json(self._doc)

    def digest(self) -> str:
        return sha256_digest(self.to_bytes())

    @property
    def diff_ids(self) -> tuple[str, ...]:
        return tuple(self._doc.get("rootfs", {}).get("diff_ids", []))

    @property
    def history(self) -> tuple[History, ...]:
        return tuple(History.from_json(h) for h in self._doc.get("history", []))

    @property
    def created(self) -> str:
        return str(self._doc.get("created", ""))

    @property
    def os(self) -> str:
        return str(self._doc.get("os", ""))

    @property
    def architecture(self) -> str:
        return str(self._doc.get("architecture", ""))

    @property
    def container_config(self) -> dict[str, Any]:
        """The runtime defaults (`config`: Env, Cmd, Entrypoint, WorkingDir, User, ...), a copy."""
        return _copied(self._doc.get("config") or {})

    def container_field(self, name: str) -> Any:
        """One runtime default (`Env`, `Shell`, ...), a copy; None when unset."""
        return _copied((self._doc.get("config") or {}).get(name))

    def last_created(self) -> str:
        """The newest `created` of the history (the last entry that has one); "" if none."""
        for entry in reversed(self._doc.get("history", [])):
            created = History.from_json(entry).created
            if created:
                return created
        return ""

    def with_container_config(self, **changes: Any) -> ImageConfig:
        """A copy whose runtime defaults have `changes` (Docker's field names); None removes one."""
        doc = dict(self._doc)
        runtime = dict(doc.get("config") or {})
        for key, value in changes.items():
            if value is None:
                runtime.pop(key, None)
            else:
                runtime[key] = _copied(value)
        doc["config"] = runtime
        return ImageConfig(doc)

    def with_fields(self, **changes: Any) -> ImageConfig:
        """A copy with top-level fields changed (created, author, architecture, os, ...)."""
        doc = dict(self._doc)
        doc.update(_copied(changes))
        return ImageConfig(doc)

    def with_layer(self, diff_id: str | None, history: History) -> ImageConfig:
        """A copy with one more step: a layer (or none, for a metadata step) and its history."""
        doc = dict(self._doc)
        rootfs = dict(doc.get("rootfs") or {"type": "layers", "diff_ids": []})
        rootfs["diff_ids"] = list(rootfs.get("diff_ids", []))
        if diff_id is not None:
            rootfs["diff_ids"].append(check_digest(diff_id, "diff_id"))
            history = History(
                history.created, history.created_by, history.comment, history.author, False
            )
        else:
            history = History(
                history.created, history.created_by, history.comment, history.author, True
            )
        doc["rootfs"] = rootfs
        doc["history"] = [*doc.get("history", []), history.to_json()]
        return ImageConfig(doc)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageConfig) and self._doc == other._doc

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    def __repr__(self) -> str:
        return f"ImageConfig({self.digest()})"
