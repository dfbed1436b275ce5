"""Push and pull against a real registry: the round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
from registry_fixtures import Registry

from lamina.api import Lamina

pytestmark = pytest.mark.integration


def test_push_then_pull_into_an_empty_store_gives_the_same_image(
    lamina: Lamina, other: Lamina, registry: Registry, busybox_rootfs: Path
) -> None:
    image_id = lamina.import_image(busybox_rootfs, "base:1")
    pushed = lamina.push("base:1", f"{registry.host}/lamina/base:1")
    assert pushed.uploaded == 2  # one layer and the config
    pulled = other.pull(f"{registry.host}/lamina/base:1")
    assert pulled.image_id == image_id
    assert pulled.digest == pushed.digest
    assert pulled.layers_downloaded == 1
    # indexed and unpacked in the pull, as every layer that enters the store is
    (layer,) = other.resolve(pulled.reference).layers
    assert other.store.file_index.has(layer.diff_id)
    assert other.store.snapshot_path(layer.diff_id).is_dir()
