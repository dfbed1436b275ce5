"""The Store facade: content store + metadata db under one root."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from lamina.store._content import ContentStore
from lamina.store._db import Database
from lamina.store._fileindex import FileIndex
from lamina.store._gc import GcMixin
from lamina.store._images import ImagesMixin
from lamina.store._layout import SNAPSHOTS
from lamina.store._lean import LeanLayersMixin
from lamina.store._leases import LeasesMixin
from lamina.store._registry import RegistryRecords
from lamina.store._repodigests import RepoDigests
from lamina.store._tables import TablesMixin


class Store(LeanLayersMixin, ImagesMixin, TablesMixin, LeasesMixin, GcMixin):
    """Everything under one `$LAMINA_ROOT`: `.content` for blobs, methods for records.

    Safe to use from several threads (a SQLite connection per thread) and from several
    processes on one root (SQLite WAL locking, the gc lock, leases).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        # 0700: snapshots hold setuid files and device nodes no other user may reach.
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        self.content = ContentStore(root)
        self.snapshots_dir = root / SNAPSHOTS
        self.snapshots_dir.mkdir(exist_ok=True)
        self._db = Database(root)
        self.registry = RegistryRecords(self._db)
        self.repo_digests = RepoDigests(self._db)
        self.file_index = FileIndex(self._db)

    def close(self) -> None:
        """Close the database connections; the Store is unusable afterwards."""
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_store(root: Path) -> Store:
    """Open (creating if needed, migrating if old) the store at `root`."""
    return Store(Path(root))
