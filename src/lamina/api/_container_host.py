"""What the container code needs of a root, and `RunHost`: that much, opened light.

The container code works over a host: `Lamina` (the whole API, whose `Containers` has every
container command) or `RunHost`, which `lamina run` opens instead (its `ContainerRunner`
creates, starts and runs containers and cleans up after dead processes). Starting a Python
process that loads `Lamina` (the store's every module, the OCI models, their dataclasses)
took three times as long as runc's whole run; `RunHost` reads the same metadata db through
`lamina.store.RowStore` and the same config decoder (`ImageConfig`), and hands anything else
to a `Lamina` it opens on demand (`full()`): a name that is a digest or an ID prefix, a
missing name (for its error), snapshots not yet unpacked (lazy layers, fetched by the full
store), `commit`. Either way the same code runs: creation, the init layer, the bundle, the
monitor, the fold, the removal.
"""

from __future__ import annotations

import os

from lamina.errors import InvalidInputError
from lamina.store import RowStore

TYPE_CHECKING = False  # not typing's: `lamina run` does without typing
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path
    from typing import Any, Protocol

    from lamina._paths import StrPath
    from lamina.api._containers import ContainerRunner
    from lamina.api._lamina import Lamina
    from lamina.store import ContainerRecord

    class LayerLike(Protocol):
        @property
        def diff_id(self) -> str: ...

    class ImageLike(Protocol):
        @property
        def digest(self) -> str: ...

        @property
        def id(self) -> str: ...

        @property
        def config_digest(self) -> str: ...

        @property
        def layers(self) -> Sequence[LayerLike]: ...

    class ContainerStore(Protocol):
        """The store calls the container code makes (`Store` and `RowStore` have them)."""

        def add_container(
            self, id: str, name: str, image: str, state: Any, durable: bool = True
        ) -> ContainerRecord: ...
        def get_container(self, id_or_name: str) -> ContainerRecord: ...
        def list_containers(self) -> list[ContainerRecord]: ...
        def set_container_state(self, id: str, state: Any) -> None: ...
        def remove_container(self, id: str) -> None: ...
        def snapshot_path(self, diff_id: str) -> StrPath: ...
        def get_image(self, digest: str) -> ImageLike: ...

    class ContainerHost(Protocol):
        """A root as the container code sees it (`Lamina` or `RunHost`)."""

        @property
        def root(self) -> StrPath: ...

        @property
        def store(self) -> ContainerStore: ...

        @property
        def containers(self) -> ContainerRunner: ...

        def resolve(self, ref: str) -> ImageLike: ...
        def container_config(self, image: Any) -> dict[str, Any]: ...
        def full(self) -> Lamina: ...
        def recover(self) -> list[str]: ...


def tag_name(ref: str) -> str | None:
    """The full tag name `ref` means (`busybox` → `docker.io/library/busybox:latest`), or None
    when it names no tag (a digest reference, or not a valid name: maybe an image ID)."""
    from lamina.oci import parse_reference

    try:
        normal = str(parse_reference(ref))
    except InvalidInputError:
        return None
    return normal if "@" not in normal else None


class HostCommands:
    """What `Lamina` and `RunHost` share: the clean-up after dead processes, on their root."""

    def recover(self: ContainerHost) -> list[str]:
        """Stop and remove what dead lamina processes left on this root; one line each."""
        from lamina.api._recover import recover

        return recover(self)


class RunHost(HostCommands):
    """An existing root opened for `lamina run` (see the module doc). `open` returns None
    when only a full `Lamina` may open the root: it does not exist yet, or its store has
    layers to migrate first."""

    def __init__(
        self,
        root: str,
        *,
        progress: Callable[[int, int, str], object] | None = None,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.root = root
        self.store = RowStore(root)
        self._progress = progress
        self._notice = notice
        self._full: Lamina | None = None
        self._containers: ContainerRunner | None = None

    @property
    def containers(self) -> ContainerRunner:
        """create, start, run (see `lamina.api._containers`); the other container commands
        are the full API's (`full().containers`)."""
        if self._containers is None:
            from lamina.api._containers import ContainerRunner

            self._containers = ContainerRunner(self)
        return self._containers

    @classmethod
    def open(
        cls,
        root: str | Path | None,
        *,
        progress: Callable[[int, int, str], object] | None = None,
        notice: Callable[[str], None] | None = None,
    ) -> RunHost | None:
        from lamina.api._root import default_root

        # Absolute, as `Lamina` makes it (`Path.absolute`: the working directory prefixed).
        where = os.path.join(os.getcwd(), root if root is not None else default_root())
        if not os.path.isfile(os.path.join(where, "metadata.db")) or not os.path.isdir(
            os.path.join(where, "snapshots")
        ):
            return None
        host = cls(where, progress=progress, notice=notice)
        if not host.store.ready():
            host.store.close()
            return None
        return host

    def full(self) -> Lamina:
        """The whole API on this root, opened on first use."""
        if self._full is None:
            from lamina.api._lamina import Lamina

            self._full = Lamina(self.root, progress=self._progress)
            if self._notice is not None:
                self._full.lazy_layers.notice = self._notice
        return self._full

    def resolve(self, ref: str) -> ImageLike:
        """`Lamina.resolve`: a name through its tag here, anything else by the full API."""
        normal = tag_name(ref)
        if normal is not None:
            digest = self.store.tagged(normal)
            if digest is not None:
                return self.store.get_image(digest)
        return self.full().resolve(ref)

    def container_config(self, image: Any) -> dict[str, Any]:
        """`Lamina.container_config`: the config read, verified and decoded the same way."""
        from lamina.oci import MAX_DOCUMENT_BYTES, ImageConfig

        data = self.store.config_bytes(image, MAX_DOCUMENT_BYTES)
        return ImageConfig.from_bytes(data, f"config {image.config_digest}").container_config
